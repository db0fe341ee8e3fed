"""`scaled`: feature-level fusion with a weight per format, chosen on valid.

Concatenation gives every standardised dimension the same say, so a weak format's 512
dimensions dilute a strong one's: on the real-music panel the concatenation fell below the
spectrogram alone. Here each format's standardised block is multiplied by a weight (a larger L2
penalty on its probe weights, 1 / w^2) from a small grid, one probe per weight vector, and the
valid split picks the vector by the probe's own rule (the valid loss for the L-BFGS linear head,
valid accuracy for Adam). With both weights 1 it is the concatenation; the strongest block always
keeps weight 1.
"""

from __future__ import annotations

import itertools

import numpy as np

from mfclr.config import SPLITS, ProbeConfig
from mfclr.probe.fit import _rank, selection
from mfclr.probe.fusion import (
    Features,
    FusionResult,
    Labels,
    _probe,
    check_features,
    register_fusion,
)
from mfclr.probe.predictor import FusionPredictor

SCALES = (1.0, 0.5, 0.25)  # a format's weight relative to the format that keeps 1


def weight_vectors(k: int) -> list[tuple[float, ...]]:
    """Every weight vector over k formats with entries in SCALES and at least one 1."""
    return [w for w in itertools.product(SCALES, repeat=k) if max(w) == 1.0]


@register_fusion("scaled")
def scaled(
    features: Features,
    labels: Labels,
    head: str,
    cfg: ProbeConfig,
    n_classes: int,
    *,
    device: str = "cpu",
) -> FusionResult:
    """Feature level: concatenated standardised formats, each block weighted, one probe per
    weight vector of `weight_vectors`; valid picks one (see the module doc)."""
    formats = check_features(features, labels)
    x = {s: np.concatenate([features[f][s] for f in formats], axis=1) for s in SPLITS}
    dims = [int(features[f]["train"].shape[1]) for f in formats]
    select = selection(cfg, cfg.linear_solver if head == "linear" else "adam")
    best, grid = None, []
    for w in weight_vectors(len(formats)):
        scale = np.concatenate([np.full(d, wk) for d, wk in zip(dims, w, strict=True)])
        probe = _probe(x, labels, head, cfg, n_classes, device, scale)
        acc, loss = probe.info["valid_accuracy"], probe.info["valid_loss"]
        grid.append({"weights": dict(zip(formats, w, strict=True)), "valid_accuracy": acc,
                     "valid_loss": loss})  # fmt: skip
        if best is None or _rank(select, acc, loss) > best[0]:
            best = (_rank(select, acc, loss), w, probe)
    assert best is not None  # weight_vectors is never empty
    _, w, probe = best
    info = {"fusion": "scaled", "formats": formats, "dim": sum(dims),
            "weights": dict(zip(formats, w, strict=True)),
            "valid_accuracy": probe.info["valid_accuracy"], "probe": probe.info,
            "grid": grid}  # fmt: skip
    predictor = FusionPredictor("scaled", formats, [probe])
    test = predictor.predict_proba({f: features[f]["test"] for f in formats})
    return FusionResult(probs=test, info=info, predictor=predictor)
