"""The embedded dataset's generator: genre styles, composition of a clip, synthesis of its voices.

    render_clip(genre, rng, sr, seconds) -> (n,) float32 waveform

Pure numpy/scipy; `mfclr.data.embedded` writes the rendered clips to disk with split lists.
"""

from __future__ import annotations

from mfclr.data.synthetic.compose import render_clip
from mfclr.data.synthetic.genres import GENRES

__all__ = ["GENRES", "render_clip"]
