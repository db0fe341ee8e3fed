"""classification_metrics against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mfclr.errors import DataError
from mfclr.probe.metrics import classification_metrics

NAMES = ["a", "b", "c", "d"]  # "d" never occurs in y_true
Y = np.array([0, 1, 1, 2])
P = np.array(
    [
        [0.45, 0.35, 0.10, 0.10],  # true a, predicted a
        [0.50, 0.30, 0.10, 0.10],  # true b, predicted a
        [0.10, 0.70, 0.10, 0.10],  # true b, predicted b
        [0.20, 0.10, 0.60, 0.10],  # true c, predicted c
    ]
)


def test_hand_computed_example() -> None:
    m = classification_metrics(Y, P, NAMES)
    assert m["accuracy"] == pytest.approx(3 / 4)
    # a: ranking b(N) a(P) -> AP 1/2.  b: b(P) a(N) b(P) -> (1 + 2/3) / 2.  c: first -> 1.
    assert m["per_class_ap"]["a"] == pytest.approx(1 / 2)
    assert m["per_class_ap"]["b"] == pytest.approx(5 / 6)
    assert m["per_class_ap"]["c"] == pytest.approx(1.0)
    assert m["per_class_ap"]["d"] is None  # absent: reported as null, left out of the mean
    assert m["macro_map"] == pytest.approx((1 / 2 + 5 / 6 + 1) / 3)
    assert m["confusion_matrix"] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m["n"] == 4
    assert list(m["per_class_ap"]) == NAMES
    json.loads(json.dumps(m, allow_nan=False))  # plain JSON-able types


def test_perfect_and_shape_errors() -> None:
    m = classification_metrics(np.array([0, 1]), np.eye(2), ["x", "y"])
    assert m["accuracy"] == 1.0 and m["macro_map"] == 1.0
    assert isinstance(m["confusion_matrix"][0][0], int)
    with pytest.raises(DataError, match=r"expected \(n, 3 classes\)"):
        classification_metrics(Y, P, ["a", "b", "c"])
    with pytest.raises(DataError, match="labels have shape"):
        classification_metrics(Y[:3], P, NAMES)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 4\)"):
        classification_metrics(Y + 3, P, NAMES)
    with pytest.raises(DataError, match="split is empty"):
        classification_metrics(Y[:0], P[:0], NAMES)
