"""Small real audio files in the real layouts, for the data tests (tiny rates, short clips)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

from mfclr.config import DataConfig, DatasetSpec

SR = 8000  # the data tests' sample rate: the lowest DataConfig accepts, fast to decode
CLIP_SECONDS = 0.25  # crop_samples = 2000 at 8 kHz


def tone(seconds: float, sr: int = SR, freq: float = 440.0, channels: int = 1, seed: int = 0):
    """A sine plus a little seeded noise, float32 (T,) or (T, channels), peak ~0.5."""
    n = int(round(seconds * sr))
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n)
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def write_tone(path: Path, seconds: float, sr: int = SR, **kw) -> Path:
    """Write a tone as 16-bit PCM; the container follows the suffix (.wav, .flac, .au, .ogg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "VORBIS" if path.suffix == ".ogg" else "PCM_16"
    sf.write(str(path), tone(seconds, sr, **kw), sr, subtype=subtype)
    return path


def make_labelled(root: Path, per_class: dict[str, int], seconds: float = 0.5) -> Path:
    """`<root>/<class>/<class>_<i>.wav` with per_class[class] files, a distinct tone each."""
    for c, (cls, n) in enumerate(per_class.items()):
        for i in range(n):
            write_tone(root / cls / f"{cls}_{i}.wav", seconds, freq=200 + 50 * c + 7 * i, seed=i)
    return root


def make_gtzan(
    root: Path, track_ids: Iterable[str], seconds: float = 0.3, au: Iterable[str] = ()
) -> Path:
    """A fake GTZAN folder `root/<genre>/<id>.wav` at 22,050 Hz (ids in `au` as .au files)."""
    au = set(au)
    for k, track_id in enumerate(track_ids):
        ext = ".au" if track_id in au else ".wav"
        genre = track_id.split(".")[0]
        write_tone(root / genre / f"{track_id}{ext}", seconds, sr=22050, freq=150 + k % 50 * 10)
    return root


def data_config(cache_dir: Path, spec: DatasetSpec | None = None, **kw) -> DataConfig:
    """DataConfig at the tests' rate and crop, caching under cache_dir."""
    fields = {"sample_rate": SR, "clip_seconds": CLIP_SECONDS, "cache_dir": str(cache_dir)}
    if spec is not None:
        fields["probe"] = spec
    return DataConfig(**{**fields, **kw})
