"""A Tune trial (`trial_driver`, the function trainable): with one worker the training loop runs in
the trial's own process; with two or more it is a Ray Train run (`mfclr.train.ray.launch`).

This module holds everything a trial process needs and nothing the sweep's driver alone needs
(Optuna, the searcher, the scheduler): each trial is a fresh process that imports it, and those
imports are a share of what a trial costs over a plain run.

A Ray Train run costs a worker group, a placement group and a controller per trial (~25 s on 2
cores, for a worker that could as well be the trial itself). With `ray.workers == 1` the trial
calls `mfclr.train.loop.pretrain` directly:

- `TrialReport` hands Tune (ASHA, Optuna) the epochs that carry the validation metric, each with
  its checkpoint dict as a Tune checkpoint (`<trial>/checkpoint_*/checkpoint.pt`, the file
  `mfclr.train.ray.load_checkpoint` reads). Tune rejects a result without the metric the
  scheduler and searcher read, so epochs without it are not reported, and a trial checkpoints
  every `train.eval_every` epochs (a Ray Train run: every epoch).
- A retry after a crash (Tune's `FailureConfig`) and a `--resume` after Ctrl-C continue from
  `tune.get_checkpoint()`, the last reported checkpoint.
- The frozen encoder(s) go where a Ray Train trial puts them: `<train_storage>/<trial>/encoder.pt`.
- W&B: the same run (`run_tracker`, id stable per trial) as a Ray Train trial's rank 0.

Two or more workers: the Ray Train run `<train_storage>/<trial>` (checkpoints every epoch,
restarts its own worker group), rank 0's validation epochs forwarded by `EvalReportCallback`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs
import torch
from ray import tune
from ray.train import Checkpoint
from ray.tune.integration.ray_train import TuneReportCallback

from mfclr import checkpoint as ckpt
from mfclr.config import Config, build_config
from mfclr.errors import CheckpointError
from mfclr.io import is_remote
from mfclr.probe.validate import make_validate
from mfclr.tracking import tracking_reporter
from mfclr.train.export import export_encoders
from mfclr.train.loop import VAL_METRIC, Report, epoch_line, pretrain
from mfclr.train.ray import (
    CHECKPOINT_FILE,
    TrainRun,
    export_encoder,
    finished_result,
    launch,
    load_checkpoint,
    run_tracker,
)

log = logging.getLogger(__name__)


def trial_config(base: Config, params: dict[str, Any], keys: dict[str, str]) -> Config:
    """The base config with one trial's sampled values (None = not searched for this format)."""
    over = {keys[n]: v for n, v in params.items() if n in keys and v is not None}
    return base.with_overrides(over) if over else base


