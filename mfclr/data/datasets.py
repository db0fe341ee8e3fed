"""The datasets of one process, each opened once and handed down.

Opening a dataset lists its folder, stats and hashes every file and checks the cache (or decodes
it): cheap once, wasteful when every stage repeats it. The process's orchestrator (`mfclr run`,
a pretraining, a Ray worker, a Tune trial, the probe) makes one `Datasets` and hands it to
everything that reads data; a stage asks it for the dataset of a role under its own data config
(a format trained at its own sample rate gets the tracks decoded at that rate, opened once too).
"""

from __future__ import annotations

import json
from typing import Literal

from mfclr.config import DataConfig, DatasetSpec
from mfclr.data.cache import prepare_dataset
from mfclr.data.store import PreparedDataset
from mfclr.errors import DataError

Role = Literal["probe", "pretrain"]
# The DataConfig fields a decoded dataset depends on, beside its spec.
_DECODE_FIELDS = ("sample_rate", "clip_seconds", "short_clips", "strict", "cache_dir")


def dataset_spec(data: DataConfig, role: str) -> DatasetSpec:
    """The spec of the probe dataset, or the pretraining one (data.pretrain, else the probe's)."""
    if role == "probe":
        return data.probe
    if role == "pretrain":
        return data.pretrain or data.probe
    raise DataError(f"unknown dataset role '{role}'; use 'probe' or 'pretrain'")


class Datasets:
    """Opened datasets by what they are (spec and decoding settings): `get` opens each once."""

    def __init__(self, *, progress: bool = True) -> None:
        self.progress = progress
        self._open: dict[str, PreparedDataset] = {}

    def get(self, data: DataConfig, role: Role) -> PreparedDataset:
        """The dataset of `role` under `data`, opened (and decoded, the first time ever) once."""
        spec = dataset_spec(data, role)
        fields = {k: getattr(data, k) for k in _DECODE_FIELDS}
        key = json.dumps([spec.model_dump(mode="json"), fields], sort_keys=True)
        if key not in self._open:
            self._open[key] = prepare_dataset(spec, data, progress=self.progress)
        return self._open[key]


def load_dataset(data: DataConfig, role: Role, *, progress: bool = True) -> PreparedDataset:
    """Open one dataset now: for a one-off (a benchmark, a script). A stage of a process that
    opens datasets more than once takes the process's `Datasets` instead."""
    return Datasets(progress=progress).get(data, role)
