"""Render one synthetic clip of a genre: drums, bass, chords, lead and texture on a bar grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mfclr.data.synthetic import synthesis as synth
from mfclr.data.synthetic.genres import BORROW_P, MODES, NEIGHBOURS, STYLES, Kit, Style

_VELOCITY = {"X": 1.0, "x": 0.7, "o": 0.35}
_BASS_LINES: dict[str, tuple[tuple[int, str, int], ...]] = {
    # (step, interval, length in 16th steps) per bar
    "root8": tuple((s, "root", 2) for s in range(0, 16, 2)),
    "root16": tuple((s, "root", 1) for s in range(16)),
    "offbeat": tuple((s, "root", 2) for s in (2, 6, 10, 14)),
    "walking": ((0, "root", 4), (4, "third", 4), (8, "fifth", 4), (12, "approach", 4)),
    "sub": ((0, "root", 16),),
    "folk": ((0, "root", 8), (8, "fifth", 8)),
    "reggae": (
        (0, "root", 3),
        (3, "root", 1),
        (6, "fifth", 2),
        (10, "octave", 2),
        (14, "third", 2),
    ),
    "hiphop": ((0, "root", 6), (7, "root", 3), (10, "fifth", 4)),
    "none": (),
}


@dataclass(frozen=True)
class Grid:
    """A bar grid: 16 steps per bar, swung off-beat 8ths, sample positions at rate sr."""

    sr: int
    step: float  # seconds per 16th note
    swing: float
    n_bars: int

    def at(self, bar: int, step: float) -> int:
        delay = self.swing * 2 * self.step if int(step) % 4 == 2 else 0.0
        return int(((bar * 16 + step) * self.step + delay) * self.sr)

    def samples(self, steps: float) -> int:
        return max(int(steps * self.step * self.sr), 16)


@dataclass(frozen=True)
class Harmony:
    """Key, mode and one chord (MIDI notes, ascending) per bar."""

    scale: tuple[int, ...]  # MIDI notes of the mode over the register, for melodies
    bars: tuple[tuple[int, ...], ...]


def _mixed_style(genre: str, rng: np.random.Generator) -> Style:
    """The genre's style with some of its layers taken from a neighbouring genre."""
    style = STYLES[genre]
    groups = {
        "rhythm": ("bpm", "kits", "drums_p", "swing"),
        "harmony": ("modes", "progressions", "bars_per_chord", "chord_size", "octave"),
        "bass": ("bass", "bass_voice"),
        "chords": ("chords", "drive"),
        "lead": ("lead", "lead_density"),
        "texture": ("noise_db", "crackle_p", "reverb", "brightness"),
    }
    changes = {}
    for fields in groups.values():
        if rng.random() < BORROW_P:
            other = STYLES[NEIGHBOURS[genre][rng.integers(len(NEIGHBOURS[genre]))]]
            changes.update({f: getattr(other, f) for f in fields})
    return replace(style, **changes)


def _pick(rng: np.random.Generator, options: tuple) -> object:
    return options[rng.integers(len(options))]


