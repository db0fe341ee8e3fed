"""A decoded dataset on disk: per-split flat int16 memmaps and a JSON index.

`Split` holds only a path and small arrays, and opens its memmap lazily, so it pickles cheaply
into DataLoader workers (and Ray workers) and each process maps the file itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfclr.errors import DataError

INDEX = "index.json"
INT16_SCALE = 32768.0


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float32 (T,) in [-1, 1] -> int16 (T,); values outside are clipped."""
    return np.clip(np.round(samples * INT16_SCALE), -32768, 32767).astype(np.int16)


def full_scale(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """float32 (T,) scaled down to full scale when it peaks above it (a float file, or a
    resampler's overshoot: int16 would hard-clip it), and the peak before scaling."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    return (samples if peak <= 1.0 else samples * np.float32(1.0 / peak)), peak


def as_cached(samples: np.ndarray) -> np.ndarray:
    """float32 (T,) -> float32 (T,) exactly as a track reads back from the cache: scaled to
    full scale, quantised to int16 and read as `Split.crop` reads it. Files decoded outside a
    dataset (`mfclr predict`, the Python API) pass through it, so they meet the encoder as the
    probe's tracks did."""
    out = to_int16(full_scale(samples)[0]).astype(np.float32)
    out *= 1.0 / INT16_SCALE
    return out


@dataclass
class Split:
    """One split's tracks in one flat int16 file.

    Track i is audio[offsets[i] : offsets[i] + lengths[i]] (samples at the dataset's rate);
    labels[i] is its class (-1 if unlabelled); track_ids[i] its stable name.
    """

    name: str
    path: Path
    n_samples: int
    offsets: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    track_ids: list[str]
    _audio: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def audio(self) -> np.ndarray:
        """The whole split as int16 (n_samples,), memory-mapped read-only on first use."""
        if self._audio is None:
            if self.n_samples == 0:  # mmap cannot map an empty file
                self._audio = np.zeros(0, np.int16)
            else:
                self._audio = np.memmap(self.path, np.int16, mode="r", shape=(self.n_samples,))
        return self._audio

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_audio"] = None  # each process maps the file itself
        return state

    def __len__(self) -> int:
        return len(self.offsets)

    def track(self, i: int) -> np.ndarray:
        """Track i as float32 (lengths[i],) in [-1, 1)."""
        return self.crop(i, 0, int(self.lengths[i]))

    def crop(self, i: int, start: int, n: int) -> np.ndarray:
        """n samples of track i from `start`, float32 (n,); zero-padded past the track's end."""
        length = int(self.lengths[i])
        if not 0 <= start <= length or n < 0:
            raise IndexError(f"crop [{start}, {start + n}) outside track {i} of {length} samples")
        lo = int(self.offsets[i]) + start
        hi = lo + min(n, length - start)
        out = np.zeros(n, np.float32)
        out[: hi - lo] = self.audio[lo:hi]
        out *= 1.0 / INT16_SCALE
        return out


@dataclass
class PreparedDataset:
    """A decoded dataset: a short name ("embedded", "gtzan", "folder:<root name>"), label
    names, splits (train/valid/test; unlabelled: train only), sample rate (Hz), stats (counts of
    what decoding did) and the cache folder."""

    name: str
    label_names: list[str]
    splits: dict[str, Split]
    sample_rate: int
    stats: dict[str, Any]
    cache_path: Path


def split_index(
    name: str, offsets: list[int], lengths: list[int], labels: list[int], ids: list[str]
) -> dict[str, Any]:
    return {
        "file": f"{name}.i16",
        "n_samples": int(sum(lengths)),
        "offsets": offsets,
        "lengths": lengths,
        "labels": labels,
        "track_ids": ids,
    }


def write_index(folder: Path, index: dict[str, Any]) -> None:
    (folder / INDEX).write_text(json.dumps(index))


class DamagedCache(DataError):
    """A cache folder whose index or sample files are not what was written (a truncated copy,
    a disk that filled): it is rebuilt, never read."""


def open_prepared(folder: Path) -> PreparedDataset:
    """Open a finished cache folder; DamagedCache if its index is unreadable or a split's
    sample file does not hold the samples the index names."""
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError) as err:
        raise DamagedCache(
            f"data cache {folder} is damaged ({err}); delete that folder and run again"
        ) from None
    splits = {}
    for name, entry in index["splits"].items():
        path, want = folder / entry["file"], 2 * int(entry["n_samples"])
        size = path.stat().st_size if path.is_file() else None
        if size != want:
            raise DamagedCache(
                f"data cache {folder} is damaged ({entry['file']} holds {size} bytes, its index "
                f"names {want}); delete that folder and run again"
            )
        splits[name] = Split(
            name=name,
            path=folder / entry["file"],
            n_samples=int(entry["n_samples"]),
            offsets=np.asarray(entry["offsets"], dtype=np.int64),
            lengths=np.asarray(entry["lengths"], dtype=np.int64),
            labels=np.asarray(entry["labels"], dtype=np.int64),
            track_ids=list(entry["track_ids"]),
        )
    return PreparedDataset(
        name=str(index["name"]),
        label_names=list(index["label_names"]),
        splits=splits,
        sample_rate=int(index["sample_rate"]),
        stats=index["stats"],
        cache_path=folder,
    )
