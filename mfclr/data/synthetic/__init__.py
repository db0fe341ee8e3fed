"""The embedded dataset's generator: genre styles, composition of a clip, synthesis of its voices.

    render_clip(genre, rng, sr, seconds) -> (n,) float32 waveform

Pure numpy/scipy; `mfclr.data.embedded` writes the rendered clips to disk with split lists.
"""

from __future__ import annotations

from typing import Any

from mfclr.data.synthetic.genres import GENRES

__all__ = ["GENRES", "render_clip"]


def __getattr__(name: str) -> Any:
    # render_clip on first use: the synthesiser imports scipy.signal, which a process that only
    # reads generated clips should not pay for.
    if name == "render_clip":
        from mfclr.data.synthetic.compose import render_clip

        return render_clip
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
