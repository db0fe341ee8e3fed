"""Decode one audio file to mono float32 at a target rate, or say in one line why it cannot be used.

soundfile (libsndfile 1.2.2) reads wav, flac, ogg, mp3 and .au; scipy's polyphase resampler
changes the rate. Every failure is an `AudioError` naming the file and the fix, with a short
`reason` attribute ("corrupt", "truncated", "empty", "non-finite", "rate", "channels") that the
cache uses to count skipped files by cause.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mfclr.errors import AudioError

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".mp3", ".ogg", ".au")

# libsndfile notes a header that promises more data than the file holds as
# "data : 32000 (should be 15978)" (wav) or "Data Size : 32000 (should be 15988)" (au).
_SHORT_DATA = re.compile(r"^\s*(?:data|Data Size)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
# A streaming writer that never went back to fill in the size leaves 0 or 0xFFFFFFFF there.
_UNKNOWN_SIZE = 0xFFFFFFF0
# A shortfall under this fraction is a sloppy writer (padding byte, odd trailer), not a cut file.
_TRUNCATION_TOLERANCE = 0.01


@dataclass(frozen=True)
class DecodedAudio:
    """One decoded file.

    samples: float32 mono waveform, shape (T,), at the requested sample rate, nominally in [-1, 1].
    resampled: the file's rate differed from the requested one. downmixed: it had > 1 channel.
    source_rate: the file's own rate in Hz.
    """

    samples: np.ndarray
    resampled: bool
    downmixed: bool
    source_rate: int


def audio_error(path: str | Path, reason: str, message: str) -> AudioError:
    """An AudioError whose `reason` attribute names the cause for per-cause counting."""
    err = AudioError(f"{path} {message}")
    err.reason = reason  # type: ignore[attr-defined]
    return err


def error_reason(err: AudioError) -> str:
    return getattr(err, "reason", "unreadable")


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a float32 (T,) waveform; returns (round(T * target / source),)."""
    if source_rate == target_rate:
        return samples
    # Imported here: scipy.signal costs each process (a Tune trial, a Ray Train worker) a second
    # or more at start, and a cached dataset is never resampled again.
    from scipy.signal import resample_poly

    g = math.gcd(source_rate, target_rate)
    out = resample_poly(samples, target_rate // g, source_rate // g)
    return out.astype(np.float32, copy=False)


def _check_truncation(path: Path, f: sf.SoundFile, frames_read: int) -> None:
    for header, actual in _SHORT_DATA.findall(f.extra_info):
        header_n, actual_n = int(header), int(actual)
        if 0 < header_n < _UNKNOWN_SIZE and actual_n < header_n * (1 - _TRUNCATION_TOLERANCE):
            raise audio_error(
                path,
                "truncated",
                f"is truncated (header promises {header_n} bytes of audio, the file holds "
                f"{actual_n}): re-copy it from the source or delete it",
            )
    # Compressed formats: the decoder's frame count comes from the stream headers.
    if f.frames > 0 and frames_read < f.frames * (1 - _TRUNCATION_TOLERANCE):
        raise audio_error(
            path,
            "truncated",
            f"is truncated (expected {f.frames} frames, decoded {frames_read}): "
            "re-copy it from the source or delete it",
        )


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Raw decode: float32 (T, C) and the file's rate, with soundfile's errors made one line."""
    if not path.is_file():
        raise audio_error(path, "missing", "does not exist or is not a file: check the path")
    if path.stat().st_size == 0:
        raise audio_error(path, "empty", "is an empty file (0 bytes): delete it or re-copy it")
    try:
        with sf.SoundFile(str(path)) as f:
            data = f.read(dtype="float32", always_2d=True)
            _check_truncation(path, f, len(data))
            return data, int(f.samplerate)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        detail = str(err).split(":")[-1].strip().rstrip(".") or type(err).__name__
        raise audio_error(
            path,
            "corrupt",
            f"cannot be decoded ({detail}): the file is corrupt or not audio; "
            "replace it or delete it",
        ) from None


def check_decoded(where: str | Path, data: np.ndarray) -> None:
    """AudioError naming `where` for decoded samples (T, C) that hold no audio or NaN/inf."""
    if data.size == 0:
        raise audio_error(where, "empty", "holds no audio (0 samples): delete it or re-copy it")
    if not np.isfinite(data).all():
        raise audio_error(
            where, "non-finite", "contains NaN or infinite samples: re-export it or delete it"
        )


def decode_raw(path: str | Path) -> tuple[np.ndarray, int]:
    """The file's float32 samples (T, C) at its own rate, and that rate; AudioError for a
    missing, corrupt, truncated, empty or non-finite file."""
    path = Path(path)
    data, rate = _decode(path)
    check_decoded(path, data)
    return data, rate


def mono_at(data: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """float32 (T, C) at `rate` Hz -> float32 mono (T',) at `sample_rate`: the channels
    averaged, then resampled (what every decoded track goes through)."""
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return resample(np.ascontiguousarray(mono), rate, sample_rate)


def read_audio(
    path: str | Path,
    sample_rate: int,
    *,
    require_rate: int | None = None,
    require_mono: bool = False,
    dataset: str = "this dataset",
) -> DecodedAudio:
    """Decode `path` to float32 mono (T,) at `sample_rate` Hz.

    Multichannel audio is averaged to mono; other rates are resampled. `require_rate` /
    `require_mono` turn those conversions into errors (strict loading of a dataset whose format is
    known; `dataset` names it in the message). Raises AudioError for a corrupt, truncated, empty or
    non-finite file.
    """
    path = Path(path)
    data, rate = decode_raw(path)
    if require_rate is not None and rate != require_rate:
        raise audio_error(
            path,
            "rate",
            f"is {rate} Hz, {dataset} is {require_rate} Hz: resample it or run without --strict",
        )
    channels = data.shape[1]
    if require_mono and channels != 1:
        raise audio_error(
            path,
            "channels",
            f"has {channels} channels, {dataset} is mono: downmix it or run without --strict",
        )
    return DecodedAudio(
        samples=mono_at(data, rate, sample_rate),
        resampled=rate != sample_rate,
        downmixed=channels > 1,
        source_rate=rate,
    )


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float samples in [-1, 1], shape (T,) or (T, C), as 16-bit PCM; returns the path.

    The container follows the suffix (.wav normally; .flac and .au work too).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    sf.write(str(path), clipped, sample_rate, subtype="PCM_16")
    return path
