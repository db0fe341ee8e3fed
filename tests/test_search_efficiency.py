"""The search-efficiency benchmark's parts: the sweep file it hands the platform, the grid, and
the verdict against its target (the full run is minutes: benchmarks/search_efficiency.py)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

from mfclr.tune.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]


def _load() -> Any:
    from benchmarks import search_efficiency

    return search_efficiency


se = _load()


def _args(tmp_path: Path, **kw: Any) -> argparse.Namespace:
    base = dict(format="spectrogram", epochs=4, clips_per_class=20, concurrent=1, seed=3,
                out=str(tmp_path))  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_the_grid_is_every_combination_of_the_two_axes_once() -> None:
    points = se.grid_points()
    assert len(points) == 16
    assert len({tuple(sorted(p.items())) for p in points}) == 16
    for name, (_, values) in se.GRID.items():
        assert sorted({p[name] for p in points}) == sorted(values)


def test_the_sweep_file_is_one_the_platform_accepts_over_the_grids_box(tmp_path: Path) -> None:
    path = se.sweep_file(_args(tmp_path), grace=2, rf=4, folder=tmp_path)
    spec, base = load_sweep(path)
    assert spec.formats == ["spectrogram"]
    assert spec.budget.trials == 16 and spec.budget.epochs == 4
    assert (spec.budget.grace_period, spec.budget.reduction_factor) == (2, 4)
    assert spec.search.seed == 3 and spec.search.eval_every == 1
    for name, (key, values) in se.GRID.items():
        p = spec.search.space[name]
        assert p.key == key and p.log and (p.low, p.high) == (min(values), max(values))
    # The same data and budget as the grid's plain runs.
    assert base.train.epochs == 4 and base.train.val_metric == "probe"
    assert base.data.probe.embedded.clips_per_class == 20


@pytest.mark.parametrize(
    ("tpe_valid", "tpe_epochs", "within", "met"),
    [(0.58, 30, True, True), (0.58, 40, True, False), (0.50, 20, False, False)],
)
def test_the_verdict_is_one_binomial_standard_error_and_a_third_of_the_epochs(
    tpe_valid: float, tpe_epochs: int, within: bool, met: bool
) -> None:
    grid = {"best_valid": 0.6, "epochs": 96}  # one SE at 100 valid tracks: 4.9 points
    v = se.verdict(grid, {"best_valid": tpe_valid, "epochs": tpe_epochs}, n_valid=100)
    assert v["within_one_se"] is within and v["target_met"] is met
    assert math.isclose(v["epoch_fraction"], tpe_epochs / 96)


def test_the_halving_sweep_file_lets_every_trial_of_a_rung_be_proposed(tmp_path: Path) -> None:
    path = se.sweep_file(_args(tmp_path), grace=1, rf=4, folder=tmp_path, scheduler="halving")
    spec, _ = load_sweep(path)
    assert spec.budget.scheduler == "halving" and spec.budget.max_concurrent_trials is None
    assert "halving" in spec.name


def test_an_earlier_grid_is_reused_only_for_the_same_budget_and_data(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.json"
    grid = {"best_valid": 0.6, "epochs": 96, "winner_test": 0.5}
    earlier.write_text(
        json.dumps({"format": "spectrogram", "epochs": 4, "n_valid": 64, "grid": grid})
    )
    args = _args(tmp_path, grid_from=str(earlier))
    assert se.earlier_grid(args, n_valid=64) == {**grid, "from": str(earlier)}
    with pytest.raises(SystemExit, match="train the grid again"):
        se.earlier_grid(args, n_valid=160)
