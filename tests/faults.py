"""Test-only fault injection: sink wrappers around a runtime's checkpoint sink
(`mfclr.train.harness.Sink`) that kill the worker right after an epoch was kept, once (a marker
file records that it fired), or record that a worker trained at all.

Installed as the runtime's sink: `TrainRun(sink=KillAfterEpoch(RayTrainSink(), ...))` (Ray Train
workers) or `tune_format(..., sink=KillAfterEpoch(TuneSink(), ...))` (one-worker trials);
production code has no fault hook of its own. Register this module with
`ray.cloudpickle.register_pickle_by_value` so Ray workers, which do not have tests/ on their
path, unpickle it by value.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mfclr import distributed as dist
from mfclr.train.harness import SinkWrapper


class KillAfterEpoch(SinkWrapper):
    """Exit the worker of rank `rank` with code 17 after it kept epoch `epoch` (1-based), unless
    `marker` exists; `grace_s` first gives Ray's controller (which collects reports by polling
    every ~2 s) time to register that epoch's checkpoint."""

    def __init__(self, inner: Any, *, epoch: int, marker: str, rank: int = 0,
                 grace_s: float = 3.0) -> None:  # fmt: skip
        super().__init__(inner)
        self.epoch, self.marker, self.rank, self.grace_s = epoch, marker, rank, grace_s

    def after(self, metrics: dict[str, Any]) -> None:
        if metrics["epoch"] != self.epoch or Path(self.marker).exists():
            return
        time.sleep(self.grace_s)
        if dist.rank() == self.rank:
            Path(self.marker).touch()
            os._exit(17)


class TouchOnReport(SinkWrapper):
    """Create `marker` on the first epoch kept: shows whether a worker trained at all."""

    def __init__(self, inner: Any, marker: str) -> None:
        super().__init__(inner)
        self.marker = marker

    def after(self, metrics: dict[str, Any]) -> None:
        Path(self.marker).touch()
