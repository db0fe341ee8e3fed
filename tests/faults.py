"""Test-only fault injection: a wrapper around the training loop's `report` callable that kills
its worker right after an epoch was reported, once (a marker file records that it fired).

Installed through `TrainRun(wrap_report=...)` (Ray Train workers) or by wrapping the report of
`pretrain` directly; production code has no fault hook of its own. Register this module with
`ray.cloudpickle.register_pickle_by_value` so Ray workers, which do not have tests/ on their
path, unpickle it by value.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfclr import distributed as dist

Report = Any  # (metrics, state) -> None


@dataclass(frozen=True)
class KillAfterEpoch:
    """Exit the worker of rank `rank` with code 17 after it reported epoch `epoch` (1-based),
    unless `marker` exists; `grace_s` first gives Ray's controller (which collects reports by
    polling every ~2 s) time to register that epoch's checkpoint."""

    epoch: int
    marker: str
    rank: int = 0
    grace_s: float = 3.0

    def __call__(self, inner: Report) -> Report:
        def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
            inner(metrics, state)
            if metrics["epoch"] != self.epoch or Path(self.marker).exists():
                return
            time.sleep(self.grace_s)
            if dist.rank() == self.rank:
                Path(self.marker).touch()
                os._exit(17)

        return report


@dataclass(frozen=True)
class TouchOnReport:
    """Create `marker` on the first report: shows whether a worker trained at all."""

    marker: str

    def __call__(self, inner: Report) -> Report:
        def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
            Path(self.marker).touch()
            inner(metrics, state)

        return report
