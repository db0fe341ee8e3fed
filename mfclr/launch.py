"""Ray Train: one format's pretraining as a `TorchTrainer` of N data-parallel workers.

Three small pieces, as in Ray's own examples:
- `train_worker(config)`: what each worker runs. It reads `ray.train.get_checkpoint()` and calls
  the one training loop, `mfclr.train.pretrain`, with `RayReport` as its report callable.
- `RayReport`: every rank calls `ray.train.report` each epoch (a barrier); rank 0 attaches the
  checkpoint dict saved in a temp folder.
- `launch(cfg, fmt, ...)`: builds and fits the trainer (gloo on CPU, nccl on GPU), retries a
  failed worker group from the last checkpoint (`FailureConfig`), then exports the encoder.

Storage layout: `<storage_path>/<name>/checkpoint_*/checkpoint.pt` (Ray's) and
`<storage_path>/<name>/encoder.pt` (the exported frozen encoder). Fitting again with the same
(storage_path, name) resumes the run. Only this module and `mfclr.tune` import Ray.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import ray.train
import torch
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
    WorkerGroupError,
)
from ray.train.torch import TorchConfig, TorchTrainer

from mfclr import checkpoint as ckpt
from mfclr import distributed as dist
from mfclr import train as _train
from mfclr.config import Config, build_config
from mfclr.errors import CheckpointError, ConfigError, MfclrError
from mfclr.tracking import NullTracker, safe_run_id, start_run, tracking_reporter

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
ENCODER_FILE = "encoder.pt"
# The validation metric's key in the epoch metrics (reported on rank 0 every eval_every epochs).
VAL_METRIC: str = _train.VAL_METRIC
# Checkpoints kept per run: the latest few, so a trial's reported checkpoint outlives ASHA's stop.
KEEP_CHECKPOINTS = 3
FAULT_GRACE_S = 3.0


def is_remote(path: str) -> bool:
    """True for a URI (s3://, gs://, ...), False for a local folder."""
    return "://" in path and not path.startswith("file://")


def absolute_paths(cfg: Config) -> Config:
    """Relative data paths made absolute here: Ray workers run in other working directories."""
    over: dict[str, Any] = {}
    if not Path(cfg.data.cache_dir).is_absolute():
        over["data.cache_dir"] = str(Path(cfg.data.cache_dir).resolve())
    for role in ("probe", "pretrain"):
        spec = getattr(cfg.data, role)
        if spec is not None and spec.root and not Path(spec.root).expanduser().is_absolute():
            over[f"data.{role}.root"] = str(Path(spec.root).resolve())
    return cfg.with_overrides(over) if over else cfg


def init_ray(**kwargs: Any) -> None:
    """Connect to the cluster in RAY_ADDRESS (set inside `ray job submit`) or start a local one."""
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, **kwargs)


# ----------------------------------------------------------------------------- worker side


