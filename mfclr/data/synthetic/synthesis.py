"""Small vectorised numpy synthesisers for the embedded dataset: tones, drums, effects.

Every function returns float32 waveforms of shape (n,) at `sr` Hz with a peak near 1 (before
mixing). Pitched voices render one note per (pitch, length) and cache it, because a clip repeats
the same few notes many times: a 10 s clip then costs tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

TAU = 2.0 * np.pi


def midi_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def times(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sr


def envelope(n: int, sr: int, attack: float, decay: float, release: float = 0.01) -> np.ndarray:
    """Linear attack (s), exponential decay (time constant, s), linear release over the end (s)."""
    t = times(n, sr)
    env = np.minimum(t / max(attack, 1e-4), 1.0) * np.exp(-t / max(decay, 1e-4))
    r = min(int(release * sr), n)
    if r > 0:
        env[n - r :] *= np.linspace(1.0, 0.0, r)
    return env


def additive(freq: float, n: int, sr: int, amps: np.ndarray, vibrato: float = 0.0) -> np.ndarray:
    """Sum of harmonics k*freq with amplitudes amps[k-1] (those above 0.45*sr dropped).

    vibrato: depth in semitones of a 5.5 Hz pitch wobble.
    """
    n_harm = min(len(amps), int(0.45 * sr / freq))
    if n_harm < 1:
        return np.zeros(n, np.float32)
    t = times(n, sr)
    phase = TAU * freq * t
    if vibrato:
        phase += vibrato * np.log(2) / 12 * freq / 5.5 * (1 - np.cos(TAU * 5.5 * t))
    # sin(k*p) by the Chebyshev recurrence: one multiply-add per harmonic instead of a sin.
    two_cos = 2.0 * np.cos(phase)
    prev, cur = np.zeros(n), np.sin(phase)
    out = amps[0] * cur
    for k in range(1, n_harm):
        prev, cur = cur, two_cos * cur - prev
        if amps[k]:
            out += amps[k] * cur
    return (out / max(np.abs(amps[:n_harm]).sum(), 1e-9)).astype(np.float32)


def saw_amps(n_harm: int, brightness: float) -> np.ndarray:
    """Sawtooth-like harmonic profile, rolled off faster when brightness (0..1) is low."""
    k = np.arange(1, n_harm + 1)
    return (1.0 / k) * np.exp(-(k - 1) * (1.0 - brightness) * 0.5)


def square_amps(n_harm: int, brightness: float) -> np.ndarray:
    amps = saw_amps(n_harm, brightness)
    amps[1::2] = 0.0  # odd harmonics only: hollow, clarinet/square timbre
    return amps


def fm(freq: float, n: int, sr: int, ratio: float, index: float, index_decay: float) -> np.ndarray:
    """Two-operator FM: bells and electric pianos (a decaying index darkens the note)."""
    t = times(n, sr)
    mod_index = index * np.exp(-t / max(index_decay, 1e-3))
    return np.sin(TAU * freq * t + mod_index * np.sin(TAU * freq * ratio * t)).astype(np.float32)


def pluck(freq: float, n: int, sr: int, rng: np.random.Generator, damping: float) -> np.ndarray:
    """Karplus-Strong string: a noise burst in a delay line with an averaging loss filter.

    damping in (0, 1): per-period loss; higher is a duller, shorter note.
    """
    period = max(int(round(sr / freq - 0.5)), 2)
    gain = 0.5 * (1.0 - 0.02 * damping)
    x = np.zeros(n + 1, np.float64)
    burst = rng.uniform(-1, 1, min(period, n))
    x[1 : 1 + len(burst)] = burst - burst.mean()
    if period < 64:
        # Short delay lines: one C-level IIR pass beats a Python loop over many blocks.
        a = np.zeros(period + 2)
        a[0], a[period], a[period + 1] = 1.0, -gain, -gain
        y = lfilter([1.0], a, x)
    else:
        # Long delay lines: each block of `period` samples depends only on earlier samples.
        y = x
        for start in range(period + 1, n + 1, period):
            stop = min(start + period, n + 1)
            y[start:stop] += gain * (
                y[start - period : stop - period] + y[start - period - 1 : stop - period - 1]
            )
    out = y[1:]
    return (out / max(np.abs(out).max(), 1e-9)).astype(np.float32)


class Voice:
    """A pitched instrument with fixed settings; renders (midi, n) once and reuses it."""

    def __init__(
        self, render: Callable[[float, int], np.ndarray], env: Callable[[int], np.ndarray]
    ):
        self._render, self._env = render, env
        self._cache: dict[tuple[float, int], np.ndarray] = {}

    def note(self, midi: float, n: int) -> np.ndarray:
        key = (round(midi, 2), n)
        if key not in self._cache:
            self._cache[key] = (self._render(midi_hz(midi), n) * self._env(n)).astype(np.float32)
        return self._cache[key]


def place(buf: np.ndarray, start: int, sound: np.ndarray, gain: float = 1.0) -> None:
    """Add `sound` into `buf` at sample `start`, cut at the buffer's end."""
    if start >= len(buf) or start + len(sound) <= 0:
        return
    lo = max(start, 0)
    hi = min(start + len(sound), len(buf))
    buf[lo:hi] += gain * sound[lo - start : hi - start]


