"""The spectrogram frontend and augmentation chain, batched on the input's device.

Chain: white noise mixed into the waveform -> log-mel (`MelFrontend`) -> frequency mask -> time
mask. The frontend alone (no randomness) is what embeddings are computed with.

Output scale: dB relative to each clip's loudest mel bin, clamped at -top_db and mapped to
[0, 1]: `(dB - max_dB) / top_db + 1`. 1 is the clip's peak, 0 is top_db (80 dB) below it or
quieter. Being relative, it ignores the clip's overall level (gain is no feature), and silence
maps to all zeros, never NaN. Masks fill with 0, i.e. the floor: a masked band reads as silence.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from mfclr.augment.audio import AddNoise, check_waveforms
from mfclr.config import MaskAug, MelConfig, SpectrogramAugConfig

# On CPU, a batched STFT of many 5 s clips falls out of cache (notes/perf.md): chunk it there.
CPU_CHUNK = 4


class MelFrontend(nn.Module):
    """(B, T) waveforms -> (B, 1, n_mels, T // hop + 1) log-mel in [0, 1] (see module doc)."""

    def __init__(self, cfg: MelConfig, sample_rate: int):
        super().__init__()
        self.top_db = cfg.top_db
        self.hop_length = cfg.hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            power=2.0,
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=cfg.top_db)

    def _follow(self, x: Tensor) -> None:
        # The filterbank is a buffer: follow the input's device instead of failing on a mismatch.
        if self.mel.mel_scale.fb.device != x.device:
            self.to(x.device)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        check_waveforms(x)
        self._follow(x)
        if x.device.type == "cpu" and x.shape[0] > CPU_CHUNK:
            return torch.cat([self._one(c) for c in x.split(CPU_CHUNK)])
        return self._one(x)

    def _one(self, x: Tensor) -> Tensor:
        # (B, 1, M, F): AmplitudeToDB takes its top_db clamp per leading index, i.e. per clip.
        db = self.to_db(self.mel(x.float()).unsqueeze(1))
        peak = db.amax(dim=(-2, -1), keepdim=True)
        return ((db - peak) / self.top_db + 1.0).to(x.dtype)


class RandomMask(nn.Module):
    """SpecAugment-style mask on one axis of (B, C, n_mels, frames), independent per example.

    With probability p an example gets one band of width uniform in {0, ..., size} (clamped to
    the axis) at a uniform start such that it fits; the band is set to `fill` (0 = the floor).
    axis: -2 for frequency (mel bins), -1 for time (frames).
    """

    def __init__(self, cfg: MaskAug, axis: int, fill: float = 0.0):
        super().__init__()
        if axis not in (-2, -1):
            raise ValueError(f"mask axis must be -2 (frequency) or -1 (time), got {axis}")
        self.cfg = cfg
        self.axis = axis
        self.fill = fill

    def draw(self, x: Tensor, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(B,) int64 starts and widths; width 0 where the mask is not applied."""
        n, length = x.shape[0], x.shape[self.axis]
        size = min(self.cfg.size, length)
        u = torch.rand(3, n, device=x.device, generator=g)
        width = (u[1] * (size + 1)).long().clamp_max(size)
        width = torch.where(u[0] < self.cfg.p, width, torch.zeros_like(width))
        start = (u[2] * (length - width + 1)).long().clamp_max(length - width)
        return start, width

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.cfg.p <= 0.0 or self.cfg.size == 0:
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
        self.noise = AddNoise(cfg.noise)
        self.frontend = MelFrontend(mel, sample_rate)
        self.freq_shift = FreqShift(cfg.freq_shift.p, cfg.freq_shift.max_bins)
        self.freq_mask = RandomMask(cfg.freq_mask, axis=-2)
        self.time_mask = RandomMask(cfg.time_mask, axis=-1)

    @torch.no_grad()
    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_waveforms(x)
        x = self.noise(x, generator)
        x = self.frontend(x)
        x = self.freq_shift(x, generator)
        x = self.freq_mask(x, generator)
        return self.time_mask(x, generator)
