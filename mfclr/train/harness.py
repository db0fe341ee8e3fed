"""One pretraining harness for every runtime: a local run folder, a Ray Train worker, a Tune trial.

    sink = LocalSink(run_dir) | RayTrainSink() | TuneSink()      # where the epochs go
    state = run_pretraining(cfg, fmt, sink, tracking=Tracking(...), datasets=Datasets())

The harness composes, once, what every runtime needs around the loop: the checkpoint to resume
from (the sink's `restore`), the W&B run (rank 0; its id stable per run, so a restart continues
it), the validation callable, the process's datasets, and the report chain (W&B first, then the
sink). A runtime contributes only its sink: how a checkpoint is kept and what the metrics carry.
A fault for the tests is a sink too (a wrapper in tests/faults.py), never an argument.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from mfclr import distributed as dist
from mfclr.config import Config
from mfclr.data import Datasets
from mfclr.probe.validate import make_validate
from mfclr.tracking import NullTracker, RunInfo, safe_run_id, start_run, tracking_reporter
from mfclr.train.loop import epoch_line, pretrain

log = logging.getLogger(__name__)


class Sink:
    """Where a runtime keeps what the loop reports each epoch.

    `restore()` gives the checkpoint dict to resume from (None: a fresh start); calling the sink
    with (metrics, state) keeps one epoch (every rank calls it; `state` is the checkpoint dict
    on rank zero, None elsewhere). Metrics gain `workers` and `resumed_from_epoch`, the epoch
    line is logged on rank zero, and `state` holds the last checkpoint dict kept.
    """

    def __init__(self) -> None:
        self.fmt, self.epochs, self.resumed_from = "", 0, 0
        self.state: dict[str, Any] | None = None

    def bind(self, fmt: str, epochs: int, resumed_from: int) -> None:
        self.fmt, self.epochs, self.resumed_from = fmt, epochs, resumed_from

    def restore(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def keep(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        """The runtime's part: store one epoch's metrics and (rank 0) checkpoint."""
        raise NotImplementedError

    def __call__(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        metrics = {**metrics, "workers": dist.world_size(), "resumed_from_epoch": self.resumed_from}
        if state is not None:
            self.state = state
            # Logged, not printed: Ray Train's print patch would show a print twice.
            log.info("%s", epoch_line(self.fmt, self.epochs, metrics))
        self.keep(metrics, state)


class SinkWrapper:
    """A sink that delegates to `inner` and then runs `after(metrics)`: how a runtime adds a
    behaviour to another's sink (and how the tests inject faults)."""

    def __init__(self, inner: Sink | SinkWrapper) -> None:
        self.inner = inner

    @property
    def state(self) -> dict[str, Any] | None:
        return self.inner.state

    def bind(self, fmt: str, epochs: int, resumed_from: int) -> None:
        self.inner.bind(fmt, epochs, resumed_from)

    def restore(self) -> dict[str, Any] | None:
        return self.inner.restore()

    def __call__(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        self.inner(metrics, state)
        self.after(metrics)

    def after(self, metrics: dict[str, Any]) -> None:
        """What runs after each epoch was kept (nothing by default)."""


@dataclass(frozen=True)
class Tracking:
    """Where and as what a pretraining logs its W&B run: `<dir>/wandb`, in run group `group`,
    named `<group>-<label>` with an id stable per (group, label). `restart`: a fresh run that
    reuses the id (its history starts over)."""

    dir: str
    group: str
    label: str
    restart: bool = False


def _tracker(cfg: Config, fmt: str, tracking: Tracking | None) -> Any:
    if tracking is None:
        return NullTracker()
    t = tracking
    info = RunInfo(job_type="pretrain", name=f"{t.group}-{t.label}",
                   run_id=safe_run_id(t.group, t.label), dir=t.dir,
                   dataset=cfg.data.probe.kind, group=t.group, fmt=fmt,
                   restart=t.restart)  # fmt: skip
    return start_run(cfg, info, rank=dist.rank())


def run_pretraining(
    cfg: Config,
    fmt: str,
    sink: Sink,
    *,
    tracking: Tracking | None = None,
    datasets: Datasets | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Pretrain `fmt` (cfg.train.epochs epochs, resuming from `sink.restore()`), every epoch
    reported to W&B and then kept by `sink`. Returns the last checkpoint dict (rank 0; None on
    other ranks). A run that already finished is not trained again."""
    state = sink.restore()
    start = int(state["epoch"]) if state is not None else 0
    sink.bind(fmt, cfg.train.epochs, start)
    if state is not None and start >= cfg.train.epochs:
        log.info("%s: already trained for %d epochs; not training again", fmt, start)
        return state
    if start and dist.is_rank_zero():
        log.info("%s: resuming after epoch %d", fmt, start)
    datasets = datasets or Datasets(progress=progress)
    with _tracker(cfg, fmt, tracking) as tracker:
        pretrain(cfg, fmt, tracking_reporter(tracker, sink),
                 validate=make_validate(cfg, datasets), initial_state=state, device=device,
                 progress=progress, datasets=datasets)  # fmt: skip
    return sink.state if sink.state is not None else state