class RayReport:
    """The `report(metrics, state)` callable of a Ray Train worker.

    Every rank reports every epoch (Ray requires the same number of calls on each rank); rank 0
    attaches the checkpoint dict, written to a temp folder that Ray copies to storage. Metrics
    gain `workers` (the world size) and `resumed_from_epoch` (0 for a fresh start).
    """

    def __init__(self, fmt: str, epochs: int, resumed_from: int = 0) -> None:
        self.fmt, self.epochs, self.resumed_from = fmt, epochs, resumed_from

    def __call__(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        metrics = {**metrics, "workers": dist.world_size(), "resumed_from_epoch": self.resumed_from}
        if state is None:
            ray.train.report(metrics)
            _grace_before_fault(metrics["epoch"])
            return
        # Logged, not printed: Ray Train's print patch would show a print twice.
        log.info("%s", _train.epoch_line(self.fmt, self.epochs, metrics))
        with tempfile.TemporaryDirectory(prefix="mfclr-ckpt-") as tmp:
            ckpt.atomic_save(state, Path(tmp) / CHECKPOINT_FILE)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
        _grace_before_fault(metrics["epoch"])


def _grace_before_fault(epoch: int) -> None:
    """Test-only: before the MFCLR_FAIL_AT_EPOCH hook kills a worker, give Ray's controller
    (it collects reports by polling every ~2 s) time to register this epoch's checkpoint."""
    marker = os.environ.get("MFCLR_FAIL_MARKER")
    if os.environ.get("MFCLR_FAIL_AT_EPOCH") == str(epoch) and not (
        marker and os.path.exists(marker)
    ):
        time.sleep(FAULT_GRACE_S)


def load_checkpoint(checkpoint: Checkpoint, fmt: str | None = None) -> dict[str, Any]:
    """The pretraining checkpoint dict inside a Ray checkpoint (downloaded when remote)."""
    with checkpoint.as_directory() as folder:
        return ckpt.load(Path(folder) / CHECKPOINT_FILE, ckpt.PRETRAIN_KIND, fmt)


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: resume from the last reported checkpoint if any, then pretrain."""
    cfg, fmt = build_config(config["cfg"]), config["fmt"]
    checkpoint = ray.train.get_checkpoint()
    state = load_checkpoint(checkpoint, fmt) if checkpoint is not None else None
    start = int(state["epoch"]) if state is not None else 0
    if start and dist.is_rank_zero():
        log.info("%s: resuming after epoch %d", fmt, start)
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    report: Any = RayReport(fmt, cfg.train.epochs, start)
    with _tracker(cfg, fmt, config) as tracker:
        _train.pretrain(
            cfg,
            fmt,
            tracking_reporter(tracker, report),
            initial_state=state,
            device=device,
            progress=False,
        )


def _tracker(cfg: Config, fmt: str, config: dict[str, Any]) -> Any:
    """The W&B run of this Ray Train run, on rank 0 only (a no-op elsewhere or when off).

    Its id is stable per run name, so a restarted worker group continues the same W&B run.
    """
    if not config.get("tracking_dir"):
        return NullTracker()
    group, name = config["group"] or config["name"], config["name"]
    return start_run(
        cfg,
        job_type="pretrain",
        name=f"{group}-{name}",
        run_id=safe_run_id(group, name),
        dir=config["tracking_dir"],
        fmt=fmt,
        dataset=cfg.data.probe.kind,
        group=group,
        rank=dist.rank(),
    )


# ----------------------------------------------------------------------------- driver side


def _use_gpu(cfg: Config, use_gpu: bool | None) -> bool:
    if cfg.train.device == "cuda" and use_gpu is False:
        raise ConfigError("train.device is 'cuda' but GPUs were not requested; pass --use-gpu")
    if cfg.train.device == "cpu" and use_gpu:
        raise ConfigError("--use-gpu contradicts train.device=cpu; drop one of them")
    if use_gpu is not None:
        return use_gpu
    if cfg.train.device == "cuda":
        return True
    return cfg.train.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0


def finished_result(storage_path: str, name: str, epochs: int) -> ray.train.Result | None:
    """The stored result of a run that already finished `epochs` epochs, else None."""
    path = f"{storage_path.rstrip('/')}/{name}"
    try:
        result = ray.train.Result.from_path(path)
    except (RuntimeError, OSError, ValueError):
        return None
    done = (result.metrics or {}).get("epochs_done", 0)
    return result if done >= epochs and result.checkpoint is not None else None


def launch(
    cfg: Config,
    fmt: str,
    *,
    workers: int,
    use_gpu: bool | None = None,
    storage_path: str,
    name: str,
    max_failures: int = 1,
    callbacks: list[Any] | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 1.0,
    env_vars: dict[str, str] | None = None,
    tracking_dir: str | None = None,
    group: str | None = None,
) -> ray.train.Result:
    """Pretrain `fmt` with `workers` DDP workers; resume `<storage_path>/<name>` if it exists.

    Returns Ray's Result (metrics of the last epoch, its checkpoint, the run path). A run that
    already finished is not started again. `env_vars` reach the workers (e.g. the test-only
    MFCLR_FAIL_AT_EPOCH fault hook). With `tracking_dir` (an absolute folder on every node),
    rank 0 logs a W&B run there, grouped by `group` (mode: cfg.tracking.wandb / WANDB_MODE).
    A worker's user error (DataError, ...) is re-raised as one line; other failures raise Ray's
    TrainingFailedError once `max_failures` restarts are spent.
    """
    init_ray()
    cfg = absolute_paths(cfg)
    gpu = _use_gpu(cfg, use_gpu)
    storage_path = storage_path if is_remote(storage_path) else str(Path(storage_path).resolve())
    done = finished_result(storage_path, name, cfg.train.epochs)
    if done is not None:
        log.info(
            "%s: run %s already finished %d epochs; not training again", fmt, name, cfg.train.epochs
        )
        return done
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpu else {})}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={
            "cfg": cfg.to_dict(),
            "fmt": fmt,
            "use_gpu": gpu,
            "name": name,
            "group": group,
            "tracking_dir": str(Path(tracking_dir).resolve()) if tracking_dir else None,
        },
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=callbacks,
            worker_runtime_env={"env_vars": dict(env_vars)} if env_vars else None,
        ),
    )
    try:
        return trainer.fit()
    except WorkerGroupError as err:
        # A user-fixable error in a worker (missing data, bad checkpoint, a NaN loss) stays one
        # line.
        first = next(iter(err.worker_failures.values()), None)
        if isinstance(first, MfclrError | FloatingPointError):
            raise type(first)(f"Ray Train run '{name}' failed: {first}") from None
        raise


def export_encoder(result: ray.train.Result, fmt: str) -> str:
    """Write the frozen encoder(s) of the run's last checkpoint to `<run>/encoder.pt` (a
    cross-format run: `encoder-audio.pt`, `encoder-spectrogram.pt`); the paths, ', '-joined."""
    if result.checkpoint is None:
        raise CheckpointError(f"run '{result.path}' reported no checkpoint; nothing to export")
    state = load_checkpoint(result.checkpoint, fmt)
    targets = []
    for part in _train.components(fmt):
        name = ENCODER_FILE if part == fmt else f"encoder-{part}.pt"
        target = f"{result.path.rstrip('/')}/{name}"
        exported = ckpt.pretrain_to_encoder(state, part)
        if isinstance(result.filesystem, pyarrow.fs.LocalFileSystem):
            targets.append(str(ckpt.atomic_save(exported, target)))
            continue
        buffer = io.BytesIO()
        torch.save(exported, buffer)
        with result.filesystem.open_output_stream(target) as out:
            out.write(buffer.getvalue())
        targets.append(target)
    return ", ".join(targets)
