"""Ray Train: one format's pretraining as a `TorchTrainer` of N data-parallel workers.

Three small pieces, as in Ray's own examples:
- `train_worker(config)`: what each worker runs: the one pretraining harness
  (`mfclr.train.harness.run_pretraining`) with the run's `RayTrainSink`.
- `RayTrainSink`: resumes from `ray.train.get_checkpoint()`; every rank calls
  `ray.train.report` each epoch (a barrier), rank 0 attaching the checkpoint dict saved in a
  temp folder.
- `launch(cfg, fmt, run)`: builds and fits the trainer (gloo on CPU, nccl on GPU) with the
  resources of `cfg.ray`, retries a failed worker group from the last checkpoint
  (`FailureConfig`); `export_encoder` then writes the frozen encoder(s) next to the run.

Storage layout: `<storage_path>/<name>/checkpoint_*/checkpoint.pt` (Ray's) and
`<storage_path>/<name>/encoder.pt` (the exported frozen encoder). Fitting again with the same
(storage_path, name) resumes the run. Only this module and `mfclr.tune` import Ray.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from dataclasses import dataclass, field
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

from mfclr import checkpoint as ckpt
from mfclr import signals
from mfclr.config import Config, absolute_paths, build_config
from mfclr.data import Datasets
from mfclr.errors import CheckpointError, ConfigError, MfclrError
from mfclr.io import check_writable_dir, is_remote
from mfclr.malloc import MALLOC_ENV
from mfclr.tracking import wandb_root
from mfclr.train.budget import resolve_epochs
from mfclr.train.export import export_encoders
from mfclr.train.harness import Sink, SinkWrapper, Tracking, run_pretraining

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
# Checkpoints kept per run: the latest few, so a trial's reported checkpoint outlives ASHA's stop.
KEEP_CHECKPOINTS = 3


@dataclass(frozen=True)
class TrainRun:
    """Where a Ray Train run lives and what it logs; its resources come from `cfg.ray`.

    `storage_path`: a local folder or a URI (s3://...); the run is `<storage_path>/<name>`.
    `use_gpu`: None decides from train.device (auto: when the cluster has GPUs).
    `env_vars`: reach the workers. `tracking_dir`: an absolute folder on every node where rank 0
    logs a W&B run, grouped by `group`. `sink`: what each worker keeps its epochs with (pickled
    to the workers; the tests' faults wrap it).
    """

    storage_path: str
    name: str
    use_gpu: bool | None = None
    env_vars: dict[str, str] | None = None
    tracking_dir: str | None = None
    group: str | None = None
    sink: Sink = field(default_factory=lambda: RayTrainSink())


def job_runtime_env(runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """`runtime_env` with MALLOC_ENV added to its env_vars (its own values win). glibc reads them
    when a process starts, so they must be in a Ray worker's environment from its launch: without
    them CPU steps run 1.5-1.8x slower (mfclr/malloc.py); a value set in the driver's environment
    wins."""
    runtime_env = dict(runtime_env or {})
    malloc = {k: os.environ.get(k, v) for k, v in MALLOC_ENV.items()}
    runtime_env["env_vars"] = {**malloc, **runtime_env.get("env_vars", {})}
    return runtime_env


def init_ray(**kwargs: Any) -> None:
    """Connect to the cluster in RAY_ADDRESS (set inside `ray job submit`) or start a local one;
    an address that no cluster answers at fails in one line, before Ray retries for minutes."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS", "").strip() or None
    if address is not None:
        check_ray_address(address)
    runtime_env = job_runtime_env(kwargs.pop("runtime_env", None))
    ray.init(address=address, runtime_env=runtime_env, **kwargs)
    signals.install()  # ray.init leaves a SIGTERM handler of its own


RAY_ADDRESS_TIMEOUT_S = 3.0


def check_storage(storage: str, what: str) -> None:
    """A storage root Ray can write: a writable local folder, or a URI pyarrow understands (the
    scheme, the bucket's form; the credentials are checked when the first file is written)."""
    if not is_remote(storage):
        check_writable_dir(Path(storage), what)
        return
    try:
        pyarrow.fs.FileSystem.from_uri(storage)
    except (ValueError, OSError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ConfigError(
            f"{what} '{storage}' is not a storage URI Ray can use ({first}); give a shared "
            "folder or s3://bucket/prefix"
        ) from None


def check_ray_address(address: str) -> None:
    """Refuse a jobs-API address (http://host:8265), or a GCS address where nothing listens."""
    unset = "unset RAY_ADDRESS to run on a local Ray instead"
    if address.startswith(("http://", "https://")):
        raise ConfigError(
            f"RAY_ADDRESS='{address}' is a jobs API address (what `ray job submit --address` "
            f"takes), not a cluster's GCS address (host:6379); submit the command with "
            f"`ray job submit`, or {unset}"
        )
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), RAY_ADDRESS_TIMEOUT_S):
            return
    except (OSError, ValueError) as err:
        why = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise ConfigError(
            f"no Ray cluster answers at RAY_ADDRESS='{address}' (a TCP connection for "
            f"{RAY_ADDRESS_TIMEOUT_S:g} s: {why}); start the cluster (`ray start --head`) or "
            f"{unset}"
        ) from None


