"""Probe fitting: a linear or MLP head on frozen embeddings, tuned on the valid split only.

Probes are learning-rate sensitive, so each (lr, weight_decay) grid point is trained with Adam
and early stopping on valid, and the grid point with the best valid accuracy (ties: lower valid
loss, then grid order) wins. With `probe.linear_solver: lbfgs` (the default) the linear head is
instead multinomial logistic regression: the L2-regularised cross-entropy solved to convergence
by full-batch L-BFGS, one fit per `probe.l2s` value, the lowest valid loss picking the value
(`probe.select`, see `selection`). The test split never enters this module.

`fit_probe` fits a linear/MLP head; `fit_model` fits any module over the same standardised
features with the same grid and loop (the `gated` fusion uses it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfclr.config import ProbeConfig
from mfclr.errors import ConfigError, DataError
from mfclr.heads import ProbeHead


def make_head(kind: str, in_dim: int, n_classes: int, hidden_dim: int) -> nn.Module:
    """A probe head (n, in_dim) -> (n, n_classes) logits (`mfclr.heads.ProbeHead`)."""
    return ProbeHead(kind, in_dim, n_classes, hidden_dim=hidden_dim)


# ----------------------------------------------------------------------------- standardisation


@dataclass(frozen=True)
class Standardizer:
    """Per-feature (x - mean) / std with train statistics; `mean`, `std` are (D,) float64."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x64 = np.asarray(x, dtype=np.float64)
        mean = x64.mean(axis=0)
        std = x64.std(axis=0)
        # A (near-)constant column would otherwise blow rounding noise up to unit variance.
        std = np.where(std > 1e-7 * np.abs(mean) + 1e-12, std, 1.0)
        return cls(mean=mean, std=std)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(n, D) -> (n, D) float32."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.std).astype(np.float32)


# ----------------------------------------------------------------------------- fitted probe


