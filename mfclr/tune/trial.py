"""A Tune trial (`trial_driver`, the function trainable): with one worker the pretraining harness
runs in the trial's own process; with two or more it is a Ray Train run (`mfclr.train.ray.launch`).

This module holds everything a trial process needs and nothing the sweep's driver alone needs
(Optuna, the searcher, the scheduler): each trial is a fresh process that imports it, and those
imports are a share of what a trial costs over a plain run.

A Ray Train run costs a worker group, a placement group and a controller per trial (~25 s on 2
cores, for a worker that could as well be the trial itself). With `ray.workers == 1` the trial
runs the harness (`mfclr.train.harness.run_pretraining`) directly, with a `TuneSink`:

- it resumes from `tune.get_checkpoint()` (a retry after a crash, a `--resume` after Ctrl-C);
- it hands Tune (ASHA, Optuna) the epochs that carry the validation metric, each with its
  checkpoint dict as a Tune checkpoint (`<trial>/checkpoint_*/checkpoint.pt`, the file
  `mfclr.train.ray.load_checkpoint` reads). Tune rejects a result without the metric the
  scheduler and searcher read, so epochs without it are not reported, and a trial checkpoints
  every `train.eval_every` epochs (a Ray Train run: every epoch).
- The frozen encoder(s) go where a Ray Train trial puts them: `<train_storage>/<trial>/encoder.pt`.
- W&B: the same run (id stable per trial) as a Ray Train trial's rank 0.

Two or more workers: the Ray Train run `<train_storage>/<trial>` (checkpoints every epoch,
restarts its own worker group), rank 0's validation epochs forwarded by `EvalReportCallback`.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs
import torch
from ray import tune
from ray.train import Checkpoint
from ray.tune.integration.ray_train import TuneReportCallback

from mfclr import checkpoint as ckpt
from mfclr.config import Config, build_config
from mfclr.data import Datasets
from mfclr.errors import CheckpointError
from mfclr.io import is_remote
from mfclr.train.export import export_encoders
from mfclr.train.harness import Sink, run_pretraining
from mfclr.train.keys import TIME_ATTR, VAL_METRIC
from mfclr.train.ray import (
    CHECKPOINT_FILE,
    RayTrainSink,
    TrainRun,
    export_encoder,
    finished_result,
    launch,
    load_checkpoint,
    tracking_for,
)
from mfclr.tune.panel import run_panel_trial

log = logging.getLogger(__name__)


def trial_config(base: Config, params: dict[str, Any], keys: dict[str, str]) -> Config:
    """The base config with one trial's sampled values (None = not searched for this format)."""
    over = {keys[n]: v for n, v in params.items() if n in keys and v is not None}
    return base.with_overrides(over) if over else base


class TuneSink(Sink):
    """A one-worker Tune trial's sink: resume from the trial's last Tune checkpoint; report the
    epochs that carry the validation metric to Tune, each with its checkpoint."""

    def __init__(self, repeat_restored: bool = False) -> None:
        super().__init__()
        self.repeat_restored = repeat_restored

    def restore(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        state = load_checkpoint(checkpoint)
        # A driver stopped (`ray job stop`, a lost head) after this checkpoint was stored but
        # before its result reached Tune's records leaves that epoch out of the study and of
        # ASHA's rungs: report it again. A result Tune already has is only repeated (ASHA
        # records a rung once; the study keeps one value per epoch). Synchronous halving pauses
        # trials at its rungs and resumes them from there, so it must not see the rung twice.
        last = (state.get("history") or [{}])[-1]
        if self.repeat_restored and VAL_METRIC in last and last.get(TIME_ATTR) == state["epoch"]:
            tune.report(dict(last))
        return state

    def keep(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if VAL_METRIC not in metrics or state is None:
            return
        with tempfile.TemporaryDirectory(prefix="mfclr-ckpt-") as tmp:
            ckpt.atomic_save(state, Path(tmp) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study shares: the base config (a dict, as Tune pickles it), the
    search keys (parameter -> dotted config key), where trials store their runs and log, and
    the sinks (the tests' faults wrap them)."""

    base: dict[str, Any]
    keys: dict[str, str]
    train_storage: str
    tracking_dir: str | None = None
    group: str | None = None
    use_gpu: bool = False
    sink: Sink = field(default_factory=lambda: TuneSink())
    train_sink: Sink = field(default_factory=lambda: RayTrainSink())
    panel: dict[str, dict[str, Any]] | None = None  # a panel sweep's datasets (tune/panel.py)


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


def run_trial(cfg: Config, fmt: str, name: str, setup: TrialSetup) -> str:
    """Pretrain `fmt` in this Tune trial (the harness with `setup.sink`, resuming from the last
    Tune checkpoint); export the frozen encoder(s) to `<train_storage>/<name>/`. Returns the
    exported path(s), ', '-joined."""
    fs, folder = _trial_folder(setup.train_storage, name)
    sink = copy.deepcopy(setup.sink)  # a reused trial process must not see the last one's state
    state = run_pretraining(cfg, fmt, sink, tracking=tracking_for(name, setup.group,
                            setup.tracking_dir), datasets=Datasets(progress=False),
                            device=torch.device("cuda" if setup.use_gpu else "cpu"),
                            progress=False)  # fmt: skip
    if state is None:
        raise CheckpointError(f"trial '{name}' trained no epoch; nothing to export")
    if sink.state is None:
        # Finished before an interruption reached Tune: report its final metrics once more.
        tune.report({**state["history"][-1], "workers": 1, "resumed_from_epoch": state["epoch"]})
    return _export(state, fs, folder)


class EvalReportCallback(TuneReportCallback):
    """Forwards to Tune only the epochs that carry the validation metric (with the checkpoint
    path): ASHA and Optuna read it from every result they get."""

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Checkpoint | None
    ) -> None:
        if metrics and VAL_METRIC in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def trial_driver(config: dict[str, Any], *, setup: TrialSetup) -> None:
    """One Tune trial: with one worker, the harness in this process (`run_trial`); with more,
    a Ray Train run named after the trial (resumed if it exists)."""
    fmt = config["format"]
    cfg = trial_config(build_config(setup.base).for_format(fmt), config, setup.keys)
    name = tune.get_context().get_trial_name()
    if setup.panel is not None:
        run_panel_trial(cfg, fmt, name, setup.panel, train_storage=setup.train_storage,
                        tracking_dir=setup.tracking_dir, group=setup.group)  # fmt: skip
        return
    if cfg.ray.workers == 1:
        run_trial(cfg, fmt, name, setup)
        return
    done = finished_result(setup.train_storage, name, cfg.train.epochs)
    if done is not None and done.checkpoint is not None:
        # Finished before an interruption reached Tune: report its final metrics once more.
        tune.report({**done.metrics, "checkpoint_path": done.checkpoint.path})
        return
    run = TrainRun(storage_path=setup.train_storage, name=name, use_gpu=setup.use_gpu,
                   tracking_dir=setup.tracking_dir, group=setup.group,
                   sink=setup.train_sink)  # fmt: skip
    export_encoder(launch(cfg, fmt, run, callbacks=[EvalReportCallback()]), fmt)
