"""experiments/pool_results.py: the pooled paired gain over several runs' results.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mfclr.report.results import write_results


@pytest.fixture(scope="module")
def pool_results():
    from experiments import pool_results

    return pool_results


def _run(tmp: Path, name: str, n: int, row_right: int, control_right: int) -> Path:
    """A results.json with one trained row and its control: the first k tracks right."""

    def correct(k: int) -> list[bool]:
        return [i < k for i in range(n)]

    rows = [
        {"name": "spectrogram", "head": "linear", "control": "random-init-spectrogram",
         "accuracy": row_right / n, "test_correct": correct(row_right)},
        {"name": "random-init-spectrogram", "head": "linear",
         "accuracy": control_right / n, "test_correct": correct(control_right)},
        {"name": "audio", "head": "linear", "control": "missing-control", "test_correct": [True]},
    ]  # fmt: skip
    path, _ = write_results(tmp / name, rows, {})
    return path


def test_pooled_gain_is_the_mean_of_the_runs_and_its_interval_covers_them(
    tmp_path: Path, pool_results, capsys
) -> None:
    a = _run(tmp_path, "a", 100, 60, 50)  # +10 points
    b = _run(tmp_path, "b", 50, 25, 26)  # -2 points
    assert pool_results.main([str(a), str(b), "--labels", "A,B"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    (row,) = summary["rows"]  # the row without a control is left out
    assert (row["name"], row["head"], row["positive"]) == ("spectrogram", "linear", 1)
    assert row["gains"] == pytest.approx([0.10, -0.02])
    assert row["mean_gain"] == pytest.approx(0.04)  # each run weighs the same
    lo, hi = row["ci95"]
    assert lo < 0.04 < hi and hi - lo < 0.3
    assert any("| spectrogram | linear | +10.0 | -2.0 | +4.0" in ln for ln in out)


def test_a_gain_on_every_track_clears_zero(tmp_path: Path, pool_results) -> None:
    runs = [json.loads(_run(tmp_path, str(i), 40, 30, 10).read_text()) for i in range(3)]
    (row,) = pool_results.pool(runs)
    assert row["ci95"][0] > 0 and np.isclose(row["mean_gain"], 0.5)


def test_bad_input_is_one_line(tmp_path: Path, pool_results, capsys) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    assert pool_results.main([str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    good = _run(tmp_path, "g", 10, 5, 5)
    assert pool_results.main([str(good), "--labels", "A,B"]) == 2
    assert "--labels names 2 runs, 1 given" in capsys.readouterr().err


def test_compare_pairs_two_panel_reports_row_by_row(tmp_path: Path, capsys) -> None:
    from experiments import compare

    def report(label: str, right: tuple[int, int]) -> Path:
        results = {
            d: str(_run(tmp_path / label, d, 50, k, 25)) for d, k in zip("xy", right, strict=True)
        }
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps({"pooled_datasets": ["x", "y"], "results": results}))
        return path

    a, b = report("a", (40, 30)), report("b", (30, 30))
    assert compare.main([str(a), str(b), "--out", str(tmp_path / "a-b.md")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["name"]: r for r in summary["rows"]}
    assert "random-init-spectrogram" not in rows  # trained rows only: controls do not change
    assert rows["spectrogram"]["gains"] == pytest.approx([0.2, 0.0])
    assert "| spectrogram | linear | +20.0 | +0.0 |" in (tmp_path / "a-b.md").read_text()
    (tmp_path / "bad.json").write_text("{}")
    assert compare.main([str(tmp_path / "bad.json"), str(b)]) == 2
    assert "not a panel report" in capsys.readouterr().err


def test_summary_table_lists_trained_rows_with_their_deltas_then_the_controls(
    tmp_path: Path, capsys
) -> None:
    from experiments import summary_table

    rows = [
        {"name": "audio", "head": "linear", "control": "random-init-audio", "accuracy": 0.8,
         "accuracy_ci95": [0.7, 0.9], "delta_vs_control": 0.3, "delta_ci95": [0.2, 0.4],
         "delta_vs_mfcc": -0.05, "mfcc_delta_ci95": [-0.1, -0.01]},
        {"name": "random-init-audio", "head": "linear", "accuracy": 0.5},
        {"name": "audio", "head": "mlp", "control": "random-init-audio", "accuracy": 0.7},
    ]  # fmt: skip
    path, _ = write_results(tmp_path / "run", rows, {})
    assert summary_table.main([str(path), "--head", "linear"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2:] == [
        "| audio | 80.0 [70.0, 90.0] | +30.0 [+20.0, +40.0] ✓ | -5.0 [-10.0, -1.0] ✗ |",
        "| random-init-audio | 50.0 | — | — |",
    ]
    assert summary_table.main([str(tmp_path / "missing.json")]) == 2
