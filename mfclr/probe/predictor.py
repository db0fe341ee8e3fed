"""What a fusion fitted, kept so that it predicts new tracks: the one prediction path of every
built-in fusion. The strategies in fusion.py compute their test probabilities through it, and a
saved classifier (bundle.py) rebuilds it, so the table and the classifier cannot drift apart.

    predictor.predict_proba({"audio": (n, 512), "spectrogram": (n, 512)}) -> (n, C)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfclr.errors import DataError
from mfclr.probe.fit import FittedProbe

# Fusions whose one probe reads the formats concatenated (sorted order); the others pool one
# probe per format at the decision level.
CONCATENATED = ("concat", "scaled", "gated")
POOLED = ("average", "weighted", "product")


def geometric_mean(probs: np.ndarray) -> np.ndarray:
    """(K, n, C) probabilities -> (n, C): softmax of the mean log-probability over K."""
    logp = np.log(np.clip(probs, 1e-12, None)).mean(axis=0)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def each_format(
    formats: list[str], probes: list[FittedProbe], feats: dict[str, np.ndarray]
) -> np.ndarray:
    """(K, n, C): format k's probe on its own features (n, D_k), for each of the K formats."""
    pairs = zip(formats, probes, strict=True)
    return np.stack([probe.predict_proba(feats[f]) for f, probe in pairs])


@dataclass
class FusionPredictor:
    """A fitted fusion: `fusion` (concat | gated | average | weighted | product; a
    single-format row is concat over one format), its formats in sorted order, its probes (one
    over the concatenation for concat/gated, else one per format, in `formats` order) and the
    `weighted` fusion's weights (K,), summing to 1."""

    fusion: str
    formats: list[str]
    probes: list[FittedProbe]
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        want = 1 if self.fusion in CONCATENATED else len(self.formats)
        if self.fusion not in CONCATENATED + POOLED or len(self.probes) != want:
            raise DataError(
                f"fusion '{self.fusion}' over {len(self.formats)} formats cannot be built from "
                f"{len(self.probes)} probes"
            )
        if (self.fusion == "weighted") != (self.weights is not None):
            raise DataError("the weighted fusion, and it alone, needs weights")

    def each(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """(K, n, C): each format's probe on its own features (decision-level fusions)."""
        return each_format(self.formats, self.probes, feats)

    def pool(self, each: np.ndarray) -> np.ndarray:
        """(K, n, C) per-format probabilities -> (n, C) by this decision-level fusion."""
        if self.fusion == "average":
            return each.mean(axis=0)
        if self.fusion == "product":
            return geometric_mean(each)
        assert self.weights is not None  # weighted (checked in __post_init__)
        return np.tensordot(self.weights, each, axes=1)

    def predict_proba(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities (n, C) float64 from format -> raw track embeddings (n, D_f)."""
        missing = [f for f in self.formats if f not in feats]
        if missing:
            raise DataError(f"no embeddings of format(s) {', '.join(missing)} to predict from")
        if self.fusion in CONCATENATED:
            x = np.concatenate([feats[f] for f in self.formats], axis=1)
            return self.probes[0].predict_proba(x)
        return self.pool(self.each(feats))
