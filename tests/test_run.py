"""End to end on the tiny preset: `mfclr run` pretrains both formats, probes every variant, and
writes results; `mfclr embed` and `mfclr probe` reuse the exported encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mfclr.config import load_config
from mfclr.probe.embed import load_embeddings
from tests.helpers import read_metrics, run_cli

pytestmark = pytest.mark.slow  # a whole `mfclr run` (both formats, compare, cross)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run")
    code, stdout, err = run_cli("run", "--preset", "tiny", "--out", str(out), "--quiet",
                                "--set", f"data.cache_dir={out / 'cache'}",
                                "--set", "train.epochs=6", "--formats", "audio,spectrogram,cross",
                                "--set", "tracking.wandb=offline",
                                "--set", "compare={lowlr: {train.lr: 0.0003}}",
                                "--set", "per_format.audio.train.epochs=7")  # fmt: skip
    assert code == 0, err
    return out, stdout


def _md_names(md: str) -> list[str]:
    """Row names of the first (results) table, whatever marks the chosen row carries."""
    lines: list[str] = []
    for ln in md.splitlines():
        if ln.startswith("|"):
            lines += [ln] if not ln.startswith("|---") else []
        elif lines:
            break
    return [ln.split("|")[1].strip().strip("*").removesuffix("★").strip() for ln in lines[1:]]


def test_results_hold_every_variant(run: tuple[Path, str]) -> None:
    out, stdout = run
    results = json.loads((out / "results.json").read_text())
    names = {row["name"] for row in results["rows"]}
    controls = {"random-init-audio", "random-init-spectrogram", "random-init", "mfcc"}
    assert {"audio", "spectrogram", "fused"} | controls <= names
    assert {"cross-audio", "cross-spectrogram", "cross-fused"} <= names
    assert {"lowlr-audio", "lowlr-spectrogram", "lowlr-fused"} <= names  # a compare variant
    for row in results["rows"]:
        cm = np.array(row["confusion_matrix"])
        assert row["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
        present = [ap for ap in row["per_class_ap"].values() if ap is not None]
        assert row["macro_map"] == pytest.approx(np.mean(present))
        assert len(row["confusion_matrix"]) == len(results["label_names"])
        assert sum(map(sum, row["confusion_matrix"])) == results["test_tracks"]
        assert np.mean(row["test_correct"]) == pytest.approx(row["accuracy"])
        lo, hi = row["accuracy_ci95"]
        assert lo <= row["accuracy"] <= hi
    md = (out / "results.md").read_text()
    assert sorted(_md_names(md)) == sorted(r["name"] for r in results["rows"])
    assert _md_names(md).count("fused") == 2  # linear and mlp, whichever row is chosen
    assert "fused" in _md_names(stdout) and "results.json" in stdout


def test_a_compare_variant_is_pretrained_with_its_own_overrides(run: tuple[Path, str]) -> None:
    out, _ = run
    for fmt in ("audio", "spectrogram"):
        variant = load_config(out / "pretrain" / f"lowlr-{fmt}" / "config.yaml")
        main = load_config(out / "pretrain" / fmt / "config.yaml")
        assert variant.train.lr == 0.0003 and main.train.lr == 0.001
        assert variant.compare == {} and variant.model == main.model
        assert (out / "pretrain" / f"lowlr-{fmt}" / "encoder.pt").is_file()


def test_each_format_is_pretrained_with_its_own_recipe(run: tuple[Path, str]) -> None:
    out, _ = run
    want = {"audio": 7, "lowlr-audio": 7, "spectrogram": 6, "lowlr-spectrogram": 6}
    for label, epochs in want.items():
        saved = load_config(out / "pretrain" / label / "config.yaml")
        assert saved.train.epochs == epochs and saved.per_format == {}
        assert json.loads((out / "pretrain" / label / "run.json").read_text())["epochs"] == epochs


def test_every_trained_row_is_paired_with_its_own_control(run: tuple[Path, str]) -> None:
    out, _ = run
    rows = json.loads((out / "results.json").read_text())["rows"]
    by_key = {(r["name"], r["head"]): r for r in rows}
    want = {"audio": "random-init-audio", "cross-audio": "random-init-audio",
            "spectrogram": "random-init-spectrogram", "fused": "random-init",
            "cross-fused": "random-init", "lowlr-audio": "random-init-audio",
            "lowlr-fused": "random-init"}  # fmt: skip
    for (name, head), r in by_key.items():
        if r["encoders"] in ("random-init", "mfcc"):
            assert "delta_vs_control" not in r and "delta_vs_mfcc" not in r
            continue
        assert r["control"] == want.get(name, r["control"])
        mfcc = by_key[("mfcc", head)]
        assert r["delta_vs_mfcc"] == pytest.approx(r["accuracy"] - mfcc["accuracy"])
        lo, hi = r["mfcc_delta_ci95"]
        assert lo <= r["delta_vs_mfcc"] <= hi and r["beats_mfcc"] == (lo > 0)
        control = by_key[(r["control"], head)]
        assert r["delta_vs_control"] == pytest.approx(r["accuracy"] - control["accuracy"])
        lo, hi = r["delta_ci95"]
        assert lo <= r["delta_vs_control"] <= hi
        assert r["beats_control"] == (lo > 0)


def test_the_fused_probe_beats_chance_clearly(run: tuple[Path, str]) -> None:
    out, _ = run
    results = json.loads((out / "results.json").read_text())
    chance = 1 / len(results["label_names"])
    fused = [r for r in results["rows"] if r["name"] == "fused"]
    assert max(r["accuracy"] for r in fused) > 2.5 * chance
    assert max(r["macro_map"] for r in fused) > 2.5 * chance


def test_pretraining_loss_falls_for_both_formats(run: tuple[Path, str]) -> None:
    out, _ = run
    for fmt, epochs in (("audio", 7), ("spectrogram", 6), ("cross", 6)):  # per_format: audio 7
        losses = [r["loss"] for r in read_metrics(out / "pretrain" / fmt)]
        assert len(losses) == epochs
        assert np.mean(losses[-3:]) < np.mean(losses[:3]), (fmt, losses)


def test_embeddings_are_exported_with_labels(run: tuple[Path, str]) -> None:
    out, _ = run
    emb = load_embeddings(out / "embeddings" / "audio.npz")
    for split in ("train", "valid", "test"):
        feats = emb.feats[split]
        assert feats.shape == (len(emb.labels[split]), 512)
        assert np.isfinite(feats).all()
    assert len(emb.label_names) == 8


def test_embed_and_probe_commands_reuse_the_encoders(run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = run
    common = ["--preset", "tiny", "--quiet", "--set", f"data.cache_dir={out / 'cache'}"]
    audio, spec = out / "pretrain" / "audio" / "encoder.pt", out / "pretrain" / "spectrogram"
    code, stdout, err = run_cli("embed", "--encoder", str(audio), "--out",
                                str(tmp_path / "a.npz"), *common)  # fmt: skip
    assert code == 0, err
    again = load_embeddings(tmp_path / "a.npz")
    first = load_embeddings(out / "embeddings" / "audio.npz")
    np.testing.assert_allclose(again.feats["test"], first.feats["test"], rtol=1e-5, atol=1e-6)
    code, stdout, err = run_cli("probe", "--encoder", f"audio={audio}",
                                "--encoder", f"spectrogram={spec / 'checkpoints' / 'last.pt'}",
                                "--fusion", "concat", "--fusion", "average", "--head", "linear",
                                "--out", str(tmp_path / "probe"), *common)  # fmt: skip
    assert code == 0, err
    rows = json.loads((tmp_path / "probe" / "results.json").read_text())["rows"]
    assert {(r["name"], r["head"]) for r in rows} >= {
        ("fused", "linear"),
        ("fused-average", "linear"),
    }
    assert {r["head"] for r in rows} == {"linear"}


def test_every_run_is_tracked_offline(run: tuple[Path, str]) -> None:
    from wandb_files import inspect_run, offline_runs

    out, _ = run
    runs = [inspect_run(r) for r in offline_runs(out)]
    pretrain = {r["config"]["format"] for r in runs if r["job_type"] == "pretrain"}
    assert pretrain == {"audio", "spectrogram", "cross"}
    probes = [r for r in runs if r["job_type"] == "probe"]
    results = json.loads((out / "results.json").read_text())
    assert len(probes) == len(results["rows"])
    assert {r["group"] for r in runs} == {out.name}
    # Each probe run's summary holds exactly its results.json row's numbers.
    by_row = {(row["name"], row["head"]): row for row in results["rows"]}
    assert {r["name"] for r in probes} == {f"{n}-{h}" for n, h in by_row}
    for r in probes:
        cfg = r["config"]
        row = by_row[next(k for k in by_row if f"{k[0]}-{k[1]}" == r["name"])]
        assert (cfg["head"], cfg["fusion"], cfg["encoders"]) == (
            row["head"], row["fusion"], row["encoders"]
        )  # fmt: skip
        assert r["summary"]["accuracy"] == pytest.approx(row["accuracy"])
        assert r["summary"]["macro_map"] == pytest.approx(row["macro_map"])
        assert r["summary"]["valid_accuracy"] == pytest.approx(row["valid_accuracy"])
    # Each pretrain run's last logged loss is the run folder's last metrics line.
    for r in (r for r in runs if r["job_type"] == "pretrain"):
        fmt = r["config"]["format"]
        label = r["name"].removeprefix(f"{out.name}-")
        last = read_metrics(out / "pretrain" / label)[-1]
        assert r["summary"]["loss"] == pytest.approx(last["loss"]), fmt


# Last: it re-runs one format in the same folder, rewriting results.json.
def test_a_second_run_reuses_checkpoints(run: tuple[Path, str]) -> None:
    out, _ = run
    before = (out / "pretrain" / "audio" / "checkpoints" / "last.pt").stat().st_mtime_ns
    code, _, err = run_cli("run", "--preset", "tiny", "--out", str(out), "--quiet",
                           "--formats", "audio", "--set", f"data.cache_dir={out / 'cache'}",
                           "--set", "train.epochs=6")  # fmt: skip
    assert code == 0, err
    assert (out / "pretrain" / "audio" / "checkpoints" / "last.pt").stat().st_mtime_ns == before
