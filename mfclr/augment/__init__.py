"""Batched, on-device augmentation: the random chains only.

    aug = build_augment(fmt, cfg)     # (B, T) waveforms -> encoder input, random per example
    x = aug(wave, generator=g)        # g: optional torch.Generator on wave's device

fmt "audio": (B, T) -> (B, T); fmt "spectrogram": (B, T) -> (B, 1, n_mels, T // hop + 1), the
output shape of `mfclr.encoders.frontends.build_frontend` (the same input without randomness).
Parameter-free `nn.Module`s that run on whatever device the input is on.
"""

from __future__ import annotations

from torch import nn

from mfclr.augment.audio import AddNoise, AudioChain, RandomGain
from mfclr.augment.filters import RandomFilter
from mfclr.augment.pitch import RandomPitchShift, pitch_shift, semitone_ratio, time_stretch
from mfclr.augment.spectrogram import RandomMask, SpectrogramChain
from mfclr.config import Config
from mfclr.encoders.frontends import check_format

__all__ = [
    "AddNoise",
    "AudioChain",
    "RandomFilter",
    "RandomGain",
    "RandomMask",
    "RandomPitchShift",
    "SpectrogramChain",
    "build_augment",
    "pitch_shift",
    "semitone_ratio",
    "time_stretch",
]


def build_augment(fmt: str, cfg: Config) -> nn.Module:
    """The training augmentation for one format; call it as `aug(wave, generator=g)`.

    fmt "audio" uses `cfg.augment.audio` (backend torch: `AudioChain`; audiomentations: the
    per-clip CPU reference); "spectrogram" uses `cfg.augment.spectrogram` and `cfg.mel`.
    """
    check_format(fmt)
    sr = cfg.data.sample_rate
    if fmt == "audio":
        if cfg.augment.audio.backend == "audiomentations":
            from mfclr.augment.reference import AudiomentationsChain  # heavy import, only on demand

            return AudiomentationsChain(cfg.augment.audio, sr)
        return AudioChain(cfg.augment.audio, sr)
    return SpectrogramChain(cfg.augment.spectrogram, cfg.mel, sr)
