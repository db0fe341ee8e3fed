"""The spectrogram augmentation chain, batched on the input's device.

Chain: white noise mixed into the waveform -> log-mel (`mfclr.encoders.frontends.MelFrontend`,
the deterministic input embeddings are computed with) -> frequency mask -> time mask. Masks
fill with 0, i.e. the frontend's floor: a masked band reads as silence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mfclr.augment.audio import AddNoise
from mfclr.config import MelConfig, SpectrogramAugConfig
from mfclr.encoders.frontends import MelFrontend, check_waveforms


class RandomMask(nn.Module):
    """SpecAugment-style mask on one axis of (B, C, n_mels, frames), independent per example.

    With probability p an example gets one band of width uniform in {0, ..., size} (clamped to
    the axis) at a uniform start such that it fits; the band is set to `fill` (0 = the floor).
    axis: -2 for frequency (mel bins), -1 for time (frames).
    """

    def __init__(self, p: float, size: int, axis: int, fill: float = 0.0):
        super().__init__()
        if axis not in (-2, -1):
            raise ValueError(f"mask axis must be -2 (frequency) or -1 (time), got {axis}")
        self.p, self.size = p, size
        self.axis = axis
        self.fill = fill

    def draw(self, x: Tensor, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(B,) int64 starts and widths; width 0 where the mask is not applied."""
        n, length = x.shape[0], x.shape[self.axis]
        size = min(self.size, length)
        u = torch.rand(3, n, device=x.device, generator=g)
        width = (u[1] * (size + 1)).long().clamp_max(size)
        width = torch.where(u[0] < self.p, width, torch.zeros_like(width))
        start = (u[2] * (length - width + 1)).long().clamp_max(length - width)
        return start, width

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.p <= 0.0 or self.size == 0:
            return x
        start, width = self.draw(x, generator)
        pos = torch.arange(x.shape[self.axis], device=x.device)
        band = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # (B, L)
        shape = [x.shape[0]] + [1] * (x.ndim - 1)
        shape[self.axis] = x.shape[self.axis]
        return x.masked_fill(band.view(shape), self.fill)


class FreqShift(nn.Module):
    """(B, C, n_mels, frames) -> same shape: each example moved up or down by a whole number of
    mel bins, uniform in [-max_bins, max_bins], with probability p; vacated bins are `fill`."""

    def __init__(self, p: float, max_bins: int, fill: float = 0.0):
        super().__init__()
        self.p, self.max_bins, self.fill = p, max_bins, fill

    def draw(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        """(B,) int64 shifts in bins (positive = up); 0 where the transform is not applied."""
        n = x.shape[0]
        u = torch.rand(2, n, device=x.device, generator=g)
        k = (u[1] * (2 * self.max_bins + 1)).long().clamp_max(2 * self.max_bins) - self.max_bins
        return torch.where(u[0] < self.p, k, torch.zeros_like(k))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.p <= 0.0 or self.max_bins == 0:
            return x
        b, c, m, t = x.shape
        src = torch.arange(m, device=x.device)[None, :] - self.draw(x, generator)[:, None]
        inside = (src >= 0) & (src < m)  # (B, M)
        index = src.clamp(0, m - 1)[:, None, :, None].expand(b, c, m, t)
        out = torch.gather(x, 2, index)
        return out.masked_fill(~inside[:, None, :, None], self.fill)


class SpectrogramChain(nn.Module):
    """(B, T) waveforms -> (B, 1, n_mels, T // hop + 1): noise mix, log-mel, frequency shift,
    freq & time masks."""

    def __init__(self, cfg: SpectrogramAugConfig, mel: MelConfig, sample_rate: int):
        super().__init__()
        self.noise = AddNoise(**cfg.noise.model_dump())
        self.frontend = MelFrontend.from_config(mel, sample_rate)
        self.freq_shift = FreqShift(cfg.freq_shift.p, cfg.freq_shift.max_bins)
        self.freq_mask = RandomMask(**cfg.freq_mask.model_dump(), axis=-2)
        self.time_mask = RandomMask(**cfg.time_mask.model_dump(), axis=-1)

    @torch.no_grad()
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_waveforms(x)
        x = self.noise(x, generator)
        x = self.frontend(x)
        x = self.freq_shift(x, generator)
        x = self.freq_mask(x, generator)
        return self.time_mask(x, generator)
