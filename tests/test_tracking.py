"""mfclr.tracking against real offline W&B files, read back with `wandb leet inspect`."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wandb_files import inspect_run, offline_runs, settled_steps

from mfclr import tracking
from mfclr.checkpoint import atomic_save
from mfclr.config import Config, build_config
from mfclr.errors import ConfigError
from mfclr.train.keys import VAL_METRIC

FAKE_KEY = "fakekey-mfclr-0123456789abcdef0123456789abcd"
LABELS = ["rock", "jazz", "pop"]
GROUP = "sweep-test"


def _cfg(**tracking_kw: Any) -> Config:
    return build_config({"train": {"epochs": 3, "temperature": 0.3},
                         "model": {"projector": "linear"}, "tracking": tracking_kw})  # fmt: skip


def _rows() -> list[dict[str, Any]]:
    def row(name: str, fusion: str, head: str, fmts: list[str], acc: float) -> dict[str, Any]:
        return {
            "name": name, "fusion": fusion, "head": head, "formats": fmts, "encoders": "trained",
            "accuracy": acc, "macro_map": acc - 0.05, "n": 9,
            "per_class_ap": {"rock": 0.7, "jazz": 0.5, "pop": None},  # pop absent from test
            "confusion_matrix": [[3, 0, 0], [1, 2, 0], [0, 1, 2]],
            "probe_info": {"dim": 1024, "probe": {"lr": 0.01, "grid": [{"lr": 0.01}]}},
        }  # fmt: skip

    return [
        row("audio", "none", "linear", ["audio"], 0.5),
        row("fused", "concat", "linear", ["audio", "spectrogram"], 0.7),
        row("fused", "concat", "mlp", ["audio", "spectrogram"], 0.6),
    ]


def _env(mp: pytest.MonkeyPatch, root: Path) -> None:
    mp.delenv("WANDB_MODE", raising=False)
    mp.setenv("WANDB_API_KEY", FAKE_KEY)
    mp.setenv("WANDB_SILENT", "true")
    mp.delenv("WANDB_DATA_DIR", raising=False)  # tables must be staged inside the run folder
    for var, sub in (("CACHE_DIR", "cache"), ("CONFIG_DIR", "config")):
        mp.setenv(f"WANDB_{var}", str(root / "wandb-home" / sub))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One pretrain run (3 epochs through tracking_reporter) and one probe run per row."""
    root = tmp_path_factory.mktemp("tracking")
    lookups: list[Any] = []
    real_lookup = socket.getaddrinfo
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, root)
        # Offline must not reach a server: record every host name lookup made in this process.
        mp.setattr(socket, "getaddrinfo", lambda *a, **k: lookups.append(a) or real_lookup(*a, **k))
        cfg = _cfg()
        info = tracking.RunInfo(job_type="pretrain", name="trial-0-spectrogram",
                                run_id=f"{GROUP}-trial-0", dir=root, fmt="spectrogram",
                                dataset="embedded", group=GROUP, git_sha="abc123")  # fmt: skip
        tracker = tracking.start_run(cfg, info)
        seen: list[int] = []
        report = tracking.tracking_reporter(tracker, lambda m, s: seen.append(m["epoch"]))
        with tracker:
            for epoch in (1, 2, 3):
                metrics = {"epoch": epoch, "loss": 5.0 - epoch, "lr": 3e-4, "samples_per_s": 100.0,
                           VAL_METRIC: 0.1 * epoch, "note": "ignored"}  # fmt: skip
                report(metrics, {"epoch": epoch})
        ids = tracking.log_probe_rows(cfg, _rows(), dir=root, group=GROUP, dataset="embedded",
                                      label_names=LABELS, git_sha="abc123")  # fmt: skip
        atomic_save({"config": cfg.to_dict(), "epoch": 3}, root / "ckpt" / "last.pt")
    inspected = [inspect_run(d) for d in offline_runs(root)]
    runs = {r["run_id"]: r for r in inspected}
    return {"root": root, "seen": seen, "ids": ids, "runs": runs, "lookups": lookups,
            "pretrain": runs[f"{GROUP}-trial-0"]}  # fmt: skip


