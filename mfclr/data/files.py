"""Audio outside a dataset (`mfclr predict`, `mfclr embed PATH...`, the Python API).

Files and folders are found (`find_audio`), each file is decoded once and brought to every rate
an encoder reads (`load_file`), or a waveform in memory is (`waveform_at`), exactly as the data
cache brings its tracks: channels averaged, resampled (audio_io), scaled down when it peaks
above full scale, quantised to int16 and read back as a cached track reads (store.as_cached).
An encoder meets a file as the probe's tracks met it, so predictions reproduce the table.

A track shorter than one crop of an encoder is refused as too short (AudioError, reason
"short"): the cache zero-pads such tracks (data.short_clips=pad), which leaves a guess about
mostly silence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfclr.data.audio_io import audio_error, check_decoded, decode_raw, mono_at
from mfclr.data.folder import audio_files_below
from mfclr.data.store import as_cached
from mfclr.errors import DataError

# rate (Hz) -> the fewest samples a track needs at that rate (the longest crop read there).
Needs = Mapping[int, int]


def find_audio(paths: Sequence[str | Path]) -> list[Path]:
    """The audio files of `paths`, in order: a file as given (whatever its name), a folder's
    audio files anywhere below it (sorted; hidden folders skipped). DataError for a path that
    does not exist or a folder without audio; each file once."""
    found: dict[Path, None] = {}
    for item in map(Path, paths):
        if item.is_dir():
            files = audio_files_below(item)
            if not files:
                raise DataError(
                    f"folder '{item}' holds no audio files (.wav, .flac, .mp3, .ogg, .au); "
                    "check the path"
                )
            found.update(dict.fromkeys(files))
        elif item.exists():
            found[item] = None
        else:
            raise DataError(f"'{item}' does not exist; check the path")
    return list(found)


def at_rates(data: np.ndarray, rate: int, needs: Needs, where: str | Path) -> dict[int, np.ndarray]:
    """float32 (T, C) at `rate` -> rate -> float32 mono (T_r,) as the cache holds it, for each
    rate of `needs`; AudioError (reason "short") when a track is shorter than its need."""
    out = {}
    for target, crop in sorted(needs.items()):
        samples = mono_at(data, rate, target)
        if len(samples) < crop:
            raise audio_error(
                where,
                "short",
                f"is too short ({len(samples) / target:.2f} s, shorter than one "
                f"{crop / target:g} s clip the encoder reads); use a longer recording",
            )
        out[target] = as_cached(samples)
    return out


def load_file(path: str | Path, needs: Needs) -> dict[int, np.ndarray]:
    """Decode `path` once; rate -> float32 mono (T_r,) for each rate of `needs` (see
    `at_rates`). AudioError for a missing, corrupt, truncated, empty, non-finite or too-short
    file."""
    data, rate = decode_raw(path)
    return at_rates(data, rate, needs, path)


def as_frames(waveform: Any) -> np.ndarray:
    """A waveform as float32 (T, C): numpy or torch, (T,) mono or (C, T) channels first;
    integer PCM scaled to [-1, 1) as soundfile reads it. DataError for another shape."""
    if hasattr(waveform, "detach"):  # a torch tensor, without importing torch here
        waveform = waveform.detach().cpu().numpy()
    arr = np.asarray(waveform)
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr / float(2 ** (8 * arr.dtype.itemsize - 1))
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 2 and arr.shape[0] <= arr.shape[1]:
        arr = arr.T
    else:
        raise DataError(f"a waveform of shape {arr.shape}; pass (samples,) or (channels, samples)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def waveform_at(waveform: Any, sample_rate: int, needs: Needs) -> dict[int, np.ndarray]:
    """A waveform in memory at `sample_rate` Hz, brought to each rate of `needs` as a file
    would be (`at_rates`)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise DataError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    if sample_rate <= 0:
        raise DataError(f"sample_rate must be positive, got {sample_rate}")
    data = as_frames(waveform)
    check_decoded("the waveform", data)
    return at_rates(data, int(sample_rate), needs, "the waveform")
