"""Uncertainty of test-split accuracies: bootstrap intervals over test tracks.

With a few hundred test tracks one track moves accuracy by a fraction of a point and the
sampling error is several points, so every row carries a 95 % interval, and a trained row's
advantage over its random-init control is a *paired* difference: both are resampled on the same
tracks, which removes the between-track variance they share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BOOT = 2000
SEED = 0


def _indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) resampled track indices; the same for every row of a table (same seed)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def accuracy_ci(correct: Sequence[bool] | np.ndarray, *, n_boot: int = N_BOOT,
                seed: int = SEED) -> tuple[float, float]:  # fmt: skip
    """95 % percentile bootstrap interval of the mean of per-track 0/1 `correct` (n,)."""
    c = np.asarray(correct, dtype=np.float64)
    if c.size == 0:
        return (float("nan"), float("nan"))
    means = c[_indices(len(c), n_boot, seed)].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def paired_delta(
    correct: Sequence[bool] | np.ndarray,
    control: Sequence[bool] | np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> tuple[float, tuple[float, float]]:
    """Accuracy difference (row - control) on the same n test tracks and its 95 % paired
    bootstrap interval: (delta, (low, high)), fractions in [-1, 1]."""
    a = np.asarray(correct, dtype=np.float64)
    b = np.asarray(control, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired rows cover different test tracks: {a.shape} vs {b.shape}")
    if a.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    d = a - b
    means = d[_indices(len(d), n_boot, seed)].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), (float(lo), float(hi))