class TrialReport:
    """The loop's `report(metrics, state)` inside a one-worker Tune trial.

    Metrics gain `workers` (1) and `resumed_from_epoch`, as a Ray Train worker's do. `state`
    keeps the last checkpoint dict (every epoch's, reported or not) for the export.
    """

    def __init__(self, fmt: str, epochs: int, resumed_from: int = 0) -> None:
        self.fmt, self.epochs, self.resumed_from = fmt, epochs, resumed_from
        self.state: dict[str, Any] | None = None

    def metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**metrics, "workers": 1, "resumed_from_epoch": self.resumed_from}

    def __call__(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        metrics = self.metrics(metrics)
        self.state = state
        log.info("%s", epoch_line(self.fmt, self.epochs, metrics))
        if VAL_METRIC not in metrics or state is None:
            return
        with tempfile.TemporaryDirectory(prefix="mfclr-ckpt-") as tmp:
            ckpt.atomic_save(state, Path(tmp) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _trial_folder(train_storage: str, name: str) -> tuple[pyarrow.fs.FileSystem | None, str]:
    """`<train_storage>/<name>` created (as a Ray Train run's folder is, when it starts), with
    its filesystem (None: a local folder)."""
    folder = f"{train_storage.rstrip('/')}/{name}"
    if not is_remote(train_storage):
        Path(folder).mkdir(parents=True, exist_ok=True)
        return None, folder
    fs, path = pyarrow.fs.FileSystem.from_uri(folder)
    fs.create_dir(path)
    return fs, path


def _export(state: dict[str, Any], fs: pyarrow.fs.FileSystem | None, folder: str) -> str:
    return ", ".join(export_encoders(state, folder, filesystem=fs).values())


def run_trial(
    cfg: Config,
    fmt: str,
    *,
    name: str,
    train_storage: str,
    use_gpu: bool,
    tracking_dir: str | None = None,
    group: str | None = None,
    wrap_report: Callable[[Report], Report] | None = None,
) -> str:
    """Pretrain `fmt` in this Tune trial, resuming from its last Tune checkpoint; export the
    frozen encoder(s) to `<train_storage>/<name>/`. Returns the exported path(s), ', '-joined.
    `wrap_report` wraps the loop's report callable (the tests' fault injection)."""
    fs, folder = _trial_folder(train_storage, name)
    checkpoint = tune.get_checkpoint()
    state = load_checkpoint(checkpoint, fmt) if checkpoint is not None else None
    start = int(state["epoch"]) if state is not None else 0
    reporter = TrialReport(fmt, cfg.train.epochs, start)
    if state is not None and start >= cfg.train.epochs:
        # Finished before an interruption reached Tune: report its final metrics once more.
        tune.report(reporter.metrics(state["history"][-1]))
        return _export(state, fs, folder)
    if start:
        log.info("%s: trial %s resumes after epoch %d", fmt, name, start)
    report: Report = reporter if wrap_report is None else wrap_report(reporter)
    tracker = run_tracker(cfg, fmt, name=name, group=group, tracking_dir=tracking_dir)
    device = torch.device("cuda" if use_gpu else "cpu")
    with tracker:
        pretrain(cfg, fmt, tracking_reporter(tracker, report), validate=make_validate(cfg),
                 initial_state=state, device=device, progress=False)  # fmt: skip
    if reporter.state is None:
        raise CheckpointError(f"trial '{name}' trained no epoch; nothing to export")
    return _export(reporter.state, fs, folder)


class EvalReportCallback(TuneReportCallback):
    """Forwards to Tune only the epochs that carry the validation metric (with the checkpoint
    path): ASHA and Optuna read it from every result they get."""

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Checkpoint | None
    ) -> None:
        if metrics and VAL_METRIC in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def trial_driver(
    config: dict[str, Any],
    *,
    base: dict[str, Any],
    keys: dict[str, str],
    train_storage: str,
    tracking_dir: str | None = None,
    group: str | None = None,
    use_gpu: bool = False,
    wrap_report: Callable[[Report], Report] | None = None,
) -> None:
    """One Tune trial: with one worker, the training loop in this process (`run_trial`);
    with more, a Ray Train run named after the trial (resumed if it exists)."""
    fmt = config["format"]
    cfg = trial_config(build_config(base).for_format(fmt), config, keys)
    name = tune.get_context().get_trial_name()
    if cfg.ray.workers == 1:
        run_trial(cfg, fmt, name=name, train_storage=train_storage, use_gpu=use_gpu,
                  tracking_dir=tracking_dir, group=group, wrap_report=wrap_report)  # fmt: skip
        return
    done = finished_result(train_storage, name, cfg.train.epochs)
    if done is not None and done.checkpoint is not None:
        # Finished before an interruption reached Tune: report its final metrics once more.
        tune.report({**done.metrics, "checkpoint_path": done.checkpoint.path})
        return
    run = TrainRun(storage_path=train_storage, name=name, use_gpu=use_gpu,
                   tracking_dir=tracking_dir, group=group, wrap_report=wrap_report)  # fmt: skip
    export_encoder(launch(cfg, fmt, run, callbacks=[EvalReportCallback()]), fmt)
