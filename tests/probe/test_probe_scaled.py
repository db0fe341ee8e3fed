"""The `scaled` fusion: a weight per format over the concatenation, chosen on valid."""

from __future__ import annotations

import numpy as np
import pytest

from mfclr.config import ProbeConfig
from mfclr.probe.fusion import get_fusion
from mfclr.probe.scaled import weight_vectors
from tests.probe.test_probe_fusion import half_informative

LBFGS = ProbeConfig(l2s=[1.0, 0.1, 0.01])


def test_the_grid_keeps_one_format_at_full_weight() -> None:
    assert weight_vectors(2) == [(1.0, 1.0), (1.0, 0.5), (1.0, 0.25), (0.5, 1.0), (0.25, 1.0)]
    assert all(max(w) == 1.0 for w in weight_vectors(3)) and len(weight_vectors(3)) == 19


def test_equal_weights_are_the_concatenation_and_valid_picks_the_point() -> None:
    feats, labels = half_informative()
    concat = get_fusion("concat")(feats, labels, "linear", LBFGS, 4)
    result = get_fusion("scaled")(feats, labels, "linear", LBFGS, 4)
    grid = {tuple(g["weights"].values()): g for g in result.info["grid"]}
    assert set(grid) == set(weight_vectors(2))
    assert grid[(1.0, 1.0)]["valid_loss"] == pytest.approx(concat.info["probe"]["valid_loss"])
    chosen = min(result.info["grid"], key=lambda g: g["valid_loss"])  # lbfgs: by valid loss
    assert result.info["weights"] == chosen["weights"]
    assert result.probs.shape == (80, 4) and np.allclose(result.probs.sum(1), 1)


def test_a_noise_format_can_be_weighted_down_to_match_the_informative_one() -> None:
    """A's bits name the class; B is noise of many dimensions. Down-weighting B is in the grid,
    so the chosen point's valid loss is at most the concatenation's."""
    feats, labels = half_informative()
    rng = np.random.default_rng(1)
    noisy = {"A": feats["A"], "B": {s: rng.standard_normal((len(y), 64)).astype(np.float32)
                                    for s, y in labels.items()}}  # fmt: skip
    result = get_fusion("scaled")(noisy, labels, "linear", LBFGS, 4)
    concat = get_fusion("concat")(noisy, labels, "linear", LBFGS, 4)
    assert result.info["probe"]["valid_loss"] <= concat.info["probe"]["valid_loss"] + 1e-9