@dataclass
class FittedProbe:
    """A trained head plus the train-split standardisation it expects.

    `info`: lr, weight_decay, best_epoch (L-BFGS: solver, l2, iterations), valid_accuracy,
    valid_loss, head, dim, grid (one entry per grid point with its own valid scores).
    `spec`: what rebuilds `model` for its saved weights (a saved classifier, probe/bundle.py):
    {"module": "head" | "gated", "kwargs": {...}}; empty when unknown.
    """

    model: nn.Module
    standardizer: Standardizer
    info: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n, C) float64 (rows sum to 1) for raw features x (n, D)."""
        _check_features(x, "features", self.standardizer.mean.shape[0])
        dev = next(self.model.parameters()).device
        self.model.eval()
        xt = torch.from_numpy(self.standardizer(x)).to(dev)
        logits = self.model(xt).double()
        return torch.softmax(logits, dim=1).cpu().numpy()


# ----------------------------------------------------------------------------- checks


def _check_features(x: np.ndarray, what: str, dim: int | None = None) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        shape = getattr(x, "shape", None)
        raise DataError(f"{what} must be a 2-d array (n, D), got shape {shape}")
    if dim is not None and x.shape[1] != dim:
        raise DataError(f"{what} have {x.shape[1]} dims but the probe was fitted on {dim}")
    if not np.isfinite(x).all():
        raise DataError(f"{what} contain NaN or inf; re-extract the embeddings")


def _check_split(x: np.ndarray, y: np.ndarray, name: str, n_classes: int) -> None:
    _check_features(x, f"{name} features")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{name} labels have shape {y.shape}, expected ({len(x)},)")
    if len(y) == 0:
        raise DataError(
            f"the {name} split is empty; the probe needs train and valid tracks "
            "(raise data.probe.valid_fraction or add tracks)"
        )
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"{name} labels must lie in [0, {n_classes}), got {y.min()}..{y.max()}")


def _check_grid(cfg: ProbeConfig, solver: str = "adam") -> None:
    # ProbeConfig types the grid but does not forbid an empty list or a zero learning rate.
    if solver == "lbfgs":
        # ProbeConfig refuses these too, but a config made by model_copy(update=...) skips its
        # validators, and l2 = 0 has no optimum on separable data.
        if not cfg.l2s or min(cfg.l2s) <= 0:
            raise ConfigError(f"probe.l2s must be a non-empty list of numbers > 0, got {cfg.l2s}")
        return
    if not cfg.lrs or min(cfg.lrs) <= 0:
        raise ConfigError(f"probe.lrs must be a non-empty list of positive numbers, got {cfg.lrs}")
    if not cfg.weight_decays or min(cfg.weight_decays) < 0:
        raise ConfigError(
            f"probe.weight_decays must be a non-empty list of numbers >= 0, got {cfg.weight_decays}"
        )


# ----------------------------------------------------------------------------- training


@dataclass
class _Run:
    """The best-on-valid state of one grid point (`epoch`: L-BFGS iterations for lbfgs)."""

    state: dict[str, torch.Tensor]
    epoch: int
    accuracy: float
    loss: float


def selection(cfg: ProbeConfig, solver: str) -> str:
    """What valid picks by: probe.select, where "auto" is the loss for L-BFGS (a converged fit's
    valid log-loss is smooth in l2, accuracy on a few hundred tracks moves by single tracks) and
    accuracy for Adam (the valid loss would stop its early stopping too soon)."""
    if cfg.select != "auto":
        return cfg.select
    return "loss" if solver == "lbfgs" else "accuracy"


def _rank(select: str, accuracy: float, loss: float) -> tuple[float, ...]:
    """Larger is better: (accuracy, -loss), or (-loss,) with select = loss."""
    return (-loss,) if select == "loss" else (accuracy, -loss)


def _train_one(
    x: torch.Tensor,
    y: torch.Tensor,
    vx: torch.Tensor,
    vy: torch.Tensor,
    model: nn.Module,
    lr: float,
    weight_decay: float,
    cfg: ProbeConfig,
) -> _Run:
    """Adam with mini-batches of cfg.batch_size; early stopping on (valid acc, -valid loss)."""
    # The fused kernel cuts the per-step overhead that dominates small probes (~20% on CPU).
    fused = x.device.type in ("cpu", "cuda")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused)
    gen = torch.Generator().manual_seed(cfg.seed)
    n, bs = len(x), min(cfg.batch_size, len(x))
    best: _Run | None = None
    since_best = 0
    select = selection(cfg, "adam")
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen).to(x.device)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(vx)
            v_loss = F.cross_entropy(logits, vy).item()
            v_acc = (logits.argmax(1) == vy).double().mean().item()
        if best is None or _rank(select, v_acc, v_loss) > _rank(select, best.accuracy, best.loss):
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best, since_best = _Run(state, epoch, v_acc, v_loss), 0
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    assert best is not None  # max_epochs >= 1
    return best


def _train_lbfgs(
    x: torch.Tensor,
    y: torch.Tensor,
    vx: torch.Tensor,
    vy: torch.Tensor,
    model: nn.Module,
    l2: float,
    cfg: ProbeConfig,
) -> _Run:
    """Full-batch L-BFGS on mean cross-entropy + 0.5 * l2 * |weights|^2 (biases unpenalised, as
    in scikit-learn's LogisticRegression); `epoch` reports the iterations used."""
    weights = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    opt = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=cfg.lbfgs_max_iter, history_size=20,
        tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe",
    )  # fmt: skip
    model.train()

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y) + 0.5 * l2 * sum(w.square().sum() for w in weights)
        loss.backward()
        return loss

    opt.step(closure)
    model.eval()
    with torch.no_grad():
        logits = model(vx)
        v_loss = F.cross_entropy(logits, vy).item()
        v_acc = (logits.argmax(1) == vy).double().mean().item()
    iters = int(opt.state[next(model.parameters())].get("n_iter", 0))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return _Run(state, iters, v_acc, v_loss)


PATH_PATIENCE = 2


def _fit_point(
    data: tuple[torch.Tensor, ...],
    model: nn.Module,
    point: dict[str, Any],
    cfg: ProbeConfig,
    warm: dict[str, torch.Tensor] | None,
) -> _Run:
    """Fit one grid point; `data` = (x, y, valid x, valid y)."""
    if point.get("solver") == "lbfgs":
        # A convex problem has one optimum whatever the start: starting from the previous
        # (more regularised) solution only saves iterations, 2-3x on a demo's probe.
        if warm is not None:
            model.load_state_dict(warm)
        return _train_lbfgs(*data, model, point["l2"], cfg)
    return _train_one(*data, model, point["lr"], point["weight_decay"], cfg)


def _grid_points(cfg: ProbeConfig, solver: str) -> list[dict[str, Any]]:
    if solver == "lbfgs":
        return [{"solver": "lbfgs", "l2": l2} for l2 in cfg.l2s]
    return [
        {"lr": lr, "weight_decay": wd} for lr, wd in itertools.product(cfg.lrs, cfg.weight_decays)
    ]


