"""fit_probe: learns separable data, chooses settings on valid only, deterministic, standardises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfclr.config import ProbeConfig
from mfclr.errors import ConfigError, DataError
from mfclr.probe.fit import fit_probe

# The Adam path (the MLP head's, and the linear head's with linear_solver adam); LBFGS below.
CFG = ProbeConfig(
    lrs=[1e-2], weight_decays=[0.0], max_epochs=80, patience=15, hidden_dim=32,
    linear_solver="adam",
)  # fmt: skip


def blobs(n: int, seed: int, d: int = 16, c: int = 4, sep: float = 4.0):
    """Gaussian blobs: class k centred at sep * e_k (n, d) float32, labels (n,)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = rng.standard_normal((n, d)) + sep * np.eye(c, d)[y]
    return x.astype(np.float32), y


def _acc(probe, x, y) -> float:
    return float((probe.predict_proba(x).argmax(1) == y).mean())


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_separable_blobs_are_learned(head: str) -> None:
    (x, y), (vx, vy), (tx, ty) = blobs(160, 0), blobs(80, 1), blobs(80, 2)
    probe = fit_probe(x, y, vx, vy, head=head, n_classes=4, cfg=CFG)
    assert probe.info["valid_accuracy"] >= 0.95
    assert _acc(probe, tx, ty) >= 0.95
    probs = probe.predict_proba(tx)
    assert probs.shape == (80, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    # The kept weights are the best-on-valid ones reported in info.
    assert _acc(probe, vx, vy) == pytest.approx(probe.info["valid_accuracy"])


def test_grid_point_is_chosen_by_valid_not_by_train() -> None:
    """Valid labels = what the untrained head predicts. A near-zero lr keeps the head at its
    (shared, seeded) init, so it wins on valid even though lr=1e-2 fits train far better."""
    (x, y), (vx, _), (tx, ty) = blobs(160, 0), blobs(80, 1), blobs(80, 2)
    frozen_cfg = CFG.model_copy(update={"lrs": [1e-9], "max_epochs": 1})
    init_pred = fit_probe(x, y, vx, blobs(80, 1)[1], head="linear", n_classes=4, cfg=frozen_cfg)
    vy_init = init_pred.predict_proba(vx).argmax(1)
    assert (vy_init != blobs(80, 1)[1]).mean() > 0.3  # valid really disagrees with the truth

    cfg = CFG.model_copy(update={"lrs": [1e-2, 1e-9]})
    probe = fit_probe(x, y, vx, vy_init, head="linear", n_classes=4, cfg=cfg)
    grid = {g["lr"]: g for g in probe.info["grid"]}
    assert probe.info["lr"] == 1e-9
    assert grid[1e-9]["valid_accuracy"] > grid[1e-2]["valid_accuracy"]
    assert _acc(probe, tx, ty) < 0.7  # the truth (test) would have preferred lr=1e-2


def test_grid_ties_in_accuracy_go_to_lower_valid_loss() -> None:
    (x, y), (vx, vy) = blobs(160, 0, sep=8.0), blobs(80, 1, sep=8.0)
    cfg = CFG.model_copy(update={"weight_decays": [0.0, 0.3]})
    probe = fit_probe(x, y, vx, vy, head="linear", n_classes=4, cfg=cfg)
    g0, g1 = probe.info["grid"]
    assert g0["valid_accuracy"] == g1["valid_accuracy"] == 1.0
    best = min((g0, g1), key=lambda g: g["valid_loss"])
    assert probe.info["weight_decay"] == best["weight_decay"]


def test_select_loss_keeps_the_lowest_valid_loss_epoch_and_grid_point() -> None:
    # Overlapping blobs: later epochs overfit, so the lowest-loss epoch is an early one.
    (x, y), (vx, vy) = blobs(60, 0, d=32, sep=1.0), blobs(80, 1, d=32, sep=1.0)
    cfg = CFG.model_copy(update={"select": "loss", "lrs": [1e-2, 1e-3], "max_epochs": 60})
    probe = fit_probe(x, y, vx, vy, head="linear", n_classes=4, cfg=cfg)
    best = min(probe.info["grid"], key=lambda g: g["valid_loss"])
    assert probe.info["lr"] == best["lr"] and probe.info["valid_loss"] == best["valid_loss"]
    # The kept weights are that epoch's: their valid loss is the reported one.
    logp = np.log(probe.predict_proba(vx)[np.arange(len(vy)), vy])
    assert -logp.mean() == pytest.approx(probe.info["valid_loss"], rel=1e-4)
    by_acc = fit_probe(x, y, vx, vy, head="linear", n_classes=4, cfg=cfg.model_copy(
        update={"select": "accuracy"}))  # fmt: skip
    assert by_acc.info["valid_loss"] >= probe.info["valid_loss"]


def test_deterministic_and_global_rng_untouched() -> None:
    (x, y), (vx, vy), (tx, _) = blobs(120, 0, sep=1.5), blobs(60, 1, sep=1.5), blobs(60, 2)
    state = torch.get_rng_state()
    a = fit_probe(x, y, vx, vy, head="mlp", n_classes=4, cfg=CFG)
    b = fit_probe(x, y, vx, vy, head="mlp", n_classes=4, cfg=CFG)
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(a.predict_proba(tx), b.predict_proba(tx))
    assert a.info == b.info


def test_standardisation_applied_at_prediction_for_huge_scale_features() -> None:
    (x, y), (vx, vy), (tx, ty) = blobs(160, 0), blobs(80, 1), blobs(80, 2)
    scale = lambda a: (a.astype(np.float64) * 1e6 + 1e7).astype(np.float32)
    small = fit_probe(x, y, vx, vy, head="linear", n_classes=4, cfg=CFG)
    huge = fit_probe(scale(x), y, scale(vx), vy, head="linear", n_classes=4, cfg=CFG)
    assert _acc(huge, scale(tx), ty) >= 0.95
    agree = huge.predict_proba(scale(tx)).argmax(1) == small.predict_proba(tx).argmax(1)
    assert agree.mean() >= 0.97


def test_constant_feature_column_is_harmless() -> None:
    (x, y), (vx, vy), (tx, ty) = blobs(160, 0), blobs(80, 1), blobs(80, 2)
    x[:, 5] = vx[:, 5] = tx[:, 5] = 3.25
    probe = fit_probe(x, y, vx, vy, head="linear", n_classes=4, cfg=CFG)
    assert np.isfinite(probe.predict_proba(tx)).all() and _acc(probe, tx, ty) >= 0.95


def test_bad_input_errors() -> None:
    (x, y), (vx, vy) = blobs(40, 0), blobs(20, 1)
    fit = lambda **kw: fit_probe(
        kw.get("x", x), kw.get("y", y), kw.get("vx", vx), kw.get("vy", vy),
        head=kw.get("head", "linear"), n_classes=4, cfg=kw.get("cfg", CFG),
    )  # fmt: skip
    with pytest.raises(DataError, match="valid split is empty"):
        fit(vx=vx[:0], vy=vy[:0])
    with pytest.raises(DataError, match=r"labels must lie in \[0, 4\)"):
        fit(y=y + 1)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fit(x=bad)
    with pytest.raises(DataError, match="valid features have 15 dims"):
        fit(vx=vx[:, 1:])
    with pytest.raises(ConfigError, match="probe.lrs"):
        fit(cfg=CFG.model_copy(update={"lrs": []}))
    with pytest.raises(ConfigError, match="unknown probe head 'svm'"):
        fit(head="svm")
    probe = fit(cfg=CFG.model_copy(update={"max_epochs": 2}))
    with pytest.raises(DataError, match="fitted on 16"):
        probe.predict_proba(vx[:, :8])


LBFGS = CFG.model_copy(update={"linear_solver": "lbfgs", "l2s": [1e-2]})


def test_lbfgs_linear_probe_is_scikit_learns_logistic_regression() -> None:
    """The lbfgs solver minimises mean cross-entropy + 0.5 * l2 * |W|^2, which is scikit-learn's
    LogisticRegression with C = 1 / (l2 * n) on the same standardised features."""
    from sklearn.linear_model import LogisticRegression

    (x, y), (vx, vy), (tx, _) = blobs(200, 0, sep=1.5), blobs(80, 1, sep=1.5), blobs(400, 2)
    probe = fit_probe(x, y, vx, vy, head="linear", n_classes=4, cfg=LBFGS)
    std = probe.standardizer
    ref = LogisticRegression(C=1 / (1e-2 * len(x)), tol=1e-8, max_iter=5000).fit(std(x), y)
    linear = probe.model.net[0]
    np.testing.assert_allclose(
        linear.weight.detach().numpy() - linear.weight.detach().numpy().mean(0),
        ref.coef_ - ref.coef_.mean(0),  # softmax weights are defined up to a shared shift
        atol=2e-3,
    )
    agree = probe.predict_proba(tx).argmax(1) == ref.predict(std(tx))
    assert agree.mean() >= 0.99
    assert probe.info["solver"] == "lbfgs" and probe.info["l2"] == 1e-2


def test_lbfgs_picks_its_l2_on_valid_and_leaves_the_mlp_head_on_adam() -> None:
    (x, y), (vx, vy) = blobs(60, 0, d=32, sep=1.0), blobs(80, 1, d=32, sep=1.0)
    cfg = LBFGS.model_copy(update={"l2s": [1e-4, 1e-2, 1.0]})
    probe = fit_probe(x, y, vx, vy, head="linear", n_classes=4, cfg=cfg)
    assert [g["l2"] for g in probe.info["grid"]] == [1e-4, 1e-2, 1.0]  # as listed
    # select "auto" (the default): the lowest valid loss for L-BFGS fits.
    assert cfg.select == "auto"
    assert probe.info["valid_loss"] == min(g["valid_loss"] for g in probe.info["grid"])
    assert _acc(probe, vx, vy) == pytest.approx(probe.info["valid_accuracy"])
    by_acc = fit_probe(x, y, vx, vy, head="linear", n_classes=4,
                       cfg=cfg.model_copy(update={"select": "accuracy"}))  # fmt: skip
    best = max(by_acc.info["grid"], key=lambda g: (g["valid_accuracy"], -g["valid_loss"]))
    assert by_acc.info["l2"] == best["l2"]
    # A stronger penalty gives smaller weights: the grid points really differ.
    sizes = [fit_probe(x, y, vx, vy, head="linear", n_classes=4,
                       cfg=cfg.model_copy(update={"l2s": [l2]})).model.net[0].weight.norm()
             for l2 in (1e-4, 1.0)]  # fmt: skip
    assert sizes[0] > 3 * sizes[1]
    mlp = fit_probe(x, y, vx, vy, head="mlp", n_classes=4, cfg=cfg)
    adam = fit_probe(x, y, vx, vy, head="mlp", n_classes=4, cfg=CFG)
    assert "lr" in mlp.info and mlp.info["grid"] == adam.info["grid"]


def test_lbfgs_rejects_a_zero_penalty() -> None:
    (x, y), (vx, vy) = blobs(40, 0), blobs(20, 1)
    with pytest.raises(ConfigError, match=r"probe.l2s must be .* > 0"):
        fit_probe(x, y, vx, vy, head="linear", n_classes=4,
                  cfg=LBFGS.model_copy(update={"l2s": [0.0, 1e-2]}))  # fmt: skip


def test_a_zero_penalty_is_refused_when_the_config_is_read() -> None:
    # Before any embedding pass: the config edge refuses it, not the probe stage at the end.
    with pytest.raises(ValueError, match=r"probe.l2s must be .* > 0"):
        ProbeConfig(l2s=[0.0])
    assert ProbeConfig(l2s=[0.0], linear_solver="adam").l2s == [0.0]  # unused by Adam


def test_lbfgs_path_stops_once_the_valid_loss_has_risen_twice() -> None:
    (x, y), (vx, vy) = blobs(60, 0, d=32, sep=1.0), blobs(80, 1, d=32, sep=1.0)
    l2s = [3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]
    cfg = LBFGS.model_copy(update={"l2s": l2s})
    probe = fit_probe(x, y, vx, vy, head="linear", n_classes=4, cfg=cfg)
    losses = [g["valid_loss"] for g in probe.info["grid"]]
    best = losses.index(min(losses))
    assert len(losses) == best + 3 < len(l2s)  # two fits past the best, then it stopped
    assert losses[best + 1] > losses[best] and losses[best + 2] > losses[best]
    # The full path picks the same l2: the skipped, weaker fits are all worse on valid loss.
    full = fit_probe(x, y, vx, vy, head="linear", n_classes=4,
                     cfg=cfg.model_copy(update={"l2s": l2s[::-1]}))  # fmt: skip
    assert len(full.info["grid"]) == len(l2s) and full.info["l2"] == probe.info["l2"]
