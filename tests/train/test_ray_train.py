"""Ray Train: the local training loop runs as a 2-worker DDP TorchTrainer (gloo on CPU), a worker
killed mid-run resumes from the last checkpoint, and a finished run is not trained again.

Real Ray, one local runtime for the module (2 CPUs, dashboard on for the state API)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import faults  # noqa: E402
import torch  # noqa: E402

from mfclr import checkpoint as ckpt  # noqa: E402
from mfclr.config import Config, load_config  # noqa: E402
from mfclr.errors import DataError  # noqa: E402
from mfclr.formats.frozen import load_frozen  # noqa: E402
from mfclr.train.ray import (  # noqa: E402
    CHECKPOINT_FILE,
    MALLOC_ENV,
    RayTrainSink,
    TrainRun,
    export_encoder,
    init_ray,
    launch,
    load_checkpoint,
    newest_checkpoint,
)

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    ray.cloudpickle.register_pickle_by_value(faults)  # workers do not have tests/ on their path
    # Started as the CLI starts it, from a driver without the MALLOC settings (`make test`
    # exports them): the workers must get them from the job's runtime env.
    saved = {k: os.environ.pop(k) for k in MALLOC_ENV if k in os.environ}
    try:
        init_ray(num_cpus=2, include_dashboard=True, log_to_driver=False, configure_logging=False)
    finally:
        os.environ.update(saved)
    yield
    ray.shutdown()


def test_workers_start_with_the_malloc_settings(ray_runtime: None) -> None:
    @ray.remote
    def env() -> dict[str, str | None]:
        return {k: os.environ.get(k) for k in MALLOC_ENV}

    assert ray.get(env.remote()) == MALLOC_ENV


def _cfg(tmp: Path, **over: object) -> Config:
    base = {
        "data.cache_dir": str(tmp / "cache"),
        "train.epochs": 3,
        "train.eval_every": 0,
        "train.batch_size": 8,
        "train.max_steps_per_epoch": 2,
        "ray.workers": 2,
        "ray.max_failures": 1,
    }
    return load_config(None, "tiny", {**base, **over})


def test_killed_worker_resumes_from_last_checkpoint(ray_runtime: None, tmp_path: Path) -> None:
    marker = tmp_path / "fault-fired"
    kill = faults.KillAfterEpoch(RayTrainSink(), epoch=2, rank=1, marker=str(marker))
    run = TrainRun(str(tmp_path / "runs"), "audio_fault", use_gpu=False, sink=kill)
    result = launch(_cfg(tmp_path), "audio", run)
    assert marker.exists(), "the fault hook never fired"
    assert result.error is None
    m = result.metrics
    # DDP over 2 ranks, restarted once, resumed after epoch 2 (not from scratch), 3 epochs total.
    assert m["workers"] == 2 and m["epochs_done"] == 3 and m["resumed_from_epoch"] == 2
    state = load_checkpoint(result.checkpoint, "audio")
    assert state["epoch"] == 3 and [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert (Path(result.checkpoint.path) / CHECKPOINT_FILE).is_file()

    encoder_path = export_encoder(result, "audio")
    assert Path(encoder_path) == tmp_path / "runs" / "audio_fault" / "encoder.pt"
    exported = ckpt.load(encoder_path, ckpt.ENCODER_KIND, "audio")
    assert exported["epoch"] == 3 and exported["pretrain_format"] == "audio"
    # The frozen encoder holds exactly the last checkpoint's trained weights, and embeds.
    frozen = load_frozen(encoder_path, "audio")
    trained = state["parts"]["audio"]["encoder"]
    loaded = frozen.encoder.state_dict()
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    x = torch.randn(2, frozen.crop_samples)
    assert frozen.encoder(frozen.frontend(x)).shape == (2, frozen.encoder.num_features)

    # Fitting the same (storage, name) again finds the finished run and starts no workers: a
    # sink that would touch a file on the first epoch never runs.
    untouched = tmp_path / "trained-again"
    rerun = TrainRun(str(tmp_path / "runs"), "audio_fault", use_gpu=False,
                     sink=faults.TouchOnReport(RayTrainSink(), str(untouched)))  # fmt: skip
    again = launch(_cfg(tmp_path), "audio", rerun)
    assert not untouched.exists()
    assert again.checkpoint.path == result.checkpoint.path
    assert again.metrics["epochs_done"] == 3 and again.metrics["resumed_from_epoch"] == 2


def test_sigterm_keeps_the_checkpoints_and_the_rerun_resumes_from_the_newest(
    ray_runtime: None, tmp_path: Path
) -> None:
    """SIGTERM (and Ctrl-C, the same path) on `mfclr pretrain --workers 2`: one line, exit 130,
    every checkpoint kept; the rerun resumes from the newest one on disk, even when Ray had not
    registered it before the stop."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mfclr", "pretrain", "--format", "audio", "--workers", "2",
           "--out", str(out), "--preset", "tiny", "--quiet", "--set", "train.epochs=200",
           "--set", "train.max_steps_per_epoch=2", "--set", "train.batch_size=8",
           "--set", "train.eval_every=0",
           "--set", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 240
    while len(list(out.glob("checkpoint_*/checkpoint.pt"))) < 3 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "mfclr: interrupted by SIGTERM" in err and "resume" in err
    newest = newest_checkpoint(str(out))
    assert newest is not None and newest["epoch"] >= 3
    cfg = _cfg(tmp_path, **{"train.epochs": newest["epoch"] + 1})
    result = launch(cfg, "audio", TrainRun(str(tmp_path), "run", use_gpu=False))
    assert result.metrics["resumed_from_epoch"] == newest["epoch"]
    assert result.metrics["epochs_done"] == newest["epoch"] + 1


def test_a_data_error_in_a_worker_is_one_line(ray_runtime: None, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, **{"data.probe.kind": "folder", "data.probe.root": str(tmp_path / "no"),
                            "ray.workers": 1, "ray.max_failures": 0})  # fmt: skip
    with pytest.raises(DataError) as err:
        launch(cfg, "spectrogram", TrainRun(str(tmp_path / "runs"), "bad", use_gpu=False))
    assert "Ray Train run 'bad' failed" in str(err.value) and "\n" not in str(err.value)
