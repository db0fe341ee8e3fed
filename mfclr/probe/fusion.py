"""Fusion strategies: how embeddings of several input formats become one test prediction.

A strategy is a plain function registered by name in `FUSIONS`:

    fn(features, labels, head, cfg, n_classes, *, device="cpu") -> FusionResult

`features` maps format -> split -> (n, D) embeddings (rows aligned across formats: row i is the
same track everywhere), `labels` maps split -> (n,) int labels. Every choice a strategy makes
(probe settings, fusion weights) is made on "train"/"valid"; "test" is only predicted.

- `concat`   feature level: formats concatenated in sorted format order, one probe.
- `average`  decision level: one probe per format, mean of their class probabilities.
- `weighted` decision level: one probe per format, weighted mean with weights tuned on valid.
- `product`  decision level: one probe per format, the normalised product of their class
             probabilities (a geometric mean: a class both formats find likely wins).
- `gated`    model level: a small learned layer over the frozen embeddings (per-format projection,
             a softmax gate over formats, then the head), trained like a probe; its info reports
             the mean gate weight of each format on test.

Each built-in strategy returns what it fitted as a `FusionPredictor` (predictor.py) and computes
its test probabilities through it: a saved classifier (bundle.py) predicts through the same one.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mfclr.config import SPLITS, ProbeConfig
from mfclr.errors import ConfigError, DataError
from mfclr.probe.fit import FittedProbe, fit_model, fit_probe, make_head
from mfclr.probe.predictor import FusionPredictor, each_format

Features = dict[str, dict[str, np.ndarray]]
Labels = dict[str, np.ndarray]
# Step of the simplex grid the `weighted` fusion searches (0.1: 11 points for 2 formats).
WEIGHT_STEP = 0.1


@dataclass
class FusionResult:
    """`probs`: test-split class probabilities (n_test, C), rows sum to 1. `info`: JSON-able
    description (fusion, formats, dim, valid_accuracy, probe settings, weights, ...).
    `predictor`: what was fitted, which computed `probs` and predicts new tracks (None for a
    strategy registered elsewhere that does not say)."""

    probs: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    predictor: FusionPredictor | None = None


class FusionFn(Protocol):
    def __call__(
        self,
        features: Features,
        labels: Labels,
        head: str,
        cfg: ProbeConfig,
        n_classes: int,
        *,
        device: str = "cpu",
    ) -> FusionResult: ...


FUSIONS: dict[str, FusionFn] = {}


def register_fusion(name: str) -> Callable[[FusionFn], FusionFn]:
    """Decorator: add a strategy to FUSIONS under `name` (a second use of a name is a bug)."""

    def deco(fn: FusionFn) -> FusionFn:
        if name in FUSIONS:
            raise ValueError(f"fusion '{name}' is already registered")
        FUSIONS[name] = fn
        return fn

    return deco


def get_fusion(name: str) -> FusionFn:
    if name not in FUSIONS:
        raise ConfigError(f"unknown fusion '{name}'; choose one of {', '.join(sorted(FUSIONS))}")
    return FUSIONS[name]


# ----------------------------------------------------------------------------- checks


def check_features(features: Features, labels: Labels) -> list[str]:
    """Validate shapes; return the formats in the fixed (sorted) order every fusion uses."""
    if not features:
        raise DataError("no embeddings to probe: features is empty")
    for split in SPLITS:
        if split not in labels:
            raise DataError(f"labels lack the '{split}' split; the probe needs {', '.join(SPLITS)}")
    for fmt, by_split in features.items():
        for split in SPLITS:
            x = by_split.get(split)
            if x is None:
                raise DataError(f"embeddings of '{fmt}' lack the '{split}' split")
            if x.ndim != 2 or len(x) != len(labels[split]):
                raise DataError(
                    f"embeddings of '{fmt}'/'{split}' have shape {x.shape}, "
                    f"expected ({len(labels[split])}, D) to match its labels"
                )
    return sorted(features)


# Fitted probes by content: a table's decision-level rows refit exactly the probes its
# single-format rows already fitted (same features, labels and settings; the fit is seeded), and
# on a demo that refit is a quarter of the probing time.
_FITTED: OrderedDict[str, FittedProbe] = OrderedDict()
_FITTED_MAX = 32


def _fit_key(x: dict[str, np.ndarray], labels: Labels, head: str, cfg: ProbeConfig, n: int,
             device: str, scale: np.ndarray | None = None) -> str:  # fmt: skip
    h = hashlib.blake2b(f"{head}|{n}|{device}|{cfg.model_dump_json()}".encode(), digest_size=16)
    if scale is not None:
        h.update(np.ascontiguousarray(scale, dtype=np.float64).data)
    for split in ("train", "valid"):
        for a in (x[split], labels[split]):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.data)
    return h.hexdigest()


def _probe(
    x: dict[str, np.ndarray], labels: Labels, head: str, cfg: ProbeConfig, n: int, device: str,
    scale: np.ndarray | None = None,
) -> FittedProbe:  # fmt: skip
    key = _fit_key(x, labels, head, cfg, n, device, scale)
    if key in _FITTED:
        _FITTED.move_to_end(key)
        return _FITTED[key]
    probe = fit_probe(
        x["train"], labels["train"], x["valid"], labels["valid"],
        head=head, n_classes=n, cfg=cfg, device=device, scale=scale,
    )  # fmt: skip
    _FITTED[key] = probe
    while len(_FITTED) > _FITTED_MAX:
        _FITTED.popitem(last=False)
    return probe


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == y).mean())


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())


# ----------------------------------------------------------------------------- strategies


@register_fusion("concat")
def concat(
    features: Features,
    labels: Labels,
    head: str,
    cfg: ProbeConfig,
    n_classes: int,
    *,
    device: str = "cpu",
) -> FusionResult:
    """Feature level: concatenate formats (sorted order) -> (n, sum of D); one probe."""
    formats = check_features(features, labels)
    x = {s: np.concatenate([features[f][s] for f in formats], axis=1) for s in SPLITS}
    probe = _probe(x, labels, head, cfg, n_classes, device)
    info = {
        "fusion": "concat",
        "formats": formats,
        "dim": int(x["train"].shape[1]),
        "valid_accuracy": probe.info["valid_accuracy"],
        "probe": probe.info,
    }
    predictor = FusionPredictor("concat", formats, [probe])
    test = predictor.predict_proba({f: features[f]["test"] for f in formats})
    return FusionResult(probs=test, info=info, predictor=predictor)


def _per_format(
    features: Features, labels: Labels, head: str, cfg: ProbeConfig, n: int, device: str
) -> tuple[list[str], list[FittedProbe]]:
    formats = check_features(features, labels)
    return formats, [_probe(features[f], labels, head, cfg, n, device) for f in formats]


def _split(features: Features, split: str) -> dict[str, np.ndarray]:
    return {f: by_split[split] for f, by_split in features.items()}


def _decision_info(
    name: str, formats: list[str], features: Features, probes: list[FittedProbe]
) -> dict[str, Any]:
    return {
        "fusion": name,
        "formats": formats,
        "dim": int(sum(features[f]["train"].shape[1] for f in formats)),
        "probes": {f: p.info for f, p in zip(formats, probes, strict=True)},
    }


def _pooling_fusion(name: str, doc: str) -> FusionFn:
    """Register a decision-level fusion: one probe per format, their (K, n, C) probabilities
    pooled to (n, C) by `FusionPredictor.pool`."""

    def fusion(
        features: Features,
        labels: Labels,
        head: str,
        cfg: ProbeConfig,
        n_classes: int,
        *,
        device: str = "cpu",
    ) -> FusionResult:
        formats, probes = _per_format(features, labels, head, cfg, n_classes, device)
        predictor = FusionPredictor(name, formats, probes)
        valid = predictor.predict_proba(_split(features, "valid"))
        test = predictor.predict_proba(_split(features, "test"))
        info = _decision_info(name, formats, features, probes)
        info["valid_accuracy"] = _accuracy(valid, labels["valid"])
        return FusionResult(probs=test, info=info, predictor=predictor)

    fusion.__doc__ = doc
    return register_fusion(name)(fusion)


average = _pooling_fusion(
    "average",
    "Decision level: one probe per format, unweighted mean of their class probabilities.",
)
product = _pooling_fusion(
    "product",
    "Decision level: one probe per format, the normalised product of their probabilities.",
)


def simplex_grid(k: int, step: float = WEIGHT_STEP) -> np.ndarray:
    """All weight vectors (m, k) with entries in multiples of `step` summing to 1."""
    units = round(1 / step)
    rows = [c for c in itertools.product(range(units + 1), repeat=k) if sum(c) == units]
    return np.asarray(rows, dtype=np.float64) / units


@register_fusion("weighted")
def weighted(
    features: Features,
    labels: Labels,
    head: str,
    cfg: ProbeConfig,
    n_classes: int,
    *,
    device: str = "cpu",
) -> FusionResult:
    """Decision level: one probe per format, weighted mean of their class probabilities.

    The weights (a 0.1-step simplex grid) maximise valid accuracy, ties -> lower valid NLL, then
    the weights closest to uniform. Valid also chose each probe's early-stopping epoch, so the
    reported valid accuracy is optimistic; test is untouched.
    """
    formats, probes = _per_format(features, labels, head, cfg, n_classes, device)
    valid = each_format(formats, probes, _split(features, "valid"))
    y = labels["valid"]
    uniform = np.full(len(formats), 1 / len(formats))

    def key(w: np.ndarray) -> tuple[float, float, float]:
        mix = np.tensordot(w, valid, axes=1)
        return (-_accuracy(mix, y), _nll(mix, y), float(np.abs(w - uniform).sum()))

    best = min(simplex_grid(len(formats)), key=key)
    info = _decision_info("weighted", formats, features, probes)
    info["weights"] = {f: float(w) for f, w in zip(formats, best, strict=True)}
    info["valid_accuracy"] = -key(best)[0]
    predictor = FusionPredictor("weighted", formats, probes, best)
    test = predictor.predict_proba(_split(features, "test"))
    return FusionResult(probs=test, info=info, predictor=predictor)


# ----------------------------------------------------------------------------- model level


class GatedFusion(nn.Module):
    """A learned fusion layer: (B, sum of D_k) concatenated standardised embeddings of K formats
    -> (B, n_classes) logits.

    Format k -> Linear(D_k, proj_dim) -> LayerNorm without affine (every format enters at the
    same scale, so the gate alone sets how much each one counts) -> weighted by a softmax gate
    (B, K) computed from the whole concatenation -> the sum (B, proj_dim) -> probe head.
    """

    def __init__(
        self, dims: list[int], n_classes: int, head: str, proj_dim: int, hidden_dim: int
    ) -> None:
        super().__init__()
        self.dims = [int(d) for d in dims]
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(d, proj_dim), nn.LayerNorm(proj_dim, elementwise_affine=False))
            for d in self.dims
        )
        self.gate = nn.Linear(sum(self.dims), len(self.dims))
        # Zero init: every format starts with the same weight; training moves the gate.
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.head = make_head(head, proj_dim, n_classes, hidden_dim)

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(B, sum D_k) -> (B, K) format weights, each row sums to 1."""
        return torch.softmax(self.gate(x), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.dims, dim=1)
        z = torch.stack([p(part) for p, part in zip(self.proj, parts, strict=True)], dim=1)
        return self.head((self.gate_weights(x).unsqueeze(-1) * z).sum(dim=1))  # (B, K, P) -> (B, C)


