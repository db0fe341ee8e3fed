"""The pretraining budget in optimiser steps (`train.steps`) turned into whole epochs.

An epoch budget gives a small dataset few steps: 14 epochs are 350 steps on 800 tracks but 98 on
225, and learning curves on small data (measured at 0079041) dip below the random-init control
before they rise above it, so a recipe tuned at 350 steps says nothing about the same recipe at
98. With
`train.steps` set, every dataset gets (at least) that many steps: `train.epochs` becomes the
fewest whole epochs that hold them, and the loop, its checkpoints, resume and the reports stay
epoch-based.
"""

from __future__ import annotations

import math

from mfclr.config import Config
from mfclr.data import Datasets


def steps_per_epoch(n_tracks: int, batch_size: int, world: int = 1, cap: int | None = None) -> int:
    """Optimiser steps of one pass over `n_tracks` pretraining tracks, as `load_batches` makes
    them: each of `world` ranks gets its shard (a DistributedSampler pads it to ceil(n / world))
    in batches of min(batch_size, max(2, n // world)), the last partial batch dropped; at most
    `cap` steps (train.max_steps_per_epoch)."""
    shard = math.ceil(n_tracks / world) if world > 1 else n_tracks
    per_rank_batch = min(batch_size, max(2, n_tracks // world))
    steps = shard // per_rank_batch
    return steps if cap is None else min(steps, cap)


def epochs_for(steps: int, per_epoch: int) -> int:
    """The fewest whole epochs of `per_epoch` steps that hold `steps` steps (at least one)."""
    return max(1, math.ceil(steps / max(per_epoch, 1)))


def resolve_epochs(cfg: Config, world: int = 1, datasets: Datasets | None = None) -> Config:
    """`cfg` with train.epochs derived from train.steps on its pretraining split (`world`
    data-parallel ranks; the split opened through `datasets`); unchanged when train.steps is
    unset. Idempotent."""
    tc = cfg.train
    if tc.steps is None:
        return cfg
    n = len((datasets or Datasets(progress=False)).get(cfg.data, "pretrain").splits["train"])
    per_epoch = steps_per_epoch(n, tc.batch_size, world, tc.max_steps_per_epoch)
    epochs = epochs_for(tc.steps, per_epoch)
    if epochs == tc.epochs:
        return cfg
    return cfg.with_overrides({"train.epochs": epochs, "train.steps": tc.steps})


def describe(cfg: Config) -> str:
    """'14 epochs' or '350 steps' for progress lines (no dataset is opened to say it)."""
    tc = cfg.train
    return f"{tc.epochs} epochs" if tc.steps is None else f"{tc.steps} steps"