# ----------------------------------------------------------------------------- drums


def kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A pitch-swept sine with a click: f falls from ~150 to ~50 Hz."""
    n = int(0.35 * sr)
    t = times(n, sr)
    f_hi, f_lo = rng.uniform(110, 190), rng.uniform(40, 60)
    f = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.02, 0.05))
    body = np.sin(TAU * np.cumsum(f) / sr) * np.exp(-t / rng.uniform(0.08, 0.2))
    click = rng.standard_normal(n) * np.exp(-t / 0.003) * rng.uniform(0.1, 0.4)
    return (body + click).astype(np.float32)


def _highpass_noise(n: int, rng: np.random.Generator, order: int) -> np.ndarray:
    noise = rng.standard_normal(n + order)
    return np.diff(noise, n=order) / (2.0**order)


def snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = times(n, sr)
    tone = np.sin(TAU * rng.uniform(170, 240) * t) * np.exp(-t / 0.05)
    rattle = _highpass_noise(n, rng, 1) * 3.0 * np.exp(-t / rng.uniform(0.05, 0.12))
    mix = rng.uniform(0.3, 0.7)
    return ((1 - mix) * tone + mix * rattle).astype(np.float32)


def hat(sr: int, rng: np.random.Generator, decay: float) -> np.ndarray:
    """Closed (decay ~0.03 s) or open (~0.2 s) hi-hat: high-passed noise."""
    n = int(min(6 * decay, 0.8) * sr)
    t = times(n, sr)
    return (_highpass_noise(n, rng, 2) * 3.0 * np.exp(-t / decay)).astype(np.float32)


def ride(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A metallic ride: inharmonic partials plus noise, long decay."""
    n = int(0.9 * sr)
    t = times(n, sr)
    partials = rng.uniform(0.08, 0.4, 6) * sr
    metal = np.sin(TAU * partials[:, None] * t[None, :]).sum(axis=0) / 6
    sizzle = _highpass_noise(n, rng, 2) * 2.0
    return ((0.6 * metal + 0.4 * sizzle) * np.exp(-t / rng.uniform(0.25, 0.5))).astype(np.float32)


# ----------------------------------------------------------------------------- effects


def lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    cutoff = min(cutoff, 0.45 * sr)
    return sosfilt(butter(order, cutoff, fs=sr, output="sos"), x).astype(np.float32)


def drive(x: np.ndarray, amount: float) -> np.ndarray:
    """Soft clipping distortion; amount 0 is clean, ~10 is a metal guitar."""
    if amount <= 0:
        return x
    return (np.tanh(x * (1 + amount)) / np.tanh(1 + amount)).astype(np.float32)


def reverb(
    x: np.ndarray, sr: int, rng: np.random.Generator, seconds: float, wet: float
) -> np.ndarray:
    """Convolution with decaying noise (a cheap room); seconds is the ~60 dB decay time."""
    if wet <= 0:
        return x
    n = int(seconds * sr)
    t = times(n, sr)
    ir = lowpass(rng.standard_normal(n) * np.exp(-6.9 * t / seconds), 0.25 * sr, sr)
    tail = fftconvolve(x, ir)[: len(x)]
    tail *= np.abs(x).max() / max(np.abs(tail).max(), 1e-9)
    return ((1 - wet) * x + wet * tail).astype(np.float32)


def noise_bed(n: int, rng: np.random.Generator, colour: float) -> np.ndarray:
    """Background noise, unit RMS; colour 0 is white hiss, 1 is a dark rumble."""
    white = rng.standard_normal(n)
    dark = lfilter([1.0], [1.0, -0.995], white)
    mix = colour * dark / max(dark.std(), 1e-9) + (1 - colour) * white
    return (mix / max(mix.std(), 1e-9)).astype(np.float32)


def crackle(n: int, sr: int, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Vinyl crackle: sparse clicks at `rate` per second, unit peak."""
    out = np.zeros(n, np.float32)
    hits = rng.integers(0, n, rng.poisson(rate * n / sr))
    out[hits] = rng.uniform(-1, 1, len(hits))
    return lowpass(out, 0.3 * sr, sr, order=1)
