"""The raw-audio augmentation chain, batched on the input's device.

Order: white noise -> gain -> filter -> pitch shift. Every transform draws its parameters per
example (a Bernoulli mask over the batch with probability p, then per-example SNR / gain /
filter / shift), costs nothing at p = 0, and never modifies its input in place (the two views of
a pair may share memory upstream).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mfclr.augment.filters import RandomFilter
from mfclr.augment.pitch import RandomPitchShift
from mfclr.config import AudioAugConfig
from mfclr.encoders.frontends import check_waveforms


def _uniform(lo: float, hi: float, n: int, x: Tensor, g: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, device=x.device, generator=g, dtype=x.dtype)


def _mask(p: float, x: Tensor, g: torch.Generator | None) -> Tensor:
    return torch.rand(x.shape[0], device=x.device, generator=g) < p


class AddNoise(nn.Module):
    """(B, T) -> (B, T): white Gaussian noise at a per-example SNR in [min_snr_db, max_snr_db]
    relative to that example's RMS (as audiomentations AddGaussianSNR). Silence stays silent."""

    def __init__(self, p: float, min_snr_db: float, max_snr_db: float):
        super().__init__()
        self.p, self.min_snr_db, self.max_snr_db = p, min_snr_db, max_snr_db

    def draw(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        """(B,) noise standard deviations; 0 where the transform is not applied."""
        c = self
        apply = _mask(c.p, x, g)
        snr_db = _uniform(c.min_snr_db, c.max_snr_db, x.shape[0], x, g)
        rms = x.square().mean(dim=-1).sqrt()
        return torch.where(apply, rms * torch.pow(10.0, -snr_db / 20.0), torch.zeros_like(rms))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.p <= 0.0:
            return x
        std = self.draw(x, generator)
        rows = (std > 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            return x
        noise = torch.randn(
            rows.numel(), x.shape[1], device=x.device, dtype=x.dtype, generator=generator
        )
        scale = std.index_select(0, rows)[:, None]
        if rows.numel() == x.shape[0]:
            return torch.addcmul(x, scale, noise)
        out = x.clone()
        out[rows] = torch.addcmul(x.index_select(0, rows), scale, noise)
        return out


class RandomGain(nn.Module):
    """(B, T) -> (B, T): per-example gain uniform in [min_db, max_db] dB."""

    def __init__(self, p: float, min_db: float, max_db: float):
        super().__init__()
        self.p, self.min_db, self.max_db = p, min_db, max_db

    def draw(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        """(B,) gains in dB; 0 dB where the transform is not applied."""
        c = self
        apply = _mask(c.p, x, g)
        db = _uniform(c.min_db, c.max_db, x.shape[0], x, g)
        return torch.where(apply, db, torch.zeros_like(db))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.p <= 0.0:
            return x
        db = self.draw(x, generator)
        return x * torch.pow(10.0, db / 20.0)[:, None]


class AudioChain(nn.Module):
    """Batched raw-audio augmentation: (B, T) float waveforms -> (B, T), random per example.

    Torch backend of `augment.audio`; no trainable parameters, works on any device.
    """

    def __init__(self, cfg: AudioAugConfig, sample_rate: int):
        super().__init__()
        self.noise = AddNoise(**cfg.noise.model_dump())
        self.gain = RandomGain(**cfg.gain.model_dump())
        self.filter = RandomFilter(sample_rate, **cfg.filter.model_dump())
        self.pitch = RandomPitchShift(cfg.pitch.p, cfg.pitch.semitones, sample_rate)

    @torch.no_grad()
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_waveforms(x)
        x = self.noise(x, generator)
        x = self.gain(x, generator)
        x = self.filter(x, generator)
        return self.pitch(x, generator)
