"""Ray Train: the local training loop runs as a 2-worker DDP TorchTrainer (gloo on CPU), a worker
killed mid-run resumes from the last checkpoint, and a finished run is not trained again.

Real Ray, one local runtime for the module (2 CPUs, dashboard on for the state API)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from mfclr import checkpoint as ckpt  # noqa: E402
from mfclr.config import Config, load_config  # noqa: E402
from mfclr.errors import DataError  # noqa: E402
from mfclr.evaluate import load_frozen  # noqa: E402
from mfclr.launch import CHECKPOINT_FILE, export_encoder, launch, load_checkpoint  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _cfg(tmp: Path, **over: object) -> Config:
    base = {
        "data.cache_dir": str(tmp / "cache"),
        "train.epochs": 3,
        "train.eval_every": 0,
        "train.batch_size": 8,
        "train.max_steps_per_epoch": 2,
    }
    return load_config(None, "tiny", {**base, **over})


def test_killed_worker_resumes_from_last_checkpoint(ray_runtime: None, tmp_path: Path) -> None:
    marker = tmp_path / "fault-fired"
    result = launch(
        _cfg(tmp_path),
        "audio",
        workers=2,
        use_gpu=False,
        storage_path=str(tmp_path / "runs"),
        name="audio_fault",
        max_failures=1,
        env_vars={
            "MFCLR_FAIL_AT_EPOCH": "2",
            "MFCLR_FAIL_RANK": "1",
            "MFCLR_FAIL_MARKER": str(marker),
        },
    )
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
    assert ckpt.load(encoder_path, ckpt.ENCODER_KIND, "audio")["epoch"] == 3
    assert load_frozen(encoder_path, "audio").encoder is not None

    # Fitting the same (storage, name) again finds the finished run and starts no workers.
    t0 = time.perf_counter()
    again = launch(
        _cfg(tmp_path),
        "audio",
        workers=2,
        use_gpu=False,
        storage_path=str(tmp_path / "runs"),
        name="audio_fault",
        max_failures=1,
    )
    assert time.perf_counter() - t0 < 5
    assert again.checkpoint.path == result.checkpoint.path


def test_a_data_error_in_a_worker_is_one_line(ray_runtime: None, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, **{"data.probe.kind": "folder", "data.probe.root": str(tmp_path / "no")})
    with pytest.raises(DataError) as err:
        launch(
            cfg,
            "spectrogram",
            workers=1,
            use_gpu=False,
            storage_path=str(tmp_path / "runs"),
            name="bad",
            max_failures=0,
        )
    assert "Ray Train run 'bad' failed" in str(err.value) and "\n" not in str(err.value)
