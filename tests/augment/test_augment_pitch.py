"""Pitch shift: a real shift (frequency x 2^(k/12)) with length and tempo unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from mfclr.augment import RandomPitchShift, pitch_shift, semitone_ratio, time_stretch
from mfclr.augment.pitch import _istft
from mfclr.augment.reference import WholeSemitonePitchShift
from mfclr.errors import ConfigError

SR = 22050
N = round(0.8 * SR)


def tone(freq: float, n: int = N, amp: float = 0.5) -> torch.Tensor:
    return amp * torch.sin(2 * math.pi * freq * torch.arange(n) / SR)


def peak_hz(x: torch.Tensor) -> torch.Tensor:
    """(k, T) -> (k,) frequency of the largest spectral peak, 0.1 Hz grid (zero-padded FFT)."""
    n_fft = 1 << 18
    spec = torch.fft.rfft(x * torch.hann_window(x.shape[-1]), n=n_fft).abs()
    return spec.argmax(dim=-1).float() * SR / n_fft


def cents(f: torch.Tensor, ref: float) -> torch.Tensor:
    return 1200 * torch.log2(f / ref)


def envelope(x: torch.Tensor, hop: int = 220) -> torch.Tensor:
    """(T,) -> RMS per 10 ms."""
    return x[: x.shape[-1] // hop * hop].reshape(-1, hop).square().mean(-1).sqrt()


def burst(start_s: float, stop_s: float, freq: float = 440.0) -> torch.Tensor:
    t = torch.arange(N) / SR
    return tone(freq) * ((t >= start_s) & (t < stop_s))


def onset_offset_s(x: torch.Tensor) -> tuple[float, float]:
    env = envelope(x)
    on = (env > 0.5 * env.max()).nonzero().squeeze(1)
    return on[0].item() * 0.01, (on[-1].item() + 1) * 0.01


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
def test_semitone_ratios_are_small_and_within_4_cents(k: int) -> None:
    p, q = semitone_ratio(k)
    assert abs(1200 * math.log2(p / q) - 100 * k) <= 4.0
    assert max(p, q) <= 32  # small sinc kernels
    assert semitone_ratio(-k) == (q, p)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_tone_moves_by_k_semitones_both_ways(k: int) -> None:
    x = torch.stack([tone(440.0), tone(1000.0)])
    for shift in (k, -k):
        y = pitch_shift(x, shift)
        assert y.shape == x.shape and y.dtype == x.dtype
        error = cents(peak_hz(y), 1.0) - cents(torch.tensor([440.0, 1000.0]), 1.0) - 100 * shift
        assert error.abs().max() < 5.0, (shift, error)
        # level kept: a steady tone stays a steady tone (no phasiness from the clip's edges)
        ratio_db = 20 * torch.log10(y.std(dim=-1) / x.std(dim=-1))
        assert ratio_db.abs().max() < 1.0


@pytest.mark.parametrize("k", [5, -5])
def test_shift_keeps_tempo(k: int) -> None:
    # A resample-only "pitch shift" would move the burst to 0.5 / 2^(k/12) s (over 100 ms away).
    x = burst(0.4, 0.65)
    on, off = onset_offset_s(pitch_shift(x[None], k)[0])
    assert abs(on - 0.4) < 0.05 and abs(off - 0.65) < 0.05, (on, off)


@pytest.mark.parametrize("rate", [0.75, 1.0, 1.5])
def test_time_stretch_changes_duration_not_pitch(rate: float) -> None:
    x = tone(700.0)[None]
    n = round(N / rate)
    y = time_stretch(x, rate, n, 2048, 512)
    assert y.shape == (1, n)
    assert (cents(peak_hz(y), 700.0)).abs().max() < 3.0
    if rate == 1.0:  # nothing to stretch: away from the edges, the input comes back
        assert torch.allclose(y[:, 2048:-2048], x[:, 2048:-2048], atol=1e-4)
    on, off = onset_offset_s(time_stretch(burst(0.2, 0.4)[None], rate, n, 2048, 512)[0])
    assert abs(on - 0.2 / rate) < 0.05 and abs(off - 0.4 / rate) < 0.05


def test_fast_istft_matches_torch_istft() -> None:
    x = torch.randn(3, 5000)
    win = torch.hann_window(512)
    spec = torch.stft(x, 512, 128, window=win, return_complex=True)
    ours = _istft(spec.transpose(1, 2).contiguous(), 512, 128, 5000)
    assert torch.allclose(ours, torch.istft(spec, 512, 128, window=win, length=5000), atol=1e-5)
    assert torch.allclose(ours, x, atol=1e-5)


def test_zero_shift_and_p0_return_the_input() -> None:
    x = torch.randn(3, 4000)
    assert pitch_shift(x, 0) is x
    assert RandomPitchShift(0.0, 5, SR)(x) is x
    assert RandomPitchShift(1.0, 0, SR)(x) is x


def test_random_shifts_are_per_example_whole_and_grouped_correctly() -> None:
    aug = RandomPitchShift(1.0, 5, SR)
    shifts = aug.draw(400, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert set(shifts.tolist()) == set(range(-5, 0)) | set(range(1, 6))
    # each row gets its own shift, whatever the grouping
    rows = torch.tensor([3, -2, 0, 3, 5])
    x = tone(500.0).expand(5, -1).contiguous()
    y = aug.apply_shifts(x, rows)
    assert torch.equal(y[2], x[2])
    expected = 500.0 * 2.0 ** (rows.float() / 12)
    assert (cents(peak_hz(y), 1.0) - cents(expected, 1.0)).abs().max() < 5.0


def test_random_shift_probability_and_determinism() -> None:
    aug = RandomPitchShift(0.6, 5, SR)
    shifts = aug.draw(1000, torch.device("cpu"), torch.Generator().manual_seed(1))
    assert 0.55 < (shifts != 0).float().mean().item() < 0.65
    x = torch.randn(4, 6000)
    a = aug(x, generator=torch.Generator().manual_seed(2))
    b = aug(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


def test_silence_and_short_clips_stay_finite() -> None:
    assert torch.equal(pitch_shift(torch.zeros(2, 5000), 4), torch.zeros(2, 5000))
    for k in (-12, -3, 3, 12):
        y = pitch_shift(torch.randn(2, 600), k)  # shorter than the analysis window
        assert y.shape == (2, 600) and torch.isfinite(y).all()
    with pytest.raises(ConfigError, match="data.clip_seconds"):
        RandomPitchShift(1.0, 5, SR)(torch.randn(2, 20))


def test_reference_pitch_shift_moves_the_tone_like_ours() -> None:
    # audiomentations (signalsmith) on the same tones: same peak within a few cents, same length.
    x = torch.stack([tone(440.0), tone(1000.0)])
    ref = WholeSemitonePitchShift(semitones=4, p=1.0)
    for k in (4, -4):
        ref.parameters = {"should_apply": True, "num_semitones": float(k)}
        theirs = torch.stack([torch.from_numpy(ref.apply(c.numpy(), SR)) for c in x])
        ours = pitch_shift(x, k)
        assert theirs.shape == ours.shape
        assert (cents(peak_hz(theirs), 1.0) - cents(peak_hz(ours), 1.0)).abs().max() < 8.0
        on_theirs, _ = onset_offset_s(torch.from_numpy(ref.apply(burst(0.4, 0.65).numpy(), SR)))
        on_ours, _ = onset_offset_s(pitch_shift(burst(0.4, 0.65)[None], k)[0])
        assert abs(on_theirs - on_ours) < 0.06


def test_reference_draws_whole_nonzero_semitones() -> None:
    import random

    random.seed(0)
    ref = WholeSemitonePitchShift(semitones=3, p=1.0)
    seen = set()
    for _ in range(200):
        ref.randomize_parameters(tone(440.0, n=100).numpy(), SR)
        seen.add(ref.parameters["num_semitones"])
    assert seen == {-3.0, -2.0, -1.0, 1.0, 2.0, 3.0}
