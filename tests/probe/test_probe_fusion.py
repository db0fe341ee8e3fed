"""Fusion registry: concat beats each half-informative format; decision-level fusions; errors."""

from __future__ import annotations

import numpy as np
import pytest

from mfclr.config import ProbeConfig
from mfclr.errors import ConfigError, DataError
from mfclr.probe.fusion import (
    FUSIONS,
    FusionResult,
    check_features,
    get_fusion,
    register_fusion,
    simplex_grid,
)

CFG = ProbeConfig(lrs=[1e-2], weight_decays=[0.0], max_epochs=60, patience=15)
N = {"train": 160, "valid": 80, "test": 80}


def half_informative(seed: int = 0):
    """4 classes. Format A (6-d) tells {0,1} from {2,3}; B (4-d) tells {0,2} from {1,3}."""
    rng = np.random.default_rng(seed)
    feats: dict[str, dict[str, np.ndarray]] = {"A": {}, "B": {}}
    labels = {}
    for split, n in N.items():
        y = np.arange(n) % 4
        bit_a, bit_b = (y >= 2).astype(float), (y % 2).astype(float)
        a = rng.standard_normal((n, 6)) * 0.3
        b = rng.standard_normal((n, 4)) * 0.3
        a[:, 0] += 2 * bit_a - 1
        b[:, 0] += 2 * bit_b - 1
        feats["A"][split], feats["B"][split] = a.astype(np.float32), b.astype(np.float32)
        labels[split] = y
    return feats, labels


def _acc(result: FusionResult, labels) -> float:
    return float((result.probs.argmax(1) == labels["test"]).mean())


def test_concat_dim_and_beats_each_single_format() -> None:
    feats, labels = half_informative()
    fused = get_fusion("concat")(feats, labels, "linear", CFG, 4)
    assert fused.info["dim"] == 10 and fused.info["formats"] == ["A", "B"]
    assert fused.probs.shape == (80, 4)
    # A single-format row is concat over that one format (as probe/variants.py builds it).
    singles = {f: get_fusion("concat")({f: feats[f]}, labels, "linear", CFG, 4) for f in "AB"}
    assert singles["A"].info["dim"] == 6 and singles["B"].info["formats"] == ["B"]
    assert _acc(fused, labels) >= 0.95
    for res in singles.values():
        assert _acc(res, labels) <= 0.6  # one bit of two: at most ~50%
    assert fused.info["valid_accuracy"] > max(r.info["valid_accuracy"] for r in singles.values())


def test_concat_uses_a_fixed_format_order() -> None:
    feats, labels = half_informative()
    swapped = {"B": feats["B"], "A": feats["A"]}
    a = get_fusion("concat")(feats, labels, "linear", CFG, 4)
    b = get_fusion("concat")(swapped, labels, "linear", CFG, 4)
    assert np.array_equal(a.probs, b.probs)


@pytest.mark.parametrize("name", ["average", "weighted", "product"])
def test_decision_level_fusions_give_probabilities(name: str) -> None:
    feats, labels = half_informative()
    res = get_fusion(name)(feats, labels, "linear", CFG, 4)
    assert res.probs.shape == (80, 4)
    np.testing.assert_allclose(res.probs.sum(1), 1.0, atol=1e-9)
    assert (res.probs >= 0).all()
    assert set(res.info["probes"]) == {"A", "B"} and res.info["dim"] == 10
    # Each probe knows one bit (<= 50% alone); mixing their probabilities recovers most tracks.
    assert _acc(res, labels) >= 0.75


def test_weighted_puts_weight_on_the_informative_format() -> None:
    feats, labels = half_informative()
    rng = np.random.default_rng(5)
    noise = {s: rng.standard_normal((n, 4)).astype(np.float32) for s, n in N.items()}
    both_a = {"A": {s: np.concatenate([feats["A"][s], feats["B"][s]], 1) for s in N}, "Z": noise}
    # On 80 valid tracks one track decides: with the L-BFGS probe (98.75 % on valid), mixing in
    # the noise format happens to flip one valid track to right, so its weights show nothing;
    # with the Adam probe they show the rule.
    adam = CFG.model_copy(update={"linear_solver": "adam"})
    res = get_fusion("weighted")(both_a, labels, "linear", adam, 4)
    w = res.info["weights"]
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["A"] > w["Z"]
    # Under the default probe the noise format costs nothing on test either.
    mixed = get_fusion("weighted")(both_a, labels, "linear", CFG, 4)
    alone = get_fusion("concat")({"A": both_a["A"]}, labels, "linear", CFG, 4)
    acc = lambda r: (r.probs.argmax(1) == labels["test"]).mean()
    assert mixed.info["weights"]["A"] > 0 and acc(mixed) >= acc(alone) - 0.02