# ----------------------------------------------------------------------------- worker side


class RayTrainSink(Sink):
    """A Ray Train worker's sink: resume from the run's last registered checkpoint; every rank
    reports every epoch (Ray requires the same number of calls on each rank), rank 0 with the
    checkpoint dict, written to a temp folder that Ray copies to storage."""

    def restore(self) -> dict[str, Any] | None:
        checkpoint = ray.train.get_checkpoint()
        return load_checkpoint(checkpoint) if checkpoint is not None else None

    def keep(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="mfclr-ckpt-") as tmp:
            ckpt.atomic_save(state, Path(tmp) / CHECKPOINT_FILE)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))


def load_checkpoint(checkpoint: Checkpoint, fmt: str | None = None) -> dict[str, Any]:
    """The pretraining checkpoint dict inside a Ray checkpoint (downloaded when remote)."""
    with checkpoint.as_directory() as folder:
        return ckpt.load(Path(folder) / CHECKPOINT_FILE, ckpt.PRETRAIN_KIND, fmt)


def tracking_for(name: str, group: str | None, tracking_dir: str | None) -> Tracking | None:
    """The W&B run of a Ray Train run or Tune trial `name` (None without `tracking_dir`): its
    id is stable per (group, name), so a restarted worker group or a retried trial continues
    the same W&B run."""
    return Tracking(tracking_dir, group or name, name) if tracking_dir else None


class NewestRestore(SinkWrapper):
    """Resume from the newest checkpoint that loads: the one Ray registered, or a newer one in
    the run folder `folder` (an interrupt can stop the controller before it registered the last
    checkpoint a worker wrote, or while it was copying one)."""

    def __init__(self, inner: Sink | SinkWrapper, folder: str | None) -> None:
        super().__init__(inner)
        self.folder = folder

    def restore(self) -> dict[str, Any] | None:
        try:
            registered = self.inner.restore()
        except CheckpointError as err:
            log.warning("the run's registered checkpoint does not load (%s)", err)
            registered = None
        found = newest_checkpoint(self.folder) if self.folder else None
        if found is not None and (registered is None or found["epoch"] > registered["epoch"]):
            log.info("resuming from %s's newest checkpoint (epoch %d)", self.folder, found["epoch"])
            return found
        return registered


def newest_checkpoint(folder: str) -> dict[str, Any] | None:
    """The checkpoint dict of the highest epoch among `<folder>/checkpoint_*/` that load (a
    local folder; None when there is none)."""
    best = None
    for path in sorted(Path(folder).glob(f"checkpoint_*/{CHECKPOINT_FILE}")):
        try:
            state = ckpt.load(path, ckpt.PRETRAIN_KIND)
        except CheckpointError:
            continue  # half-copied when the run stopped
        if best is None or state["epoch"] > best["epoch"]:
            best = state
    return best


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: the pretraining harness with the run's sink."""
    cfg, fmt = build_config(config["cfg"]), config["fmt"]
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    tracking = tracking_for(config["name"], config["group"], config.get("tracking_dir"))
    sink = NewestRestore(config["sink"], config.get("run_folder"))
    run_pretraining(cfg, fmt, sink, tracking=tracking, datasets=Datasets(), device=device,
                    progress=False)  # fmt: skip


# ----------------------------------------------------------------------------- driver side


def resolve_use_gpu(cfg: Config, use_gpu: bool | None) -> bool:
    """Whether a run's workers use GPUs: `use_gpu` checked against cfg (None: decide from
    train.device, `auto` = when the cluster has GPUs)."""
    if cfg.ray.gpus_per_worker == 0:
        if use_gpu:
            raise ConfigError("GPUs were requested but ray.gpus_per_worker is 0; raise it")
        use_gpu = False
    if cfg.train.device == "cuda" and use_gpu is False:
        raise ConfigError(
            "train.device is 'cuda' but GPUs were not requested; pass --use-gpu "
            "(and a ray.gpus_per_worker above 0)"
        )
    if cfg.train.device == "cpu" and use_gpu:
        raise ConfigError("--use-gpu contradicts train.device=cpu; drop one of them")
    if use_gpu is not None:
        return use_gpu
    if cfg.train.device == "cuda":
        return True
    return cfg.train.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0


