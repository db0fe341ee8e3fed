"""Using what a run learned, on the tiny preset: `mfclr run` saves the row chosen on valid as
classifier.pt, `mfclr predict` on the test split's files reproduces that row track by track,
`mfclr probe --save-row` saves any other row (a control, a decision-level fusion), the Python
API and `mfclr embed PATH...` embed files as the probe did, unusable files are skipped by name,
and a model of another kind or version is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from data_fixtures import tone, write_tone

import mfclr
from mfclr.probe.embed import load_embeddings
from tests.helpers import (
    check_classifier_reproduces_its_row,
    probe_test_files,
    run_cli,
    tiny_config,
)

RUN_SETTINGS = ["train.epochs=1", "probe.heads=[linear]", "probe.fusions=[concat,weighted]"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    sets = [a for s in [f"data.cache_dir={out / 'cache'}", *RUN_SETTINGS] for a in ("--set", s)]
    code, stdout, err = run_cli("run", "--preset", "tiny", "--out", str(out), "--quiet", *sets)
    assert code == 0, err
    assert f"classifier:  {out / 'classifier.pt'}" in stdout
    return out


def _cfg(run: Path):
    return tiny_config(run / "cache", *RUN_SETTINGS)


def test_predict_reproduces_the_row_chosen_on_valid(run: Path, tmp_path: Path) -> None:
    row = check_classifier_reproduces_its_row(run, _cfg(run), tmp_path)
    rows = json.loads((run / "results.json").read_text())["rows"]
    trained = [r["valid_accuracy"] for r in rows if r["encoders"] == "trained"]
    assert row["encoders"] == "trained" and row["valid_accuracy"] == max(trained)


def test_any_row_can_be_saved_a_control_too(run: Path, tmp_path: Path) -> None:
    pre = run / "pretrain"
    code, stdout, err = run_cli(
        "probe", "--preset", "tiny", "--quiet", "--set", f"data.cache_dir={run / 'cache'}",
        "--encoder", f"audio={pre / 'audio' / 'encoder.pt'}",
        "--encoder", f"spectrogram={pre / 'spectrogram' / 'encoder.pt'}",
        "--fusion", "weighted", "--head", "linear", "--set", "probe.mfcc_baseline=false",
        "--save-row", "random-init-weighted/linear", "--out", str(tmp_path / "probe"),
    )  # fmt: skip
    assert code == 0, err
    assert "row random-init-weighted/linear" in stdout
    row = check_classifier_reproduces_its_row(tmp_path / "probe", _cfg(run), tmp_path)
    assert row["fusion"] == "weighted" and row["encoders"] == "random-init"


def test_a_row_the_table_will_not_have_is_refused_before_probing(run: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(
        "probe", "--preset", "tiny", "--set", f"data.cache_dir={run / 'cache'}",
        "--encoder", f"audio={run / 'pretrain' / 'audio' / 'encoder.pt'}", "--head", "linear",
        "--save-row", "fused/linear", "--out", str(tmp_path / "p"),
    )  # fmt: skip
    assert code == 2 and "names no row of this table; rows: audio, random-init-audio" in err
    assert not (tmp_path / "p" / "embeddings").exists()  # nothing was embedded


def test_the_api_and_embed_command_embed_files_as_the_probe(run: Path, tmp_path: Path) -> None:
    files, _ = probe_test_files(_cfg(run))
    table = load_embeddings(run / "embeddings" / "audio.npz").feats["test"]
    encoder = run / "pretrain" / "audio" / "encoder.pt"
    enc = mfclr.load_encoder(encoder)
    np.testing.assert_allclose(enc.embed_files(files).feats["audio"], table, rtol=0, atol=1e-6)
    wave, rate = sf.read(files[0], dtype="float32")
    for given in (wave, torch.from_numpy(wave)):  # one track alone: other batches, same pooling
        np.testing.assert_allclose(enc.embed(given, rate), table[0], rtol=1e-4, atol=1e-5)
    code, _, err = run_cli("embed", "--encoder", str(encoder), *map(str, files[:3]),
                           "--out", str(tmp_path / "e.npz"), "--quiet")  # fmt: skip
    assert code == 0, err
    exported = load_embeddings(tmp_path / "e.npz")
    assert exported.track_ids["files"] == [str(f) for f in files[:3]]
    np.testing.assert_allclose(exported.feats["files"], table[:3], rtol=0, atol=1e-6)
    clf = mfclr.load_classifier(run / "classifier.pt")
    many = clf.predict_files(files[:2]).probs
    np.testing.assert_allclose(clf.predict(wave, rate), many[0], rtol=0, atol=1e-5)
    again = mfclr.load_classifier(run / "classifier.pt").predict_files(files[:2]).probs
    assert np.array_equal(again, many)  # a second load predicts identically


def _bad_files(folder: Path) -> dict[str, str]:
    """One file of each unusable kind (name -> reason) beside one good file."""
    write_tone(folder / "good.wav", 2.0)
    cut = write_tone(folder / "cut.wav", 2.0)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    (folder / "empty.wav").write_bytes(b"")
    (folder / "junk.wav").write_bytes(b"RIFF this is not audio")
    write_tone(folder / "short.wav", 0.2)
    (folder / "sub").mkdir()
    nan = np.where(np.arange(16000) % 7, tone(2.0), np.nan).astype(np.float32)
    sf.write(str(folder / "sub" / "nan.wav"), nan, 8000, subtype="FLOAT")
    return {"cut.wav": "truncated", "empty.wav": "empty", "junk.wav": "corrupt",
            "short.wav": "short", "nan.wav": "non-finite"}  # fmt: skip


def test_unusable_files_are_skipped_by_name_or_stop_a_strict_run(
    run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = _bad_files(tmp_path / "in")
    model = str(run / "classifier.pt")
    out = tmp_path / "p.csv"
    code, stdout, err = run_cli("predict", "--model", model, str(tmp_path / "in"),
                                "--out", str(out), "--top-k", "2")  # fmt: skip
    assert code == 0, err
    for name in bad:  # one log line each (the CLI prints it as `HH:MM:SS W skipped ...`)
        lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith("skipped "), (name, lines)
    assert "1 files predicted, 5 skipped (corrupt 1, empty 1, non-finite 1, short 1, " \
           "truncated 1)" in stdout  # fmt: skip
    header, line = out.read_text().splitlines()
    assert header == "path,label_1,probability_1,label_2,probability_2"
    assert line.startswith(str(tmp_path / "in" / "good.wav") + ",")
    code, _, err = run_cli("predict", "--model", model, str(tmp_path / "in"), "--strict")
    assert code == 2 and err.count("\n") == 1 and "cut.wav is truncated" in err


def test_a_model_of_another_kind_or_version_is_refused(run: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "x.wav", 2.0)
    encoder = run / "pretrain" / "audio" / "encoder.pt"
    state = torch.load(run / "classifier.pt", weights_only=True)
    torch.save({**state, "version": 7}, tmp_path / "v7.pt")
    for model, needle in [(encoder, "'mfclr.encoder' checkpoint, expected 'mfclr.classifier'"),
                          (tmp_path / "v7.pt", "version 7, which this mfclr does not read"),
                          (song, "cannot be read")]:  # fmt: skip
        code, _, err = run_cli("predict", "--model", str(model), str(song))
        assert code == 2 and err.count("\n") == 1 and needle in err, err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--top-k", "0"], "expected a positive whole number"),
        (["--out", "preds.txt"], "must end in .csv or .json"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--batch-size", "x"], "expected a whole number"),
    ],
)
def test_bad_predict_flags_are_one_line(flags: list[str], needle: str, tmp_path: Path) -> None:
    code, _, err = run_cli("predict", "--model", str(tmp_path / "m.pt"), str(tmp_path), *flags)
    assert code == 2 and err.count("\n") == 1 and needle in err, err


def test_each_seed_folder_gets_its_own_classifier(tmp_path: Path) -> None:
    sets = ["train.epochs=1", "train.max_steps_per_epoch=1", "probe.heads=[linear]",
            "probe.random_init_control=false", "probe.mfcc_baseline=false",
            f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    code, stdout, err = run_cli("run", "--preset", "tiny", "--out", str(tmp_path / "r"),
                                "--formats", "audio", "--seeds", "2", "--quiet",
                                *[a for s in sets for a in ("--set", s)])  # fmt: skip
    assert code == 0, err
    assert "seed-<s>/classifier.pt (one per seed)" in stdout
    hashes = set()
    for seed in (0, 1):
        folder = tmp_path / "r" / f"seed-{seed}"
        assert json.loads((folder / "results.json").read_text())["classifier_row"] == "audio/linear"
        state = torch.load(folder / "classifier.pt", weights_only=True)
        assert state["encoders"]["audio"]["source"] == str(folder / "pretrain/audio/encoder.pt")
        hashes.add(mfclr.load_classifier(folder / "classifier.pt").saved.meta["config_hash"])
    assert len(hashes) == 2  # each seed's own config (train.seed)
    assert not (tmp_path / "r" / "classifier.pt").exists()
