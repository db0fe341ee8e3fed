"""Validation during pretraining, handed to the loop as `validate(model) -> float`.

Accuracy on valid-split track embeddings (never test): cosine kNN against the train embeddings
(`train.val_metric: knn`, k = `train.knn_k`), or a quick probe with head `train.val_head` fitted
on them (`probe`). A model holding several encoders (cross-format pretraining) is scored on
their embeddings concatenated, in the order of `model.encoders`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from mfclr.config import Config
from mfclr.data import Datasets
from mfclr.data.clips import iter_track_chunks
from mfclr.data.store import PreparedDataset
from mfclr.formats import build_frontend
from mfclr.probe.embed import embed_tracks
from mfclr.probe.fit import fit_probe


def knn_accuracy(
    bank: np.ndarray, bank_y: np.ndarray, query: np.ndarray, query_y: np.ndarray, k: int
) -> float:
    """Cosine kNN (majority vote weighted by similarity) accuracy of `query` (n, D) against
    `bank` (m, D) with integer labels; k is capped at m."""

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)

    sims = unit(query) @ unit(bank).T
    k = min(k, len(bank))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    n_classes = int(max(bank_y.max(), query_y.max())) + 1
    votes = np.zeros((len(query), n_classes))
    for j in range(k):
        np.add.at(
            votes,
            (np.arange(len(query)), bank_y[idx[:, j]]),
            np.take_along_axis(sims, idx[:, j : j + 1], 1)[:, 0] + 1.0,
        )
    return float((votes.argmax(1) == query_y).mean())


def _features(cfg: Config, model: nn.Module, data: PreparedDataset) -> dict[str, np.ndarray]:
    """split -> (n_tracks, D) embeddings of train and valid by every encoder of `model`."""
    device = next(model.parameters()).device
    feats = {}
    for split in ("train", "valid"):
        sp, parts = data.splits[split], []
        for fmt, encoder in model.encoders.items():
            frontend = build_frontend(fmt, cfg).to(device)
            chunks = iter_track_chunks(sp, cfg.data.crop_samples, cfg.train.max_eval_chunks)
            parts.append(embed_tracks(encoder, frontend, chunks, len(sp), device=device,
                                      batch_size=cfg.train.batch_size))  # fmt: skip
        feats[split] = np.concatenate(parts, axis=1)
    return feats


def validation_metric(cfg: Config, model: nn.Module, data: PreparedDataset) -> float:
    """The configured validation accuracy of `model` (with `.encoders`, a format -> encoder
    ModuleDict) on the probe dataset `data`."""
    feats = _features(cfg, model, data)
    ty, vy = data.splits["train"].labels, data.splits["valid"].labels
    tc = cfg.train
    if tc.val_metric == "knn":
        return knn_accuracy(feats["train"], ty, feats["valid"], vy, k=tc.knn_k)
    probe = fit_probe(feats["train"], ty, feats["valid"], vy, head=tc.val_head,
                      n_classes=len(data.label_names), cfg=cfg.probe)  # fmt: skip
    return float(probe.info["valid_accuracy"])


def make_validate(cfg: Config, datasets: Datasets) -> Callable[[nn.Module], float] | None:
    """The loop's `validate` for `cfg` (None when train.eval_every is 0). The probe dataset is
    taken from `datasets` on the first call, so ranks that never validate never open it."""
    if not cfg.train.eval_every:
        return None

    def validate(model: nn.Module) -> float:
        return validation_metric(cfg, model, datasets.get(cfg.data, "probe"))

    return validate
