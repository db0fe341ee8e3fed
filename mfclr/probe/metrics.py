"""Track-level classification metrics: accuracy, macro mAP, per-class AP, confusion matrix.

Everything returned is plain JSON-able Python (float, int, None, list, dict).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mfclr.errors import DataError


def _check(y_true: np.ndarray, probs: np.ndarray, n_names: int) -> None:
    if len(y_true) == 0:
        raise DataError("no tracks to score: the evaluated split is empty")
    if probs.ndim != 2 or probs.shape[1] != n_names:
        raise DataError(f"probabilities have shape {probs.shape}, expected (n, {n_names} classes)")
    if y_true.ndim != 1 or len(y_true) != len(probs):
        raise DataError(f"labels have shape {y_true.shape}, expected ({len(probs)},)")
    if y_true.min() < 0 or y_true.max() >= n_names:
        raise DataError(f"labels must lie in [0, {n_names}), got {y_true.min()}..{y_true.max()}")
    if not np.isfinite(probs).all():
        raise DataError("probabilities contain NaN or inf")


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, label_names: Sequence[str]
) -> dict[str, Any]:
    """Metrics of predictions `probs` (n, C) against int labels `y_true` (n,).

    Returns `accuracy` (argmax, in [0, 1]), `macro_map` (mean one-vs-rest average precision over
    the classes present in y_true; None when none is), `per_class_ap` ({name: AP or None for a
    class absent from y_true}), `confusion_matrix` (C x C ints, rows = true, cols = predicted,
    label_names order) and `n`.
    """
    # sklearn costs ~0.8 s of import: a Tune trial, which validates with accuracy only, never
    # loads it (mfclr.tune.trial).
    from sklearn.metrics import average_precision_score, confusion_matrix

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    names = [str(n) for n in label_names]
    _check(y_true, probs, len(names))
    n_classes = len(names)
    pred = probs.argmax(axis=1)

    per_class: dict[str, float | None] = {}
    for c, name in enumerate(names):
        positives = y_true == c
        # AP is undefined without a positive: report null rather than sklearn's warning + 0.
        per_class[name] = (
            float(average_precision_score(positives, probs[:, c])) if positives.any() else None
        )
    present = [ap for ap in per_class.values() if ap is not None]
    cm = confusion_matrix(y_true, pred, labels=list(range(n_classes)))
    return {
        "accuracy": float((pred == y_true).mean()),
        "macro_map": float(np.mean(present)) if present else None,
        "per_class_ap": per_class,
        "confusion_matrix": [[int(v) for v in row] for row in cm],
        "n": len(y_true),
    }
