"""Batched pitch shift by whole semitones: phase-vocoder time stretch + rational resampling.

A shift of s semitones scales every frequency by f = 2**(s/12) and keeps the length and tempo.
We approximate f by a small fraction p/q (at most 4 cents off, see `semitone_ratio`), resample
by q/p with a cached `torchaudio.transforms.Resample(p, q)` (short sinc kernels; `torchaudio.
functional.pitch_shift` builds huge kernels at 22.05 kHz, where a tiny gcd of the two rates
makes a long sinc kernel) and time-stretch by the inverse factor with a phase vocoder, so the
length comes back to T.

Cost: the order is picked so the phase vocoder always sees the shorter signal (up: resample then
stretch; down: stretch then resample). The vocoder works in (batch, frames, freq) layout with one
atan2 per bin and real-valued cos/sin (complex abs/angle/polar are slow on CPU).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import torch
import torchaudio
from torch import Tensor, nn

from mfclr.errors import ConfigError

MAX_CENTS_ERROR = 4.0
# Shorter clips are too short to analyse (a 2 ms crop is no music anyway).
MIN_SAMPLES = 64


@lru_cache(maxsize=64)
def semitone_ratio(semitones: int) -> tuple[int, int]:
    """(p, q) with p/q within 4 cents of 2**(semitones/12), smallest denominator first.

    e.g. 1 -> (18, 17), 2 -> (9, 8), 5 -> (4, 3), 7 -> (3, 2), -5 -> (3, 4).
    """
    if semitones == 0:
        return 1, 1
    f = 2.0 ** (abs(semitones) / 12.0)
    for q in range(1, 1000):
        p = round(q * f)
        if abs(1200.0 * math.log2(p / q) - 100.0 * abs(semitones)) <= MAX_CENTS_ERROR:
            return (p, q) if semitones > 0 else (q, p)
    raise ValueError(f"no small ratio for {semitones} semitones")  # unreachable for |s| <= 24


_RESAMPLERS: dict[tuple[int, int, str, torch.dtype], nn.Module] = {}
_WINDOWS: dict[tuple[int, str, torch.dtype], Tensor] = {}
_ENVELOPES: dict[tuple[int, int, int, str, torch.dtype], Tensor] = {}


def _resampler(orig: int, new: int, like: Tensor) -> nn.Module:
    # Kernels are tiny for small p, q; cache one module per device so the GPU path builds none.
    key = (orig, new, str(like.device), like.dtype)
    if key not in _RESAMPLERS:
        mod = torchaudio.transforms.Resample(orig, new, dtype=like.dtype)
        _RESAMPLERS[key] = mod.to(like.device)
    return _RESAMPLERS[key]


def _window(n_fft: int, like: Tensor) -> Tensor:
    key = (n_fft, str(like.device), like.dtype)
    if key not in _WINDOWS:
        _WINDOWS[key] = torch.hann_window(n_fft, device=like.device, dtype=like.dtype)
    return _WINDOWS[key]


def _fit_length(x: Tensor, length: int) -> Tensor:
    if x.shape[-1] >= length:
        return x[..., :length]
    return nn.functional.pad(x, (0, length - x.shape[-1]))


def _overlap_add(frames: Tensor, hop: int) -> Tensor:
    """(k, M, n) frames -> (k, n + hop * (M - 1)) summed at hop spacing; hop must divide n."""
    k, m, n = frames.shape
    r = n // hop
    blocks = frames.view(k, m, r, hop)
    out = frames.new_zeros(k, m + r - 1, hop)
    for j in range(r):  # r = 4 shifted slice-adds instead of a generic fold
        out[:, j : j + m] += blocks[:, :, j]
    return out.view(k, -1)


def _istft(spec: Tensor, n_fft: int, hop: int, length: int) -> Tensor:
    """(k, M, F) complex frames (frame-major) -> (k, length); `torch.istft` with a Hann window,
    center=True. Same output (1e-6), about 2x faster here: irfft of the frame-major layout,
    slice-add overlap-add, and the window envelope cached instead of rebuilt per call.
    """
    win = _window(n_fft, spec.real)
    if n_fft % hop:
        return torch.istft(spec.transpose(1, 2), n_fft, hop, window=win, length=length)
    frames = torch.fft.irfft(spec, n=n_fft)
    frames *= win
    y = _overlap_add(frames, hop)
    m = frames.shape[1]
    key = (n_fft, hop, m, str(y.device), y.dtype)
    if key not in _ENVELOPES:
        # The clamp only guards a division by zero past the last frame; inside, it is >= 1.
        env = _overlap_add((win * win).expand(1, m, n_fft).contiguous(), hop)[0]
        _ENVELOPES[key] = env.clamp_min(1e-6)
    start = n_fft // 2
    y = y[:, start : start + length] / _ENVELOPES[key][start : start + length]
    return _fit_length(y, length)


def _fit_fft(n_fft: int, length: int) -> int:
    # Reflect padding in torch.stft needs n_fft // 2 < length: shrink the window for tiny inputs.
    while n_fft > 16 and n_fft // 2 >= length:
        n_fft //= 2
    return n_fft


class _Plan(NamedTuple):
    """Host-side frame indices of a stretch to M output frames (tensors are (M,))."""

    idx0: Tensor  # output frame j interpolates the magnitude of input frames idx0, idx0 + 1 ...
    alpha: Tensor  # ... with this weight on the second
    lead: Tensor  # input frame whose one-hop phase advance leads into output frame j
    j0: int  # this output frame keeps the phase of input frame `anchor`
    anchor: int


def _frame_plan(n_in: int, rate: float, n_fft: int, hop: int) -> _Plan:
    """Output frame j reads input frame j * rate; M = ceil(n_in / rate).

    Frames within n_fft/2 of either end see stft's reflect padding: their bins' relative phases
    are not the music's. Accumulating their advances bakes that pattern into all later frames
    (a steady tone lost 8 dB after repeated edge frames; its last 25 ms doubled), so phases are
    anchored at the first clean frame (j0), extrapolated backwards from it with a clean advance,
    and past the last clean frame the last clean advance is reused.
    """
    steps = torch.arange(0, n_in, rate, dtype=torch.float64)
    idx0 = steps.long()
    lo = min(-(-(n_fft // 2) // hop), n_in - 2)
    hi = max(n_in - 2 - lo, lo)
    j0 = min(int(torch.searchsorted(idx0, lo)), len(idx0) - 1)
    adv = idx0.clamp(lo, hi)
    lead = torch.cat([adv[:1], adv[:-1]])
    return _Plan(idx0, steps - idx0, lead, j0, int(adv[j0]))


def time_stretch(x: Tensor, rate: float, out_length: int, n_fft: int, hop: int) -> Tensor:
    """Phase-vocoder time stretch; rate > 1 is faster (shorter), pitch unchanged.

    x: (k, L) waveforms -> (k, out_length), where out_length should be about L / rate.
    Same algorithm as `torchaudio.functional.phase_vocoder` (magnitude interpolated between
    neighbouring frames, phase advanced by the measured frame-to-frame phase difference; its
    wrap to [-pi, pi] is a no-op modulo 2*pi and left out) plus clean edges (`_frame_plan`).
    """
    n_fft = _fit_fft(n_fft, x.shape[-1])
    hop = min(hop, n_fft // 4)
    spec = torch.stft(x, n_fft, hop, window=_window(n_fft, x), return_complex=True)
    # stft's (k, F, N) output is frame-major in memory: one strided copy de-interleaves it into
    # contiguous (k, N, F) re/im planes (strided atan2/mul do not vectorise: ~10x slower).
    re, im = torch.view_as_real(spec.transpose(1, 2)).permute(3, 0, 1, 2).contiguous()
    mag, ang = torch.hypot(re, im), torch.atan2(im, re)
    n_in = mag.shape[1]
    plan = _frame_plan(n_in, rate, n_fft, hop)
    idx0 = plan.idx0.to(x.device)
    idx1 = (idx0 + 1).clamp_max(n_in - 1)
    weight = plan.alpha.to(x.device, x.dtype).view(1, -1, 1)
    out_mag = torch.lerp(mag.index_select(1, idx0), mag.index_select(1, idx1), weight)
    dphi = ang[:, 1:] - ang[:, :-1]  # (k, N - 1, F): phase advance over one hop
    inc = dphi.index_select(1, plan.lead.to(x.device))  # (k, M, F) advance into each frame
    # Entry 0 is set so that the cumulative sum gives frame j0 exactly its anchor's phase.
    inc[:, 0] = ang[:, plan.anchor] - inc[:, 1 : plan.j0 + 1].sum(dim=1)
    phase = inc.cumsum_(1)
    # Real cos/sin + one interleave beat torch.polar (2x) and an interleaved cos (2-3x) here.
    out_spec = torch.complex(out_mag * torch.cos(phase), out_mag * torch.sin(phase))
    return _istft(out_spec, n_fft, hop, out_length)


def pitch_shift(x: Tensor, semitones: int, n_fft: int = 2048, hop: int | None = None) -> Tensor:
    """Shift the pitch of every row of x by `semitones` (an int), length and tempo unchanged.

    x: (k, T) waveforms (any sample rate: the shift is a frequency ratio) -> (k, T).
    The realised ratio is `semitone_ratio(semitones)`, within 4 cents of 2**(semitones/12).
    """
    if semitones == 0 or x.shape[0] == 0:
        return x
    length = x.shape[-1]
    if length < MIN_SAMPLES:
        raise ConfigError(
            f"pitch shift needs clips of at least {MIN_SAMPLES} samples, got {length}; "
            "raise data.clip_seconds or set augment.audio.pitch.p to 0"
        )
    hop = hop or n_fft // 4
    p, q = semitone_ratio(semitones)
    if p > q:  # up: shorten by q/p first, then stretch back to T
        y = _resampler(p, q, x)(x)
        return time_stretch(y, y.shape[-1] / length, length, n_fft, hop)
    # down: compress to T * p/q first, then resample back up to T
    short = math.ceil(length * p / q)
    y = time_stretch(x, length / short, short, n_fft, hop)
    return _fit_length(_resampler(p, q, y)(y), length)


class RandomPitchShift(nn.Module):
    """Per example, with probability p, a shift by a random non-zero whole number of semitones
    in [-semitones, +semitones] (so p is exactly the chance that the pitch changes).

    (B, T) -> (B, T). Examples with the same shift are processed in one batched call.
    """

    def __init__(self, p: float, semitones: int, sample_rate: int, n_fft: int | None = None):
        super().__init__()
        self.p = p
        self.semitones = semitones
        # ~93 ms analysis window (2048 at 22.05 kHz), like librosa's pitch_shift default.
        self.n_fft = n_fft or 1 << max(4, round(math.log2(sample_rate * 0.093)))

    def draw(self, batch: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        """(B,) int64 shifts; 0 where the transform is not applied."""
        apply = torch.rand(batch, device=device, generator=generator) < self.p
        k = self.semitones
        # Uniform over the 2k non-zero shifts: draw in [0, 2k) and skip 0.
        r = torch.randint(0, 2 * k, (batch,), device=device, generator=generator) - k
        shifts = torch.where(r >= 0, r + 1, r)
        return torch.where(apply, shifts, torch.zeros_like(shifts))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.p <= 0.0 or self.semitones == 0:
            return x
        shifts = self.draw(x.shape[0], x.device, generator)
        return self.apply_shifts(x, shifts)

    def apply_shifts(self, x: Tensor, shifts: Tensor) -> Tensor:
        """x: (B, T), shifts: (B,) ints -> (B, T); rows with shift 0 are returned as they are."""
        values = shifts.tolist()  # one host sync for the whole batch
        if not any(values):
            return x
        order: list[int] = []
        parts: list[Tensor] = []
        for s in sorted(set(values)):
            rows = [i for i, v in enumerate(values) if v == s]
            part = x.index_select(0, torch.tensor(rows, device=x.device))
            parts.append(pitch_shift(part, s, self.n_fft))
            order.extend(rows)
        # One gather puts the groups back in batch order (cheaper than clone + scatter per group).
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(parts).index_select(0, inverse.to(x.device))
