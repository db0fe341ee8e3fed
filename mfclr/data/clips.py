"""What the training loop and the probe read from a prepared split.

`PairDataset` gives two independent random crops of a track (the positive pair of the "random
crop" augmentation); `iter_track_chunks` gives all non-overlapping chunks of each track for
track-level embeddings (`track_chunks`: those of one track held in memory); `make_loader` wraps
a dataset in a seeded DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mfclr.data.store import Split


class PairDataset(Dataset):
    """Item i: float32 tensor (2, crop_samples), two uniformly random crops of track i.

    The crops depend only on (seed, epoch, i), so they are reproducible whichever worker loads
    them. Call `set_epoch(e)` before each epoch: the epoch lives in shared memory, so persistent
    DataLoader workers see the new value too.
    """

    def __init__(self, split: Split, crop_samples: int, seed: int = 0):
        if len(split) == 0:
            raise ValueError(f"split '{split.name}' has no tracks to crop")
        self.split, self.crop_samples, self.seed = split, crop_samples, seed
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        room = max(int(self.split.lengths[i]) - self.crop_samples, 0)
        starts = rng.integers(0, room + 1, size=2)
        pair = np.stack([self.split.crop(i, int(s), self.crop_samples) for s in starts])
        return torch.from_numpy(pair)


def chunk_starts(length: int, crop_samples: int, max_chunks: int) -> np.ndarray:
    """Start samples of the chunks of a track of `length` samples, int64 (k,).

    k = min(length // crop_samples, max_chunks), at least 1. The track is cut into k equal
    segments and the centred crop of each is taken: contiguous when the track holds exactly k
    crops, evenly spaced and non-overlapping when it holds more.
    """
    k = max(min(length // crop_samples, max_chunks), 1)
    centres = (np.arange(k) + 0.5) * (length / k)
    # floor, not round: round-half-even could bring two neighbours one sample too close.
    starts = np.floor(centres - crop_samples / 2).astype(np.int64)
    return np.clip(starts, 0, max(length - crop_samples, 0))


def track_chunks(samples: np.ndarray, crop_samples: int, max_chunks: int) -> np.ndarray:
    """float32 chunks (k, crop_samples) of one track (T,) outside a split, cut as
    `iter_track_chunks` cuts a cached track (`chunk_starts`; zero-padded past its end)."""
    starts = chunk_starts(len(samples), crop_samples, max_chunks)
    out = np.zeros((len(starts), crop_samples), np.float32)
    for row, start in zip(out, starts, strict=True):
        piece = samples[int(start) : int(start) + crop_samples]
        row[: len(piece)] = piece
    return out


def iter_track_chunks(
    split: Split, crop_samples: int, max_chunks: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(track index, float32 chunks (k, crop_samples)) for every track of the split, in order.

    A track shorter than one crop gives one zero-padded chunk.
    """
    for i in range(len(split)):
        starts = chunk_starts(int(split.lengths[i]), crop_samples, max_chunks)
        yield i, np.stack([split.crop(i, int(s), crop_samples) for s in starts])


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    workers: int = 0,
    drop_last: bool = False,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A seeded DataLoader: pinned memory when CUDA is available, persistent workers if any.

    With a `sampler` (e.g. a DistributedSampler) `shuffle` is left to the sampler.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )
