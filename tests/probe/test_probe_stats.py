"""Bootstrap intervals: they cover the estimate, shrink with more tracks, and the paired
difference sees what two unpaired intervals cannot."""

from __future__ import annotations

import numpy as np
import pytest

from mfclr.probe.stats import accuracy_ci, paired_delta
from mfclr.probe.variants import add_control_deltas
from mfclr.report.markdown import results_table


def test_accuracy_ci_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.random(50) < 0.7, rng.random(2000) < 0.7
    lo, hi = accuracy_ci(small)
    assert lo <= small.mean() <= hi and 0 <= lo < hi <= 1
    lo2, hi2 = accuracy_ci(large)
    assert hi2 - lo2 < (hi - lo) / 3
    assert accuracy_ci(small) == (lo, hi)  # seeded: the same interval every time


def test_paired_delta_detects_a_small_consistent_gain() -> None:
    rng = np.random.default_rng(1)
    control = rng.random(300) < 0.6
    better = control.copy()
    better[np.flatnonzero(~control)[:15]] = True  # 15 more tracks right, none lost: +5 points
    delta, (lo, hi) = paired_delta(better, control)
    assert np.isclose(delta, 15 / 300) and 0 < lo <= delta <= hi
    # Unpaired, the two accuracy intervals overlap: only pairing shows the gain.
    assert accuracy_ci(better)[0] < accuracy_ci(control)[1]
    same, (slo, shi) = paired_delta(control, control)
    assert same == 0 and slo == shi == 0


def _row(name: str, enc: str, correct: np.ndarray) -> dict:
    return {
        "name": name,
        "encoders": enc,
        "head": "linear",
        "fusion": "none",
        "formats": ["audio"],
        "accuracy": float(correct.mean()),
        "valid_accuracy": 0.5,
        "accuracy_ci95": list(accuracy_ci(correct)),
        "test_correct": correct.tolist(),
    }


def test_rows_get_their_controls_difference_and_the_table_says_so() -> None:
    rng = np.random.default_rng(2)
    control = rng.random(200) < 0.5
    better, worse = control.copy(), control.copy()
    better[np.flatnonzero(~control)[:30]] = True
    worse[np.flatnonzero(control)[:30]] = False
    rows = add_control_deltas([_row("audio", "trained", better),
                               _row("cross-audio", "cross", worse),
                               _row("random-init-audio", "random-init", control)])  # fmt: skip
    assert rows[0]["control"] == "random-init-audio" and rows[0]["beats_control"] is True
    assert rows[1]["beats_control"] is False and rows[1]["delta_ci95"][1] < 0
    assert "delta_vs_control" not in rows[2]
    lines = {ln.split("|")[1].strip(" *★"): ln for ln in results_table(rows).splitlines()[2:]}
    assert "+15.0 [" in lines["audio"] and "✓ above" in lines["audio"]
    assert "-15.0 [" in lines["cross-audio"] and "✗ below" in lines["cross-audio"]
    assert lines["random-init-audio"].count("—") >= 2


def test_seeds_aggregate_to_means_with_their_spread_and_pooled_pairs() -> None:
    from mfclr.probe.variants import aggregate_seeds

    rng = np.random.default_rng(3)
    per_seed = []
    for _ in range(3):
        control = rng.random(120) < 0.5
        better = control | (rng.random(120) < 0.3)
        rows = [_row("audio", "trained", better), _row("random-init-audio", "random-init", control)]
        for r in rows:
            r.update(macro_map=r["accuracy"], per_class_ap={"a": 0.5}, confusion_matrix=[[1]])
        per_seed.append(add_control_deltas(rows))
    agg = {r["name"]: r for r in aggregate_seeds(per_seed)}
    trained = agg["audio"]
    accs = [rows[0]["accuracy"] for rows in per_seed]
    assert trained["accuracy"] == pytest.approx(np.mean(accs))
    assert trained["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert trained["n_seeds"] == 3 and trained["confusion_matrix"] == [[3]]
    assert trained["seeds_beating_control"] == sum(rows[0]["beats_control"] for rows in per_seed)
    deltas = [rows[0]["delta_vs_control"] for rows in per_seed]
    assert trained["delta_vs_control"] == pytest.approx(np.mean(deltas))
    assert trained["delta_ci95"][0] > 0 and trained["beats_control"]
    table = results_table(list(agg.values())).splitlines()[2:]
    line = next(ln for ln in table if "random-init" not in ln)
    assert " ± " in line and "/3 seeds)" in line