def worker_resources(cfg: Config, gpu: bool) -> dict[str, float]:
    """What one worker holds: cfg.ray's CPUs, its GPUs when the run uses GPUs, and its custom
    resources (which place it on the nodes that have them)."""
    r = cfg.ray
    gpus = {"GPU": r.gpus_per_worker} if gpu else {}
    return {"CPU": r.cpus_per_worker, **gpus, **r.custom_resources}


def finished_result(storage_path: str, name: str, epochs: int) -> ray.train.Result | None:
    """The stored result of a run that already finished `epochs` epochs, else None."""
    path = f"{storage_path.rstrip('/')}/{name}"
    try:
        result = ray.train.Result.from_path(path)
    except (RuntimeError, OSError, ValueError):
        return None
    done = (result.metrics or {}).get("epochs_done", 0)
    return result if done >= epochs and result.checkpoint is not None else None


def _trainer(cfg: Config, fmt: str, run: TrainRun, gpu: bool, storage: str, callbacks: Any):
    # Imported here: a one-worker Tune trial runs no TorchTrainer and skips its ~0.3 s import.
    from ray.train.torch import TorchConfig, TorchTrainer

    r = cfg.ray
    worker_config = {
        "cfg": cfg.to_dict(),
        "fmt": fmt,
        "use_gpu": gpu,
        "name": run.name,
        "group": run.group,
        "tracking_dir": str(wandb_root(run.tracking_dir)) if run.tracking_dir else None,
        "sink": run.sink,
        # Local storage only: an object store's listing is Ray's business (docs/cluster.md).
        "run_folder": None if is_remote(storage) else f"{storage}/{run.name}",
    }
    return TorchTrainer(
        train_worker,
        train_loop_config=worker_config,
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=r.workers, use_gpu=gpu, resources_per_worker=worker_resources(cfg, gpu)
        ),
        run_config=RunConfig(
            name=run.name,
            storage_path=storage,
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            failure_config=FailureConfig(max_failures=r.max_failures),
            callbacks=callbacks,
            worker_runtime_env={"env_vars": dict(run.env_vars)} if run.env_vars else None,
        ),
    )


def launch(
    cfg: Config, fmt: str, run: TrainRun, *, callbacks: list[Any] | None = None
) -> ray.train.Result:
    """Pretrain `fmt` with `cfg.ray.workers` DDP workers; resume `<storage_path>/<name>` if it
    exists (see TrainRun). Returns Ray's Result (metrics of the last epoch, its checkpoint, the
    run path). A run that already finished is not started again. A worker's user error
    (DataError, ...) is re-raised as one line; other failures raise Ray's TrainingFailedError
    once `cfg.ray.max_failures` restarts are spent.
    """
    init_ray()
    cfg = absolute_paths(resolve_epochs(cfg.for_format(fmt), world=cfg.ray.workers))
    gpu = resolve_use_gpu(cfg, run.use_gpu)
    sp = run.storage_path
    storage = sp if is_remote(sp) else str(Path(sp).resolve())
    done = finished_result(storage, run.name, cfg.train.epochs)
    if done is not None:
        log.info("%s: run %s already finished %d epochs; not training again", fmt, run.name,
                 cfg.train.epochs)  # fmt: skip
        return done
    try:
        return _fit(_trainer(cfg, fmt, run, gpu, storage, callbacks))
    except WorkerGroupError as err:
        # A user-fixable error in a worker (missing data, bad checkpoint, a NaN loss) stays one
        # line.
        first = next(iter(err.worker_failures.values()), None)
        if isinstance(first, MfclrError | FloatingPointError):
            raise type(first)(f"Ray Train run '{run.name}' failed: {first}") from None
        raise


def _fit(trainer: Any) -> ray.train.Result:
    """`trainer.fit()` in a thread, so that Ray Train installs no SIGINT handler of its own (it
    exits the process with no word of what was kept): Ctrl-C and SIGTERM reach our handlers as a
    KeyboardInterrupt, the checkpoints on disk stay, and a rerun resumes from the newest one."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # handed to the main thread
            outcome["error"] = err

    thread = threading.Thread(target=target, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def export_encoder(result: ray.train.Result, fmt: str) -> str:
    """Write the frozen encoder(s) of the run's last checkpoint to `<run>/encoder.pt` (a
    cross-format run: `encoder-audio.pt`, `encoder-spectrogram.pt`); the paths, ', '-joined."""
    if result.checkpoint is None:
        raise CheckpointError(f"run '{result.path}' reported no checkpoint; nothing to export")
    state = load_checkpoint(result.checkpoint, fmt)
    fs = None if isinstance(result.filesystem, pyarrow.fs.LocalFileSystem) else result.filesystem
    return ", ".join(export_encoders(state, result.path, filesystem=fs).values())