def fit_grid(
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    build: Callable[[], nn.Module],
    cfg: ProbeConfig,
    device: str | torch.device = "cpu",
    solver: str = "adam",
) -> tuple[nn.Module, dict[str, Any]]:
    """Train `build()` once per cfg.lrs x cfg.weight_decays grid point (solver "adam") or per
    cfg.l2s value (solver "lbfgs", see `_train_lbfgs`); keep the best on valid.

    `train`/`valid`: (standardised float32 features (n, D), int labels (n,)). Every Adam point
    starts from the same seeded init and is early-stopped on valid; the winner is picked by
    `selection` (ties: grid order). Returns it in eval mode and info: lr, weight_decay,
    best_epoch (lbfgs: solver, l2, iterations), valid_accuracy, valid_loss, grid (the fitted
    points: an lbfgs path by loss stops PATH_PATIENCE points past its best). Global RNG untouched.
    """
    _check_grid(cfg, solver)
    dev = torch.device(device)
    x, vx = (
        torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(dev) for a in (train[0], valid[0])
    )
    y, vy = (torch.from_numpy(np.asarray(a, dtype=np.int64)).to(dev) for a in (train[1], valid[1]))
    grid: list[dict[str, Any]] = []
    best: tuple[tuple[float, ...], _Run, dict[str, Any], nn.Module] | None = None
    warm: dict[str, torch.Tensor] | None = None
    steps_key = "iterations" if solver == "lbfgs" else "best_epoch"
    select = selection(cfg, solver)
    # Along a path of ever weaker penalties the valid loss falls, then rises; once it has risen
    # PATH_PATIENCE times past its best the weaker (and slowest: most iterations) fits cannot win.
    on_path = solver == "lbfgs" and select == "loss" and cfg.l2s == sorted(cfg.l2s, reverse=True)
    since_best = 0
    for point in _grid_points(cfg, solver):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # same init for every grid point: only lr/wd differ
            model = build().to(dev)
        run = _fit_point((x, y, vx, vy), model, point, cfg, warm)
        warm = run.state if solver == "lbfgs" else None
        grid.append(
            point | {steps_key: run.epoch, "valid_accuracy": run.accuracy, "valid_loss": run.loss}
        )
        key = _rank(select, run.accuracy, run.loss)
        if best is None or key > best[0]:
            best, since_best = (key, run, point, model), 0
        else:
            since_best += 1
            if on_path and since_best >= PATH_PATIENCE:
                break
    assert best is not None  # _check_grid
    _, run, point, final = best
    final.load_state_dict(run.state)
    final.eval()
    info = {
        **point,
        steps_key: run.epoch,
        "valid_accuracy": run.accuracy,
        "valid_loss": run.loss,
        "grid": grid,
    }
    return final, info


def fit_model(
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
    *,
    build: Callable[[], nn.Module],
    n_classes: int,
    cfg: ProbeConfig,
    device: str | torch.device = "cpu",
    solver: str = "adam",
    scale: np.ndarray | None = None,
) -> FittedProbe:
    """Check the splits, standardise with train statistics (then multiply column j by
    `scale[j]`: a weight the penalty sees as 1 / scale^2), then `fit_grid` the model that
    `build()` makes for (n, D) standardised inputs -> (n, n_classes) logits."""
    _check_split(train_x, train_y, "train", n_classes)
    _check_split(valid_x, valid_y, "valid", n_classes)
    if valid_x.shape[1] != train_x.shape[1]:
        raise DataError(f"valid features have {valid_x.shape[1]} dims, train {train_x.shape[1]}")
    std = Standardizer.fit(train_x)
    if scale is not None:  # folded into the standardiser: prediction needs nothing else
        std = Standardizer(mean=std.mean, std=std.std / np.asarray(scale, dtype=np.float64))
    model, info = fit_grid(
        (std(train_x), train_y), (std(valid_x), valid_y), build, cfg, device, solver
    )
    return FittedProbe(model=model, standardizer=std, info=info)


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
    *,
    head: str,
    n_classes: int,
    cfg: ProbeConfig,
    device: str | torch.device = "cpu",
    scale: np.ndarray | None = None,
) -> FittedProbe:
    """Fit a probe head on train (n_train, D), choosing lr x weight_decay on valid (n_valid, D);
    `scale` (D,) weights the standardised columns (see `fit_model`).

    Labels are int class indices in [0, n_classes). Deterministic for a given cfg.seed; the
    global torch RNG state is left untouched.
    """
    kwargs = {"kind": head, "in_dim": int(train_x.shape[1]), "n_classes": n_classes,
              "hidden_dim": cfg.hidden_dim}  # fmt: skip
    build = lambda: ProbeHead(**kwargs)
    solver = cfg.linear_solver if head == "linear" else "adam"
    probe = fit_model(
        train_x, train_y, valid_x, valid_y,
        build=build, n_classes=n_classes, cfg=cfg, device=device, solver=solver, scale=scale,
    )  # fmt: skip
    probe.info = {"head": head, "dim": int(train_x.shape[1]), **probe.info}
    probe.spec = {"module": "head", "kwargs": kwargs}
    return probe