@torch.no_grad()
def mean_gate_weights(probe: FittedProbe, x: np.ndarray) -> np.ndarray:
    """Mean gate weight per format (K,) of a fitted GatedFusion over raw concatenated x (n, D)."""
    model = probe.model
    assert isinstance(model, GatedFusion)
    dev = next(model.parameters()).device
    xt = torch.from_numpy(probe.standardizer(x)).to(dev)
    return model.gate_weights(xt).double().mean(dim=0).cpu().numpy()


@register_fusion("gated")
def gated(
    features: Features,
    labels: Labels,
    head: str,
    cfg: ProbeConfig,
    n_classes: int,
    *,
    device: str = "cpu",
) -> FusionResult:
    """Model level: a `GatedFusion` layer + head over the frozen embeddings, trained like a probe.

    Same standardisation, lr x weight_decay grid, early stopping and seeding as `fit_probe`
    (chosen on valid only); the common projection width is cfg.hidden_dim. info: gate_weights
    (mean per format on test, sums to 1), valid_gate_weights, proj_dim, probe (lr, grid, ...).
    """
    formats = check_features(features, labels)
    dims = [int(features[f]["train"].shape[1]) for f in formats]
    x = {s: np.concatenate([features[f][s] for f in formats], axis=1) for s in SPLITS}

    kwargs = {"dims": dims, "n_classes": n_classes, "head": head, "proj_dim": cfg.hidden_dim,
              "hidden_dim": cfg.hidden_dim}  # fmt: skip
    probe = fit_model(
        x["train"], labels["train"], x["valid"], labels["valid"],
        build=lambda: GatedFusion(**kwargs), n_classes=n_classes, cfg=cfg, device=device,
    )  # fmt: skip
    probe.spec = {"module": "gated", "kwargs": kwargs}
    gates = {s: mean_gate_weights(probe, x[s]) for s in ("valid", "test")}
    info = {
        "fusion": "gated",
        "formats": formats,
        "dim": sum(dims),
        "proj_dim": cfg.hidden_dim,
        "valid_accuracy": probe.info["valid_accuracy"],
        "gate_weights": {f: float(w) for f, w in zip(formats, gates["test"], strict=True)},
        "valid_gate_weights": {f: float(w) for f, w in zip(formats, gates["valid"], strict=True)},
        "probe": {"head": head, "dim": sum(dims), **probe.info},
    }
    predictor = FusionPredictor("gated", formats, [probe])
    test = predictor.predict_proba(_split(features, "test"))
    return FusionResult(probs=test, info=info, predictor=predictor)