def test_pretrain_run_has_group_tags_config_and_history(written: dict[str, Any]) -> None:
    run = written["pretrain"]
    assert written["seen"] == [1, 2, 3]  # the inner report still ran, after logging
    assert run["state"] == "finished" and run["name"] == "trial-0-spectrogram"
    assert (run["group"], run["job_type"]) == (GROUP, "pretrain")
    assert run["tags"] == ["format:spectrogram", "pretrain"]
    cfg = run["config"]
    assert set(tracking.flat_keys()) <= set(cfg)
    assert cfg["temperature"] == 0.3 and cfg["mask_size"] == 24 and cfg["time_mask_size"] == 40
    assert cfg["format"] == "spectrogram" and cfg["fusion"] is None and cfg["git_sha"] == "abc123"
    assert cfg["config"]["train"]["epochs"] == 3  # the full nested config rides along
    assert cfg["projector"] == "linear" and cfg["config"]["model"]["projector"] == "linear"
    rows = [r for r in run["history"] if "loss" in r]
    assert [r["_step"] for r in rows] == [1, 2, 3]
    assert [r["loss"] for r in rows] == [4.0, 3.0, 2.0]
    assert all({"lr", "samples_per_s", VAL_METRIC, "epoch"} <= set(r) for r in rows)
    assert not any("note" in r for r in rows)
    assert [r[VAL_METRIC] for r in rows] == pytest.approx([0.1, 0.2, 0.3])
    assert run["summary"][VAL_METRIC] == pytest.approx(0.3)


