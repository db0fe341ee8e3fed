"""`gated` fusion: a learned layer over frozen embeddings beats each half-informative format,
its gate is a distribution over formats that favours the informative one, and it is seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfclr.errors import ConfigError
from mfclr.probe.fusion import FUSIONS, GatedFusion, get_fusion
from tests.probe.test_probe_fusion import CFG, N, half_informative

# A narrow common width keeps the learned layer (and the test) small.
GCFG = CFG.model_copy(update={"hidden_dim": 32})


def _acc(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean())


def test_gated_beats_each_single_format_and_reports_gates() -> None:
    feats, labels = half_informative()
    res = get_fusion("gated")(feats, labels, "linear", GCFG, 4)
    assert "gated" in FUSIONS
    assert res.probs.shape == (N["test"], 4)
    np.testing.assert_allclose(res.probs.sum(1), 1.0, atol=1e-9)
    info = res.info
    assert info["fusion"] == "gated" and info["formats"] == ["A", "B"] and info["dim"] == 10
    assert info["proj_dim"] == 32 and info["probe"]["head"] == "linear"
    for key in ("gate_weights", "valid_gate_weights"):
        gates = info[key]
        assert set(gates) == {"A", "B"} and sum(gates.values()) == pytest.approx(1.0)
        assert all(0.0 < w < 1.0 for w in gates.values())
    singles = [get_fusion("concat")({f: feats[f]}, labels, "linear", CFG, 4) for f in "AB"]
    # Each format alone knows one bit of two (<= ~50%); the learned fusion recovers both.
    assert _acc(res.probs, labels["test"]) >= 0.9
    assert all(_acc(s.probs, labels["test"]) <= 0.6 for s in singles)
    assert info["valid_accuracy"] > max(s.info["valid_accuracy"] for s in singles)


def test_noise_format_gets_the_lower_gate_weight() -> None:
    feats, labels = half_informative()
    rng = np.random.default_rng(5)
    noise = {s: rng.standard_normal((n, 4)).astype(np.float32) for s, n in N.items()}
    both = {"A": {s: np.concatenate([feats["A"][s], feats["B"][s]], 1) for s in N}, "Z": noise}
    res = get_fusion("gated")(both, labels, "linear", GCFG, 4)
    assert res.info["gate_weights"]["A"] > res.info["gate_weights"]["Z"]
    assert res.info["valid_gate_weights"]["A"] > res.info["valid_gate_weights"]["Z"]
    assert _acc(res.probs, labels["test"]) >= 0.9


def test_gated_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    feats, labels = half_informative(seed=1)
    cfg = CFG.model_copy(update={"max_epochs": 15, "hidden_dim": 16})
    state = torch.get_rng_state()
    a = get_fusion("gated")(feats, labels, "mlp", cfg, 4)
    b = get_fusion("gated")(feats, labels, "mlp", cfg, 4)
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(a.probs, b.probs) and a.info == b.info
    # Formats are fused in sorted order whatever order the dict has.
    c = get_fusion("gated")({"B": feats["B"], "A": feats["A"]}, labels, "mlp", cfg, 4)
    assert np.array_equal(a.probs, c.probs)


def test_gated_module_shapes_gradients_and_uniform_start() -> None:
    torch.manual_seed(0)
    model = GatedFusion([6, 4], n_classes=3, head="mlp", proj_dim=8, hidden_dim=5)
    x = torch.randn(7, 10)
    gates = model.gate_weights(x)
    assert gates.shape == (7, 2)
    torch.testing.assert_close(gates, torch.full((7, 2), 0.5))  # zero-initialised gate
    logits = model(x)
    assert logits.shape == (7, 3)
    logits.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_gated_rejects_an_unknown_head() -> None:
    feats, labels = half_informative()
    with pytest.raises(ConfigError, match="unknown probe head 'svm'"):
        get_fusion("gated")(feats, labels, "svm", GCFG, 4)
