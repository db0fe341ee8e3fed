"""experiments/chunk_probe.py: a probe fitted on every chunk, read per track as the mean of its
chunks' probabilities, against one fitted on track means."""

from __future__ import annotations

import numpy as np


def test_a_track_is_the_mean_of_its_own_chunk_rows() -> None:
    from experiments.chunk_probe import per_track_mean

    rows = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8], [0.4, 0.6]])
    out = per_track_mean(rows, np.array([0, 0, 1, 2, 2]), 3)
    np.testing.assert_allclose(out, [[0.5, 0.5], [0.5, 0.5], [0.3, 0.7]])


def _split(rng: np.random.Generator, n_tracks: int, chunks: int) -> tuple:
    labels = np.arange(n_tracks) % 3
    centres = np.eye(3, 6) * 4.0
    x = centres[np.repeat(labels, chunks)] + rng.normal(size=(n_tracks * chunks, 6))
    return (x, np.repeat(np.arange(n_tracks), chunks)), labels


def test_both_levels_choose_on_valid_and_score_every_test_track() -> None:
    from experiments.chunk_probe import CS, fit_level

    rng = np.random.default_rng(0)
    feats, labels = {}, {}
    for split, n in (("train", 30), ("valid", 12), ("test", 15)):
        feats[split], labels[split] = _split(rng, n, chunks=4)
    for level in ("mean", "chunk"):
        fit = fit_level(feats, labels, level)
        assert fit["C"] in CS and 0.0 <= fit["valid_accuracy"] <= 1.0
        assert fit["test_correct"].shape == (15,)
        assert set(np.unique(fit["test_correct"])) <= {0, 1}
        # three well-separated classes: far above chance (1/3) at either level
        assert fit["test_correct"].mean() > 0.6
