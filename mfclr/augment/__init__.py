"""Batched, on-device augmentation: the random chains only.

    aug = audio_chain(cfg)            # (B, T) waveforms -> (B, T)
    aug = spectrogram_chain(cfg)      # (B, T) waveforms -> (B, 1, n_mels, T // hop + 1)
    x = aug(wave, generator=g)        # g: optional torch.Generator on wave's device

Which format trains with which chain is the format registry's (`mfclr.formats`): a chain's
output has the shape of its format's deterministic frontend (the same input without randomness).
Parameter-free `nn.Module`s that run on whatever device the input is on.
"""

from __future__ import annotations

from torch import nn

from mfclr.augment.audio import AddNoise, AudioChain, RandomGain
from mfclr.augment.filters import RandomFilter
from mfclr.augment.pitch import RandomPitchShift, pitch_shift, semitone_ratio, time_stretch
from mfclr.augment.spectrogram import RandomMask, SpectrogramChain
from mfclr.config import Config

__all__ = [
    "AddNoise",
    "AudioChain",
    "RandomFilter",
    "RandomGain",
    "RandomMask",
    "RandomPitchShift",
    "SpectrogramChain",
    "audio_chain",
    "pitch_shift",
    "semitone_ratio",
    "spectrogram_chain",
    "time_stretch",
]


def audio_chain(cfg: Config) -> nn.Module:
    """The waveform chain of `cfg.augment.audio` (backend torch: `AudioChain`; audiomentations:
    the per-clip CPU reference)."""
    if cfg.augment.audio.backend == "audiomentations":
        from mfclr.augment.reference import AudiomentationsChain  # heavy import, only on demand

        return AudiomentationsChain(cfg.augment.audio, cfg.data.sample_rate)
    return AudioChain(cfg.augment.audio, cfg.data.sample_rate)


def spectrogram_chain(cfg: Config) -> nn.Module:
    """Noise mix, log-mel (`cfg.mel`), frequency shift and masks (`cfg.augment.spectrogram`)."""
    return SpectrogramChain(cfg.augment.spectrogram, cfg.mel, cfg.data.sample_rate)