def test_product_is_the_normalised_geometric_mean_of_the_probes() -> None:
    from mfclr.probe.predictor import geometric_mean as _geometric_mean

    p = np.array([[[0.5, 0.5, 0.0]], [[0.9, 0.05, 0.05]]])
    root = np.sqrt([0.5 * 0.9, 0.5 * 0.05])
    np.testing.assert_allclose(_geometric_mean(p)[0, :2], root / root.sum(), atol=1e-5)
    assert _geometric_mean(p)[0, 2] < 1e-6  # a class one format rules out stays out
    feats, labels = half_informative()
    res = get_fusion("product")(feats, labels, "linear", CFG, 4)
    each = [get_fusion("concat")({f: feats[f]}, labels, "linear", CFG, 4).probs for f in "AB"]
    np.testing.assert_allclose(res.probs, _geometric_mean(np.stack(each)), atol=1e-9)


def test_simplex_grid() -> None:
    g = simplex_grid(2)
    assert g.shape == (11, 2) and np.allclose(g.sum(1), 1)
    assert simplex_grid(3).shape == (66, 3)


def test_registry_unknown_name_and_custom_strategy() -> None:
    with pytest.raises(ConfigError, match="unknown fusion 'x'; choose one of average, concat"):
        get_fusion("x")

    @register_fusion("first_only")
    def first_only(features, labels, head, cfg, n_classes, *, device="cpu"):
        first = sorted(features)[0]
        return get_fusion("concat")({first: features[first]}, labels, head, cfg, n_classes)

    try:
        feats, labels = half_informative()
        assert get_fusion("first_only")(feats, labels, "linear", CFG, 4).info["dim"] == 6
        with pytest.raises(ValueError, match="already registered"):
            register_fusion("first_only")(first_only)
    finally:
        FUSIONS.pop("first_only")


def test_feature_checks() -> None:
    feats, labels = half_informative()
    assert check_features(feats, labels) == ["A", "B"]
    with pytest.raises(DataError, match="'B' lack the 'valid' split"):
        check_features({"A": feats["A"], "B": {"train": feats["B"]["train"]}}, labels)
    short = {**feats, "B": {**feats["B"], "test": feats["B"]["test"][:5]}}
    with pytest.raises(DataError, match="'B'/'test' have shape"):
        check_features(short, labels)
    with pytest.raises(DataError, match="'B' lack the 'train' split"):
        check_features({"A": feats["A"], "B": {}}, labels)


def test_decision_fusion_reuses_the_single_format_probes_by_content(monkeypatch) -> None:
    """The weighted rows refit nothing the single-format rows fitted; a change in features or
    settings is a new fit, and a reused fit predicts exactly what a fresh one does."""
    import mfclr.probe.fusion as fusion

    feats, labels = half_informative()
    fits: list[int] = []
    real = fusion.fit_probe
    monkeypatch.setattr(fusion, "fit_probe", lambda *a, **k: fits.append(1) or real(*a, **k))
    monkeypatch.setattr(fusion, "_FITTED", fusion.OrderedDict())
    for f in ("A", "B"):
        get_fusion("concat")({f: feats[f]}, labels, "linear", CFG, 4)
    assert len(fits) == 2
    reused = get_fusion("weighted")(feats, labels, "linear", CFG, 4)
    assert len(fits) == 2
    fusion._FITTED.clear()
    fresh = get_fusion("weighted")(feats, labels, "linear", CFG, 4)
    assert len(fits) == 4
    np.testing.assert_array_equal(reused.probs, fresh.probs)
    get_fusion("weighted")(feats, labels, "linear", CFG.model_copy(update={"lrs": [3e-2]}), 4)
    assert len(fits) == 6
    shifted = {f: {s: x + 1.0 for s, x in feats[f].items()} for f in feats}
    get_fusion("weighted")(shifted, labels, "linear", CFG, 4)
    assert len(fits) == 8