def test_one_probe_run_per_row_with_metrics_tags_and_table(written: dict[str, Any]) -> None:
    runs, ids = written["runs"], written["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3 and set(ids) <= set(runs)
    assert len(runs) == 4  # + the pretrain run
    by_name = {runs[i]["name"]: runs[i] for i in ids}
    assert set(by_name) == {"audio-linear", "fused-linear", "fused-mlp"}
    run = by_name["fused-mlp"]
    assert (run["group"], run["job_type"], run["state"]) == (GROUP, "probe", "finished")
    assert {"format:audio+spectrogram", "fusion:concat", "head:mlp", "probe"} <= set(run["tags"])
    assert run["config"]["format"] == "audio+spectrogram" and run["config"]["mask_size"] == 24
    assert by_name["audio-linear"]["config"]["mask_size"] is None  # no spectrogram encoder
    s = run["summary"]
    assert s["accuracy"] == pytest.approx(0.6) and s["macro_map"] == pytest.approx(0.55)
    assert s["per_class_ap/rock"] == pytest.approx(0.7) and "per_class_ap/pop" not in s
    assert s["probe_info/probe/lr"] == pytest.approx(0.01)
    variants = run["tables"]["variants"]
    assert len(variants["data"]) == 3  # every variant of the sweep, in every probe run
    assert {"name", "fusion", "head", "accuracy", "macro_map", "ap/rock"} <= set(
        variants["columns"]
    )
    # `wandb sync` uploads tables from their staged copies: these live in the output folder.
    assert len(list((written["root"] / "wandb" / "data").rglob("tmp*"))) >= 2 * len(ids)
    cm = run["tables"]["confusion_matrix_table"]
    assert cm["columns"] == ["Actual", "Predicted", "nPredictions"] and len(cm["data"]) == 9
    assert ["jazz", "rock", 1] in cm["data"]


def test_same_flat_config_keys_on_pretrain_and_probe_runs(written: dict[str, Any]) -> None:
    keys = {frozenset(r["config"]) for r in written["runs"].values()}
    assert len(keys) == 1 and set(tracking.flat_keys()) | {"config"} == set(next(iter(keys)))


def test_no_api_key_anywhere_and_no_network(written: dict[str, Any]) -> None:
    root: Path = written["root"]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and (root / "ckpt" / "last.pt").is_file()
    for path in files:
        assert FAKE_KEY.encode() not in path.read_bytes(), path
    # The .wandb log is written in blocks: also search its decoded records.
    assert FAKE_KEY not in repr(written["runs"])
    assert written["lookups"] == []


def test_a_restarted_run_keeps_its_id_and_its_steps_count_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # W&B's own convention wins
    info = tracking.RunInfo(job_type="pretrain", name="t", run_id=f"{GROUP}-t1", dir=tmp_path / "r",
                            dataset="d", git_sha="abc")  # fmt: skip
    report = tracking.tracking_reporter
    # First start: epochs 1 and 2, then the process dies before epoch 2's checkpoint was kept;
    # the restart trains epoch 2 again and goes on: epoch 2 is not logged twice.
    for epochs in ((1, 2), (2, 3)):
        with tracking.start_run(_cfg(), info) as tracker:
            log = report(tracker, lambda m, s: None)
            for epoch in epochs:
                log({"epoch": epoch, "loss": 5.0 - epoch}, None)
    assert not (tmp_path / "r").exists()
    root = tmp_path / "elsewhere"
    assert len(offline_runs(root)) == 2  # one folder per start, one run id
    assert settled_steps(root, f"{GROUP}-t1", [1, 2, 3]) == [1, 2, 3]
    # A fresh run that reuses the id (`--fresh`) starts counting again.
    again = tracking.start_run(_cfg(), dataclasses.replace(info, restart=True))
    with again:
        assert again.last_step is None


def test_rank_nonzero_and_disabled_write_nothing(tmp_path: Path, monkeypatch) -> None:
    _env(monkeypatch, tmp_path)
    info = tracking.RunInfo(job_type="pretrain", name="x", run_id="x", dir=tmp_path / "r",
                            dataset="d")  # fmt: skip
    tracker = tracking.start_run(_cfg(), info, rank=1)
    assert isinstance(tracker, tracking.NullTracker)
    tracker.log({"loss": 1.0}, step=1)
    tracker.finish()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert isinstance(tracking.start_run(_cfg(), info), tracking.NullTracker)
    rows = _rows()
    ids = tracking.log_probe_rows(_cfg(), rows, dir=tmp_path / "r", group="g", dataset="d",
                                  label_names=LABELS, git_sha=None)  # fmt: skip
    assert ids == [] and not (tmp_path / "r").exists()
    monkeypatch.delenv("WANDB_MODE")
    assert isinstance(tracking.start_run(_cfg(wandb="disabled"), info), tracking.NullTracker)


def test_mode_resolution_and_errors(monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert tracking.resolve_mode(_cfg()) == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert tracking.resolve_mode(_cfg()) == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert tracking.resolve_mode(_cfg(wandb="online")) == "offline"
    monkeypatch.setenv("WANDB_MODE", "onlin")
    with pytest.raises(ConfigError, match="WANDB_MODE='onlin'"):
        tracking.resolve_mode(_cfg())


def test_a_secret_in_the_config_is_refused(tmp_path: Path, monkeypatch) -> None:
    _env(monkeypatch, tmp_path)
    cfg = build_config({"data": {"cache_dir": f"/tmp/{FAKE_KEY}"}})
    with pytest.raises(ConfigError, match=r"\$WANDB_API_KEY"):
        tracking.start_run(cfg, tracking.RunInfo("pretrain", "x", "x", tmp_path, "d", git_sha="s"))
    assert not (tmp_path / "wandb").exists()


def test_run_ids_are_safe_and_short() -> None:
    assert tracking.safe_run_id("sweep 1", "fused/concat-mlp") == "sweep-1-fused-concat-mlp"
    long = tracking.safe_run_id("x" * 100)
    assert len(long) == 64 and long != tracking.safe_run_id("x" * 99)


def test_importing_tracking_does_not_import_wandb() -> None:
    code = "import sys, mfclr.tracking; assert 'wandb' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_the_api_key_can_come_from_a_file(tmp_path: Path, monkeypatch) -> None:
    """On a cluster the key is written on each node at set-up; only its path travels in a job's
    environment, so `ray job list` and the runtime-env logs never see the key."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    key_file = tmp_path / "wandb_api_key"
    key_file.write_text(FAKE_KEY + "\n")
    key_file.chmod(0o600)
    monkeypatch.setenv(tracking.KEY_FILE_ENV, str(key_file))
    assert tracking.api_key_from_file() == FAKE_KEY
    assert tracking.wandb_settings("online").api_key == FAKE_KEY
    assert tracking.wandb_settings("offline").api_key is None  # offline needs no key
    assert "WANDB_API_KEY" not in __import__("os").environ  # never put where children inherit
    cfg = build_config({"data": {"cache_dir": f"/tmp/{FAKE_KEY}"}})
    with pytest.raises(ConfigError, match=r"holds the value of the file \$WANDB_API_KEY_FILE"):
        tracking.start_run(cfg, tracking.RunInfo("pretrain", "x", "x", tmp_path, "d", git_sha="s"))
    key_file.write_text("\n")
    with pytest.raises(ConfigError, match=r"WANDB_API_KEY_FILE='.*wandb_api_key' is empty"):
        tracking.api_key_from_file()
    monkeypatch.setenv(tracking.KEY_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"WANDB_API_KEY_FILE='.*missing' cannot be read"):
        tracking.wandb_settings("online")
    assert tracking.api_key_from_file(strict=False) is None  # the secret check does not fail
