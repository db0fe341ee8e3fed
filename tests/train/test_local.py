"""The pretraining loop and its run folder: the loss falls, checkpoints are strict, runs resume
exactly, and an interrupt leaves the last checkpoint usable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from wandb_files import settled_steps

from mfclr import checkpoint as ckpt
from mfclr.errors import CheckpointError, ConfigError
from mfclr.formats.frozen import load_frozen
from mfclr.io import STALE_AFTER_S
from mfclr.probe.validate import knn_accuracy
from mfclr.train.local import pretrain_local, resume_changes
from tests.helpers import read_metrics, tiny_config


@pytest.fixture(scope="module")
def cache(tiny_cache: Path) -> Path:
    return tiny_cache


@pytest.mark.parametrize("fmt", ["audio", "spectrogram"])
def test_loss_falls_and_the_run_folder_is_complete(cache: Path, tmp_path: Path, fmt: str) -> None:
    cfg = tiny_config(cache, "train.epochs=8", "train.eval_every=4")
    enc_path = pretrain_local(cfg, fmt, tmp_path, progress=False)[fmt]
    rows = read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    losses = [r["loss"] for r in rows]  # per-epoch losses are noisy on 3 steps: compare means
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    assert "val_accuracy" in rows[3] and "val_accuracy" not in rows[0]
    state = ckpt.load(tmp_path / "checkpoints" / "last.pt", ckpt.PRETRAIN_KIND, fmt)
    assert state["epoch"] == 8 and state["config"]["train"]["epochs"] == 8
    assert state["label_names"] and state["sample_rate"] == 8000
    frozen = load_frozen(enc_path, fmt)
    assert frozen.fmt == fmt and frozen.crop_samples == cfg.data.crop_samples
    assert (tmp_path / "config.yaml").is_file()
    assert '"status": "finished"' in (tmp_path / "run.json").read_text()


def test_the_optimizer_gets_the_configured_lr_and_weight_decay(cache: Path, tmp_path: Path) -> None:
    cfg = tiny_config(cache, "train.epochs=1", "train.lr=0.0123", "train.weight_decay=0.0456")
    pretrain_local(cfg, "spectrogram", tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    group = state["optimizer"]["param_groups"][0]
    assert (group["lr"], group["weight_decay"]) == (0.0123, 0.0456)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(cache: Path, tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    pretrain_local(tiny_config(cache, "train.epochs=3"), "spectrogram", straight, progress=False)
    pretrain_local(tiny_config(cache, "train.epochs=2"), "spectrogram", resumed, progress=False)
    pretrain_local(tiny_config(cache, "train.epochs=3"), "spectrogram", resumed, progress=False)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)
    assert b["epoch"] == 3 and len(b["history"]) == 3
    (part,) = a["parts"].values()
    for key, value in part["encoder"].items():
        torch.testing.assert_close(b["parts"]["spectrogram"]["encoder"][key], value, msg=key)


def test_a_finished_run_is_not_trained_again(cache: Path, tmp_path: Path) -> None:
    cfg = tiny_config(cache, "train.epochs=1")
    pretrain_local(cfg, "spectrogram", tmp_path, progress=False)
    before = (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns
    pretrain_local(cfg, "spectrogram", tmp_path, progress=False)
    assert (tmp_path / "checkpoints" / "last.pt").stat().st_mtime_ns == before
    assert len(read_metrics(tmp_path)) == 1


def test_checkpoints_are_loaded_strictly(cache: Path, tmp_path: Path) -> None:
    pretrain_local(tiny_config(cache, "train.epochs=1"), "spectrogram", tmp_path, progress=False)
    last = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match="holds a 'spectrogram' encoder, expected 'audio'"):
        ckpt.load(last, ckpt.PRETRAIN_KIND, "audio")
    with pytest.raises(CheckpointError, match="is a 'mfclr.encoder' checkpoint"):
        ckpt.load(tmp_path / "encoder.pt", ckpt.PRETRAIN_KIND)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot be read"):
        ckpt.load(bad, ckpt.ENCODER_KIND)
    other = tiny_config(cache, "train.epochs=2", "model.resnet.blocks=[2,1,1,1]")
    with pytest.raises(ConfigError, match="model.resnet.blocks"):
        pretrain_local(other, "spectrogram", tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="do not fit this architecture"):
        pretrain_local(other, "spectrogram", tmp_path, progress=False, override_resume=True)
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an mfclr checkpoint"):
        ckpt.load(tmp_path / "foreign.pt", ckpt.ENCODER_KIND)


def test_one_layout_for_every_format_and_version_1_files_still_load(
    cache: Path, tmp_path: Path
) -> None:
    pretrain_local(tiny_config(cache, "train.epochs=1"), "audio", tmp_path, progress=False)
    last = tmp_path / "checkpoints" / "last.pt"
    raw = torch.load(last, weights_only=True)
    assert raw["version"] == ckpt.VERSION and set(raw["parts"]) == {"audio"}
    assert not {"encoder", "projector", "encoder_spec"} & set(raw)  # weights only under parts
    # A version-1 file (one format's weights at the top level) reads as today's layout...
    v1 = {k: v for k, v in raw.items() if k != "parts"} | raw["parts"]["audio"] | {"version": 1}
    ckpt.atomic_save(v1, last)
    state = ckpt.load(last, ckpt.PRETRAIN_KIND, "audio")
    assert set(state["parts"]) == {"audio"}
    for key, value in raw["parts"]["audio"]["encoder"].items():
        torch.testing.assert_close(state["parts"]["audio"]["encoder"][key], value)
    # ... exports the same encoder, and resumes.
    frozen = load_frozen(last, "audio")
    assert frozen.fmt == "audio"
    pretrain_local(tiny_config(cache, "train.epochs=2"), "audio", tmp_path, progress=False)
    assert ckpt.load(last, ckpt.PRETRAIN_KIND, "audio")["epoch"] == 2


def test_the_projector_is_a_hyperparameter_and_its_weights_load_strictly(
    cache: Path, tmp_path: Path
) -> None:
    none = tmp_path / "none"
    pretrain_local(tiny_config(cache, "train.epochs=1", "model.projector=none"), "audio", none,
                   progress=False)  # fmt: skip
    raw = torch.load(none / "checkpoints" / "last.pt", weights_only=True)
    assert raw["config"]["model"]["projector"] == "none"
    assert raw["parts"]["audio"]["projector"] == {}  # the loss ran on h itself
    linear = tiny_config(cache, "train.epochs=2", "model.projector=linear")
    with pytest.raises(ConfigError, match="model.projector 'none' -> 'linear'"):
        pretrain_local(linear, "audio", none, progress=False)
    with pytest.raises(CheckpointError, match="audio projector weights do not fit"):
        pretrain_local(linear, "audio", none, progress=False, override_resume=True)
    # A checkpoint written before the key existed had the MLP projector: it resumes as one.
    old = tmp_path / "old"
    pretrain_local(tiny_config(cache, "train.epochs=1"), "audio", old, progress=False)
    last = old / "checkpoints" / "last.pt"
    raw = torch.load(last, weights_only=True)
    del raw["config"]["model"]["projector"]
    ckpt.atomic_save(raw, last)
    pretrain_local(tiny_config(cache, "train.epochs=2"), "audio", old, progress=False)
    assert ckpt.load(last, ckpt.PRETRAIN_KIND, "audio")["epoch"] == 2


def test_resume_refuses_other_hyperparameters_unless_overridden(
    cache: Path, tmp_path: Path
) -> None:
    pretrain_local(tiny_config(cache, "train.epochs=1"), "spectrogram", tmp_path, progress=False)
    last = tmp_path / "checkpoints" / "last.pt"
    stale = last.parent / ".last.pt.k3j2h1g0.tmp"  # a kill during a checkpoint write left it
    stale.write_bytes(b"")
    then = stale.stat().st_mtime - STALE_AFTER_S - 60
    os.utime(stale, (then, then))
    before = {p.name: p.read_bytes() for p in (tmp_path / "config.yaml", tmp_path / "run.json")}
    changed = tiny_config(cache, "train.epochs=2", "train.lr=0.1", "train.temperature=0.2")
    with pytest.raises(ConfigError) as err:
        pretrain_local(changed, "spectrogram", tmp_path, progress=False)
    message = str(err.value)
    for needle in ("train.lr", "train.temperature", "--fresh", "--out", "--override-resume"):
        assert needle in message
    assert "train.epochs" not in message  # more epochs extend a run
    after = {p.name: p.read_bytes() for p in (tmp_path / "config.yaml", tmp_path / "run.json")}
    assert after == before and not stale.exists()  # nothing written, the stale temp is gone
    pretrain_local(changed, "spectrogram", tmp_path, progress=False, override_resume=True)
    state = ckpt.load(last, ckpt.PRETRAIN_KIND)
    assert state["epoch"] == 2 and state["optimizer"]["param_groups"][0]["lr"] == 0.1
    record = json.loads((tmp_path / "run.json").read_text())["resume_overrides"]
    assert record == [
        {"after_epoch": 1, "changed": {"train.lr": [0.001, 0.1], "train.temperature": [0.5, 0.2]}}
    ]


def test_only_settings_that_change_no_weight_may_differ_on_resume(cache: Path) -> None:
    saved = tiny_config(cache).to_dict()
    same = tiny_config(cache / "elsewhere", "train.epochs=50", "train.device=cpu",
                       "data.loader_workers=2", "tracking.wandb=disabled", "train.eval_every=3",
                       "probe.heads=[mlp]").to_dict()  # fmt: skip
    assert resume_changes(saved, same) == {}
    # A config saved before a key existed (train.knn_k, the ray section) compares at defaults.
    older = {**saved, "train": {k: v for k, v in saved["train"].items() if k != "knn_k"}}
    older.pop("ray")
    assert resume_changes(older, tiny_config(cache).to_dict()) == {}
    assert set(resume_changes(older, tiny_config(cache, "train.lr=0.5").to_dict())) == {"train.lr"}
    other = tiny_config(cache, "augment.audio.noise.p=0.1", "data.pretrain.kind=embedded")
    assert set(resume_changes(saved, other.to_dict())) >= {"augment.audio.noise.p"}
    # A run saved before the waveform frontend had a setting was trained without normalising:
    # today's default (rms) is a change for it, not a match.
    legacy = tiny_config(cache).to_dict()
    del legacy["model"]["samplecnn"]["normalize"]
    assert set(resume_changes(legacy, tiny_config(cache).to_dict())) == {
        "model.samplecnn.normalize"
    }
    # A spectrogram run never reads the audio encoder's sections: a new audio recipe resumes it.
    audio = tiny_config(cache, "augment.audio.noise.p=0.1", "model.samplecnn.normalize=none")
    assert resume_changes(saved, audio.to_dict(), ["spectrogram"]) == {}
    assert set(resume_changes(saved, audio.to_dict(), ["audio"])) == {
        "augment.audio.noise.p", "model.samplecnn.normalize"}  # fmt: skip


def test_resuming_a_run_of_another_format_names_the_fix(cache: Path, tmp_path: Path) -> None:
    pretrain_local(tiny_config(cache, "train.epochs=1"), "spectrogram", tmp_path, progress=False)
    with pytest.raises(CheckpointError) as err:
        pretrain_local(tiny_config(cache, "train.epochs=1"), "audio", tmp_path, progress=False)
    assert "holds a spectrogram pretraining run" in str(err.value)
    assert "another --out" in str(err.value) and "--fresh" in str(err.value)
    assert "a audio" not in str(err.value)


def _lines(path: Path) -> int:
    """Complete lines in a file another process is appending to (0 before it exists)."""
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def test_ctrl_c_keeps_the_last_checkpoint_and_the_run_resumes(cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mfclr", "pretrain", "--format", "spectrogram", "--preset",
           "tiny", "--out", str(run), "--quiet", "--set", f"data.cache_dir={cache}",
           "--set", "train.epochs=200", "--set", "tracking.wandb=offline"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Started with SIGINT ignored, as a non-interactive shell starts a background job: the CLI
    # must still stop at a checkpoint on SIGINT.
    ignore = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ignore)
    last = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while _lines(run / "metrics.jsonl") < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # metrics follow the checkpoint of their epoch: last.pt exists by then
    proc.send_signal(signal.SIGINT)
    # A hang guard, not a speed check: closing the run (W&B, loader) is slow on a loaded machine.
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "interrupted"  # not left at "running"
    state = ckpt.load(last, ckpt.PRETRAIN_KIND, "spectrogram")  # intact, loads strictly
    done = state["epoch"]
    assert 2 <= done < 200
    cfg = tiny_config(cache, f"train.epochs={done + 1}", "tracking.wandb=offline")
    pretrain_local(cfg, "spectrogram", run, progress=False)
    after = ckpt.load(last, ckpt.PRETRAIN_KIND, "spectrogram")
    assert after["epoch"] == done + 1 and after["history"][:done] == state["history"]
    # Its W&B run kept its id, and its steps went on counting: each epoch once, in order.
    expected = list(range(1, done + 2))
    assert settled_steps(run, "run-spectrogram", expected) == expected


def test_knn_accuracy_on_known_points() -> None:
    import numpy as np

    bank = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    bank_y = np.array([0, 0, 1, 1])
    query = np.array([[1.0, 0.05], [0.05, 1.0]])
    assert knn_accuracy(bank, bank_y, query, np.array([0, 1]), k=2) == 1.0
    assert knn_accuracy(bank, bank_y, query, np.array([1, 0]), k=2) == 0.0


def test_cross_format_pretraining_trains_both_encoders(cache: Path, tmp_path: Path) -> None:
    cfg = tiny_config(cache, "train.epochs=3", "train.eval_every=3")
    paths = pretrain_local(cfg, "cross", tmp_path, progress=False)
    assert set(paths) == {"audio", "spectrogram"}
    rows = read_metrics(tmp_path)
    assert rows[-1]["loss"] < rows[0]["loss"] and "val_accuracy" in rows[-1]
    state = ckpt.load(tmp_path / "checkpoints" / "last.pt", ckpt.PRETRAIN_KIND, "cross")
    assert set(state["parts"]) == {"audio", "spectrogram"}
    for fmt, path in paths.items():
        frozen = load_frozen(path, fmt)
        assert frozen.fmt == fmt
        same = load_frozen(tmp_path / "checkpoints" / "last.pt", fmt)  # a part of the checkpoint
        for key, value in frozen.encoder.state_dict().items():
            torch.testing.assert_close(same.encoder.state_dict()[key], value)
    with pytest.raises(CheckpointError, match="cross-format checkpoint"):
        load_frozen(tmp_path / "checkpoints" / "last.pt")
    pretrain_local(tiny_config(cache, "train.epochs=4"), "cross", tmp_path, progress=False)
    assert len(read_metrics(tmp_path)) == 4  # resumed, not restarted