def _harmony(style: Style, rng: np.random.Generator, n_bars: int) -> Harmony:
    mode = MODES[str(_pick(rng, style.modes))]
    prog = _pick(rng, style.progressions)
    rotate = int(rng.integers(len(prog)))
    octave = int(rng.integers(style.octave[0], style.octave[1] + 1))
    base = 12 * (octave + 1) + int(rng.integers(12))
    if base > 76:  # keep chords below ~660 Hz so low sample rates still carry them
        base -= 12

    def note(degree: int) -> int:
        return base + mode[degree % 7] + 12 * (degree // 7)

    bars = []
    for bar in range(n_bars):
        d = prog[(bar // style.bars_per_chord + rotate) % len(prog)]
        if style.chord_size == 2:
            bars.append((note(d), note(d) + 7, note(d) + 12))
        else:
            bars.append(tuple(note(d + 2 * i) for i in range(style.chord_size)))
    scale = tuple(note(d) for d in range(7, 22))
    return Harmony(scale, tuple(bars))


def _drums(style: Style, grid: Grid, rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    if not style.kits or rng.random() >= style.drums_p:
        return out
    kit: Kit = _pick(rng, style.kits)  # type: ignore[assignment]
    hat_decay = {"closed": rng.uniform(0.02, 0.05), "open": rng.uniform(0.12, 0.25)}
    hat = (
        synth.ride(grid.sr, rng)
        if kit.hat_kind == "ride"
        else synth.hat(grid.sr, rng, hat_decay.get(kit.hat_kind, 0.03))
    )
    voices = [
        (kit.kick, synth.kick(grid.sr, rng), rng.uniform(0.7, 1.0)),
        (kit.snare, synth.snare(grid.sr, rng), rng.uniform(0.5, 0.9)),
        (kit.hat, hat, rng.uniform(0.2, 0.5)),
    ]
    jitter = rng.uniform(0.0, 0.006) * grid.sr
    for pattern, sound, gain in voices:
        # Per-clip variation: drop some hits, add a few ghost notes.
        vel = np.array([_VELOCITY.get(c, 0.0) for c in pattern])
        vel = np.where(rng.random(16) < 0.1, 0.0, vel)
        vel = np.where((vel == 0) & (rng.random(16) < 0.05), 0.3, vel)
        for bar in range(grid.n_bars):
            for s in np.flatnonzero(vel):
                start = grid.at(bar, s) + int(rng.normal(0, jitter))
                synth.place(out, start, sound, gain * vel[s] * rng.uniform(0.8, 1.0))
    return out


def _voice(kind: str, rng: np.random.Generator, sr: int, bright: float) -> synth.Voice:
    """A pitched instrument of the given kind with random settings for this clip."""
    dec = rng.uniform(0.3, 1.5)
    env_short = lambda n: synth.envelope(n, sr, 0.005, dec, 0.02)
    env_slow = lambda n: synth.envelope(n, sr, rng.uniform(0.2, 0.6), 20.0, 0.3)
    env_held = lambda n: synth.envelope(n, sr, 0.02, 8.0, 0.05)
    idx, ratio = rng.uniform(1.0, 4.0), float(_pick(rng, (1.0, 2.0, 3.5, 0.5)))
    saw = synth.saw_amps(16, bright)
    table = {
        "saw": (lambda f, n: synth.additive(f, n, sr, synth.saw_amps(10, bright * 0.7)), env_held),
        "sine": (lambda f, n: synth.additive(f, n, sr, np.array([1.0, 0.15, 0.05])), env_held),
        "fm": (lambda f, n: synth.fm(f, n, sr, ratio, idx, rng.uniform(0.1, 0.5)), env_short),
        "pluck": (lambda f, n: synth.pluck(f, n, sr, rng, 1 - bright), env_short),
        "square": (lambda f, n: synth.additive(f, n, sr, synth.square_amps(12, bright)), env_held),
        "flute": (
            lambda f, n: synth.additive(f, n, sr, np.array([1.0, 0.3, 0.1, 0.05]), 0.15),
            lambda n: synth.envelope(n, sr, 0.06, 6.0, 0.06),
        ),
        "strings": (lambda f, n: synth.additive(f, n, sr, saw, 0.12), env_slow),
        "power": (lambda f, n: synth.additive(f, n, sr, saw), env_held),
        "pad": (lambda f, n: synth.additive(f, n, sr, synth.saw_amps(8, bright * 0.5)), env_slow),
        "organ": (
            lambda f, n: synth.additive(f, n, sr, np.array([1.0, 0.8, 0.6, 0.5, 0, 0.4, 0, 0.3])),
            env_held,
        ),
        "epiano": (lambda f, n: synth.fm(f, n, sr, 1.0, idx, 0.3), env_short),
        "stab": (
            lambda f, n: synth.fm(f, n, sr, ratio, idx, 0.1),
            lambda n: synth.envelope(n, sr, 0.003, rng.uniform(0.05, 0.2), 0.01),
        ),
        "skank": (
            lambda f, n: synth.additive(f, n, sr, saw),
            lambda n: synth.envelope(n, sr, 0.003, 0.05, 0.01),
        ),
    }
    return synth.Voice(*table[kind])


def _bass(style: Style, grid: Grid, harm: Harmony, rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    line = _BASS_LINES[str(_pick(rng, style.bass))]
    if not line:
        return out
    voice = _voice(str(_pick(rng, style.bass_voice)), rng, grid.sr, rng.uniform(*style.brightness))
    for bar in range(grid.n_bars):
        chord, nxt = harm.bars[bar], harm.bars[min(bar + 1, grid.n_bars - 1)]
        root = chord[0] - 24
        while root < 28:  # E1: lower than this is felt, not heard
            root += 12
        offsets = {"root": 0, "fifth": 7, "octave": 12, "approach": nxt[0] - 24 - root - 1}
        offsets["third"] = chord[1] - chord[0] if chord[1] - chord[0] < 7 else 12
        for step, interval, length in line:
            midi = root + offsets[interval]
            synth.place(out, grid.at(bar, step), voice.note(midi, grid.samples(length * 0.9)))
    return out


def _chord_rhythm(kind: str, rng: np.random.Generator, span: int) -> list[tuple[float, float]]:
    """(step, length in steps) of the chord hits within one bar, or one hit per chord span."""
    if kind in ("pad", "strings", "organ"):
        return [(0, 16 * span)]
    if kind == "power":
        return list(_pick(rng, ([(s, 2) for s in range(0, 16, 2)], [(0, 8), (8, 8)])))
    if kind == "skank":
        return list(_pick(rng, ([(4, 1), (12, 1)], [(2, 1), (6, 1), (10, 1), (14, 1)])))
    if kind == "arp":
        return [(s, 4) for s in range(0, 16, 2)]
    if kind == "strum":
        steps = list(_pick(rng, ((0, 6, 8, 12, 14), (0, 4, 8, 12), (0, 3, 6, 8, 12))))
    else:  # epiano comping, techno stabs: a few random steps, repeated every bar
        pool = np.array([0, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14])
        steps = sorted(rng.choice(pool, int(rng.integers(2, 5)), replace=False).tolist())
    ends = [*steps[1:], 16]
    return [(s, min(e - s, 6)) for s, e in zip(steps, ends, strict=True)]


def _chords(
    style: Style, grid: Grid, harm: Harmony, rng: np.random.Generator, n: int
) -> np.ndarray:
    out = np.zeros(n, np.float32)
    kind = str(_pick(rng, style.chords))
    if kind == "none":
        return out
    bright = rng.uniform(*style.brightness)
    voice = _voice("pluck" if kind in ("strum", "arp") else kind, rng, grid.sr, bright)
    hits = _chord_rhythm(kind, rng, style.bars_per_chord)
    spread = rng.uniform(0.008, 0.02) * grid.sr if kind == "strum" else 0.0
    for bar in range(grid.n_bars):
        if kind in ("pad", "strings", "organ") and bar % style.bars_per_chord:
            continue
        chord = harm.bars[bar]
        for i, (step, length) in enumerate(hits):
            notes = [chord[(i + bar) % len(chord)]] if kind == "arp" else chord
            for j, midi in enumerate(notes):
                start = grid.at(bar, step) + int(j * spread)
                synth.place(out, start, voice.note(midi, grid.samples(length)), 1 / len(notes))
    if kind == "power":
        out = synth.drive(out / max(np.abs(out).max(), 1e-9), rng.uniform(*style.drive))
    return out


def _lead(style: Style, grid: Grid, harm: Harmony, rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros(n, np.float32)
    kind = str(_pick(rng, style.lead))
    if kind == "none":
        return out
    voice = _voice(kind, rng, grid.sr, rng.uniform(*style.brightness))
    # A two-bar motif, repeated: onsets where a coin with p = density/4 lands, pitches a random
    # walk on the scale.
    steps = np.flatnonzero(rng.random(32) < rng.uniform(*style.lead_density) / 4)
    if len(steps) == 0:
        return out
    degrees = np.clip(4 + np.cumsum(rng.integers(-2, 3, len(steps))), 0, len(harm.scale) - 1)
    lengths = np.minimum(np.diff(np.append(steps, 32)), 8)
    for bar in range(0, grid.n_bars, 2):
        for step, deg, length in zip(steps, degrees, lengths, strict=True):
            midi = harm.scale[deg]
            synth.place(out, grid.at(bar, float(step)), voice.note(midi, grid.samples(length)))
    return out


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    return x / rms if rms > 1e-8 else x


def render_clip(genre: str, rng: np.random.Generator, sr: int, seconds: float) -> np.ndarray:
    """One clip of `genre`: float32 (round(seconds * sr),), peak at a random -20..-3 dBFS."""
    style = _mixed_style(genre, rng)
    bpm = rng.uniform(*style.bpm)
    grid0 = Grid(sr, 60.0 / bpm / 4, rng.uniform(*style.swing), 0)
    bar_s = 16 * grid0.step
    offset = rng.uniform(0, bar_s)  # the clip starts anywhere within a bar
    grid = replace(grid0, n_bars=math.ceil((seconds + offset) / bar_s) + 1)
    total = int(grid.n_bars * bar_s * sr) + sr
    harm = _harmony(style, rng, grid.n_bars)
    layers = [
        (_drums(style, grid, rng, total), rng.uniform(0.6, 1.0)),
        (_bass(style, grid, harm, rng, total), rng.uniform(0.4, 0.9)),
        (_chords(style, grid, harm, rng, total), rng.uniform(0.3, 0.9)),
        (_lead(style, grid, harm, rng, total), rng.uniform(0.2, 0.6)),
    ]
    if not any(layer.any() for layer, _ in layers):  # every layer drew "none": add a pad
        pad = _chords(replace(style, chords=("pad",)), grid, harm, rng, total)
        layers.append((pad, rng.uniform(0.3, 0.9)))
    mix = sum(gain * _unit_rms(layer) for layer, gain in layers)
    mix = synth.reverb(mix, sr, rng, rng.uniform(0.8, 2.5), rng.uniform(*style.reverb))
    start = int(offset * sr)
    mix = np.asarray(mix[start : start + round(seconds * sr)], dtype=np.float32)
    mix_rms = float(np.sqrt(np.mean(mix.astype(np.float64) ** 2))) or 1.0
    noise_gain = mix_rms * 10 ** (rng.uniform(*style.noise_db) / 20)
    mix += noise_gain * synth.noise_bed(len(mix), rng, rng.uniform(0, 1))
    if rng.random() < style.crackle_p:
        mix += rng.uniform(0.1, 0.3) * mix_rms * 4 * synth.crackle(len(mix), sr, rng, 15.0)
    peak_db = rng.uniform(-20.0, -3.0)
    return (mix * (10 ** (peak_db / 20) / max(np.abs(mix).max(), 1e-9))).astype(np.float32)
