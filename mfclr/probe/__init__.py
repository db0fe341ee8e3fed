"""Probing frozen encoders: track embeddings, fusion strategies, probe fitting, metrics.

embeddings (mean over all chunks of a track) -> fusion (a registry of small functions) -> probe
head (linear | MLP, tuned on valid only) -> metrics on test.
"""

from __future__ import annotations

from mfclr.probe.embed import EmbeddingFile, embed_tracks, load_embeddings, save_embeddings
from mfclr.probe.fit import FittedProbe, Standardizer, fit_probe
from mfclr.probe.fusion import (
    FUSIONS,
    Features,
    FusionResult,
    Labels,
    check_features,
    get_fusion,
    register_fusion,
)
from mfclr.probe.metrics import classification_metrics
from mfclr.probe.scaled import scaled  # noqa: F401 (registers the `scaled` fusion)

__all__ = [
    "FUSIONS",
    "EmbeddingFile",
    "Features",
    "FittedProbe",
    "FusionResult",
    "Labels",
    "Standardizer",
    "check_features",
    "classification_metrics",
    "embed_tracks",
    "fit_probe",
    "get_fusion",
    "load_embeddings",
    "register_fusion",
    "save_embeddings",
]
