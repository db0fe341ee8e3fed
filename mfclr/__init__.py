"""mfclr: multi-format contrastive learning of music representations.

    import mfclr
    h = mfclr.load_encoder("encoder.pt").embed(waveform, 44100)       # (512,) embedding
    p = mfclr.load_classifier("classifier.pt").predict(waveform, 44100)  # label probabilities

The API (mfclr/api.py) loads torch: it is imported on first use, so `import mfclr` and
`mfclr --help` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["load_classifier", "load_encoder"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("mfclr.api"), name)
    raise AttributeError(f"module 'mfclr' has no attribute '{name}'")
