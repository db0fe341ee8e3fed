"""experiments/reprobe.py's ceiling: the most any fusion of two formats could gain over the better
single format."""

from __future__ import annotations

import numpy as np


def _row(name: str, correct: list[int], valid: float) -> dict:
    return {"name": name, "head": "linear", "encoders": "trained", "fusion": "none",
            "valid_accuracy": valid, "test_correct": correct}  # fmt: skip


def test_a_track_counts_when_either_format_is_right_against_the_one_valid_picks() -> None:
    from experiments.reprobe import ceiling

    results = {"rows": [
        _row("audio", [1, 1, 0, 0], valid=0.6),
        _row("spectrogram", [1, 0, 1, 0], valid=0.7),  # valid's pick, though level on test
        {"name": "random-init-audio", "head": "linear", "encoders": "random-init",
         "fusion": "none", "test_correct": [1, 1, 1, 1]},
    ]}  # fmt: skip
    either, best = ceiling(results)[("either format right", "linear")]
    np.testing.assert_array_equal(either, [1, 1, 1, 0])
    np.testing.assert_array_equal(best, [1, 0, 1, 0])
