"""Batched, on-device augmentation and the deterministic encoder frontends.

    aug = build_augment(fmt, cfg)     # (B, T) waveforms -> encoder input, random per example
    front = build_frontend(fmt, cfg)  # the same output shape, no randomness (for embeddings)
    x = aug(wave, generator=g)        # g: optional torch.Generator on wave's device

fmt "audio": (B, T) -> (B, T); fmt "spectrogram": (B, T) -> (B, 1, n_mels, T // hop + 1).
Both are parameter-free `nn.Module`s that run on whatever device the input is on.
"""

from __future__ import annotations

from torch import Tensor, nn

from mfclr.augment.audio import AddNoise, AudioChain, RandomGain, check_waveforms
from mfclr.augment.filters import RandomFilter
from mfclr.augment.pitch import RandomPitchShift, pitch_shift, semitone_ratio, time_stretch
from mfclr.augment.spectrogram import MelFrontend, RandomMask, SpectrogramChain
from mfclr.config import FORMATS, Config
from mfclr.errors import ConfigError

__all__ = [
    "AddNoise",
    "AudioChain",
    "MelFrontend",
    "RandomFilter",
    "RandomGain",
    "RandomMask",
    "RandomPitchShift",
    "SpectrogramChain",
    "WaveformFrontend",
    "build_augment",
    "build_frontend",
    "pitch_shift",
    "semitone_ratio",
    "time_stretch",
]


class WaveformFrontend(nn.Module):
    """The raw-audio frontend: (B, T) -> (B, T), the identity (after a shape check)."""

    def forward(self, x: Tensor) -> Tensor:
        check_waveforms(x)
        return x


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown input format '{fmt}'; choose one of {', '.join(FORMATS)}")


def build_augment(fmt: str, cfg: Config) -> nn.Module:
    """The training augmentation for one format; call it as `aug(wave, generator=g)`.

    fmt "audio" uses `cfg.augment.audio` (backend torch: `AudioChain`; audiomentations: the
    per-clip CPU reference); "spectrogram" uses `cfg.augment.spectrogram` and `cfg.mel`.
    """
    _check_format(fmt)
    sr = cfg.data.sample_rate
    if fmt == "audio":
        if cfg.augment.audio.backend == "audiomentations":
            from mfclr.augment.reference import AudiomentationsChain  # heavy import, only on demand

            return AudiomentationsChain(cfg.augment.audio, sr)
        return AudioChain(cfg.augment.audio, sr)
    return SpectrogramChain(cfg.augment.spectrogram, cfg.mel, sr)


def build_frontend(fmt: str, cfg: Config) -> nn.Module:
    """The deterministic input transform for one format (identity | log-mel); `front(wave)`."""
    _check_format(fmt)
    if fmt == "audio":
        return WaveformFrontend()
    return MelFrontend(cfg.mel, cfg.data.sample_rate)
