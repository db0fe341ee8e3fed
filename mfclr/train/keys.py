"""What the pretraining runtimes and the sweep share, without torch: importing a constant must
not load the training stack (a sweep's driver and `mfclr.tune.study` only need the names)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The per-epoch validation metric's key (rank 0 only; Tune's early stopping and best-trial choice).
VAL_METRIC = "val_accuracy"
# The epoch counter the workers report: survives Tuner.restore, unlike training_iteration.
TIME_ATTR = "epochs_done"
# The loop's `report(metrics, state)`: called once per epoch on every rank; `state` is the
# checkpoint dict on rank zero, None elsewhere.
Report = Callable[[dict[str, Any], "dict[str, Any] | None"], None]
