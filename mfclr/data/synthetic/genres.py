"""Ten synthetic "genres" that differ the way genres do, with variation and overlap inside each.

A `Style` is a set of ranges and choices: tempo, swing, drum patterns, mode and chord
progressions, bass line, chord instrument, lead, distortion, noise, reverb. `render_clip` draws
one clip from a style: every draw (tempo, key, pattern, instrument mix, loudness, time offset) is
random, and each layer is sometimes borrowed from a neighbouring genre, so classes overlap the way
rock and metal or techno and drum & bass do.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "harmonic": (0, 2, 3, 5, 7, 8, 11),
}


@dataclass(frozen=True)
class Kit:
    """One bar of drums on a 16-step grid: X loud, x medium, o ghost, . rest."""

    kick: str = "." * 16
    snare: str = "." * 16
    hat: str = "." * 16
    hat_kind: str = "closed"  # closed | open | ride


@dataclass(frozen=True)
class Style:
    bpm: tuple[float, float]
    kits: tuple[Kit, ...] = ()
    drums_p: float = 1.0
    swing: tuple[float, float] = (0.0, 0.0)  # delay of off-beat 8ths, fraction of an 8th
    modes: tuple[str, ...] = ("major",)
    progressions: tuple[tuple[int, ...], ...] = ((0, 3, 4, 0),)
    bars_per_chord: int = 1
    chord_size: int = 3  # 2 power chord, 3 triad, 4 seventh
    octave: tuple[int, int] = (4, 5)  # MIDI octave of the chord register (4 = middle C)
    bass: tuple[str, ...] = ("root8",)
    bass_voice: tuple[str, ...] = ("saw",)
    chords: tuple[str, ...] = ("pad",)
    lead: tuple[str, ...] = ("none",)
    lead_density: tuple[float, float] = (0.5, 1.5)  # notes per beat
    drive: tuple[float, float] = (0.0, 0.0)
    noise_db: tuple[float, float] = (-50.0, -35.0)  # noise bed RMS relative to the mix RMS
    crackle_p: float = 0.0
    reverb: tuple[float, float] = (0.0, 0.15)
    brightness: tuple[float, float] = (0.3, 0.7)


_FOUR = Kit("X...X...X...X...", "....x.......x...", "..x...x...x...x.", "open")
_FOUR_16 = Kit("X...X...X...X...", "................", "xoxoxoxoxoxoxoxo")
_BACKBEAT = Kit("X.......X.x.....", "....X.......X...", "x.x.x.x.x.x.x.x.")
_BACKBEAT2 = Kit("X.....x.X.......", "....X.......X..o", "x.x.x.x.x.x.x.x.")
_BLAST = Kit("XxXxXxXxXxXxXxXx", "....X.......X...", "x...x...x...x...", "open")
_THRASH = Kit("X.X.X.X.X.X.X.X.", "....X.......X...", "x.x.x.x.x.x.x.x.")
_SWING = Kit("o.........o.....", "......o.....o..o", "X...x.x.X...x.x.", "ride")
_BREAK = Kit("X.........X.....", "....X.......X...", "xoxoxoxoxoxoxoxo")
_AMEN = Kit("X.X.......XX....", "....X..o.o..X..o", "xxxxxxxxxxxxxxxx")
_ONEDROP = Kit("........X.......", "........X.......", "x.x.x.x.x.x.x.x.")
_STEPPERS = Kit("X...X...X...X...", "........X.......", "x.x.x.x.x.x.x.x.")
_BOOMBAP = Kit("X......X..X.....", "....X.......X...", "x.x.x.x.x.x.x.x.")
_BOOMBAP2 = Kit("X.....X...X..x..", "....X.......X...", "x.x.x.x.x.x.x.x.")
_TAP = Kit("x.......x.......", "................", "o.o.o.o.o.o.o.o.")
_PULSE = Kit("x...............", "................", "................", "ride")

# A table reads better than one argument per line.
# fmt: off
STYLES: dict[str, Style] = {
    "techno": Style(
        bpm=(120, 138), kits=(_FOUR, _FOUR_16), modes=("minor", "phrygian", "dorian"),
        progressions=((0, 0, 0, 0), (0, 0, 5, 5), (0, 6, 0, 6)), octave=(3, 4),
        bass=("offbeat", "root16"), bass_voice=("saw", "fm"), chords=("stab", "pad", "none"),
        lead=("none", "fm"), noise_db=(-45, -30), reverb=(0.05, 0.3),
    ),
    "rock": Style(
        bpm=(100, 150), kits=(_BACKBEAT, _BACKBEAT2), modes=("major", "mixolydian", "minor"),
        progressions=((0, 4, 5, 3), (0, 3, 4, 0), (0, 6, 3, 0)), chord_size=2, octave=(3, 4),
        bass=("root8",), bass_voice=("saw", "pluck"), chords=("power", "strum"),
        lead=("none", "square", "pluck"), drive=(1.5, 5.0), noise_db=(-45, -30),
    ),
    "jazz": Style(
        bpm=(110, 200), kits=(_SWING,), swing=(0.25, 0.35), modes=("major", "dorian", "minor"),
        progressions=((1, 4, 0, 0), (1, 4, 0, 5), (0, 5, 1, 4)), chord_size=4, octave=(4, 4),
        bass=("walking",), bass_voice=("pluck", "sine"), chords=("epiano", "organ"),
        lead=("none", "flute", "fm"), noise_db=(-55, -40), reverb=(0.1, 0.3),
    ),
    "ambient": Style(
        bpm=(60, 90), kits=(_PULSE,), drums_p=0.15, modes=("lydian", "major", "dorian"),
        progressions=((0, 3), (0, 5, 3, 4), (0, 1)), bars_per_chord=2, chord_size=4,
        octave=(4, 5), bass=("sub", "none"), bass_voice=("sine",), chords=("pad", "strings"),
        lead=("none", "fm", "flute"), lead_density=(0.1, 0.4), noise_db=(-40, -25),
        reverb=(0.3, 0.6), brightness=(0.1, 0.4),
    ),
    "dnb": Style(
        bpm=(160, 178), kits=(_BREAK, _AMEN), modes=("minor", "dorian", "phrygian"),
        progressions=((0, 5, 3, 4), (0, 0, 5, 6), (0, 0, 0, 0)), bars_per_chord=2,
        octave=(4, 5), bass=("sub",), bass_voice=("sine", "fm"), chords=("pad", "stab", "none"),
        lead=("none", "fm"), noise_db=(-45, -30), reverb=(0.05, 0.3),
    ),
    "folk": Style(
        bpm=(80, 125), kits=(_TAP,), drums_p=0.35, modes=("major", "mixolydian", "dorian"),
        progressions=((0, 3, 0, 4), (0, 4, 5, 3), (0, 3, 4, 0)), octave=(4, 4),
        bass=("folk", "none"), bass_voice=("pluck",), chords=("strum", "arp"),
        lead=("flute", "pluck", "none"), noise_db=(-60, -45), brightness=(0.3, 0.6),
    ),
    "metal": Style(
        bpm=(140, 200), kits=(_BLAST, _THRASH), modes=("phrygian", "minor", "harmonic"),
        progressions=((0, 0, 5, 6), (0, 1, 0, 6), (0, 0, 0, 1)), chord_size=2, octave=(2, 3),
        bass=("root16", "root8"), bass_voice=("saw",), chords=("power",),
        lead=("none", "square"), drive=(6.0, 14.0), noise_db=(-40, -25), brightness=(0.6, 0.9),
    ),
    "reggae": Style(
        bpm=(68, 92), kits=(_ONEDROP, _STEPPERS), swing=(0.0, 0.2),
        modes=("major", "minor", "dorian"), progressions=((0, 3, 0, 3), (0, 4, 3, 4), (0, 6)),
        octave=(4, 5), bass=("reggae",), bass_voice=("sine", "saw"), chords=("skank", "organ"),
        lead=("none", "flute"), noise_db=(-50, -35), reverb=(0.05, 0.25),
    ),
    "classical": Style(
        bpm=(60, 110), drums_p=0.0, modes=("major", "harmonic"),
        progressions=((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 2, 3, 0, 3, 4)), octave=(4, 5),
        bass=("sub", "folk"), bass_voice=("sine",), chords=("strings", "arp", "organ"),
        lead=("flute", "strings"), lead_density=(0.5, 2.0), noise_db=(-65, -50),
        reverb=(0.2, 0.45), brightness=(0.3, 0.6),
    ),
    "hiphop": Style(
        bpm=(82, 98), kits=(_BOOMBAP, _BOOMBAP2), swing=(0.1, 0.3),
        modes=("minor", "dorian"), progressions=((0, 3), (0, 5, 3, 4), (0, 6, 5, 4)),
        bars_per_chord=2, chord_size=4, octave=(4, 4), bass=("hiphop", "sub"),
        bass_voice=("sine", "fm"), chords=("epiano", "pad", "strum"), lead=("none", "flute"),
        noise_db=(-40, -28), crackle_p=0.7, brightness=(0.1, 0.4),
    ),
}
# fmt: on
GENRES: tuple[str, ...] = tuple(STYLES)

# Each layer is drawn from a neighbour's style with probability BORROW_P: classes overlap.
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "techno": ("dnb", "ambient"),
    "rock": ("metal", "folk"),
    "jazz": ("hiphop", "classical"),
    "ambient": ("classical", "techno"),
    "dnb": ("techno", "hiphop"),
    "folk": ("rock", "classical"),
    "metal": ("rock",),
    "reggae": ("hiphop", "folk"),
    "classical": ("ambient", "folk"),
    "hiphop": ("jazz", "reggae"),
}
BORROW_P = 0.25
