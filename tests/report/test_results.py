"""report: markdown table marks the best row; results.json/results.md agree and round-trip."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mfclr.errors import DataError
from mfclr.report.markdown import BEST_MARK, format_confusion, results_table
from mfclr.report.results import read_results, results_markdown, write_results

NAMES = ["rock", "jazz"]


def _row(
    name: str, fusion: str, acc: float, mmap: float | None, dim: int = 512, valid: float = 0.5
) -> dict:
    metrics = {
        "accuracy": acc,
        "macro_map": mmap,
        "per_class_ap": {"rock": np.float64(0.9), "jazz": None},
        "confusion_matrix": np.array([[3, 1], [0, 4]]),
        "n": 8,
    }
    info = {"formats": ["audio"], "dim": dim, "valid_accuracy": valid, "probe": {"lr": 1e-3}}
    return {"name": name, "fusion": fusion, "head": "linear", "formats": info["formats"],
            "dim": dim, "valid_accuracy": valid, **metrics, "probe_info": info}  # fmt: skip


ROWS = [
    _row("audio/linear", "single", 0.6543, 0.71, valid=0.5),
    _row("concat/linear", "concat", 0.8751, 0.9012, dim=1024, valid=0.9),
    _row("spectrogram/linear", "single", 0.7, None, valid=0.6),
]


def _table_rows(md: str) -> list[list[str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    return [[c.strip().strip("*") for c in ln.strip("|").split("|")] for ln in lines]


def test_table_has_every_row_and_marks_the_row_chosen_on_valid() -> None:
    rows = list(ROWS)
    table = results_table(rows)
    body = _table_rows(table)[1:]
    assert [r[0].removesuffix(f" {BEST_MARK}") for r in body] == [r["name"] for r in ROWS]
    marked = [ln for ln in table.splitlines() if BEST_MARK in ln]
    assert len(marked) == 1 and "concat/linear" in marked[0] and "**87.5**" in marked[0]
    assert body[1][3:7] == ["1024", "90.0", "87.5", "90.1"]
    assert body[2][6] == "—"  # missing macro mAP
    # Chosen on valid, not test: a row with the best test score but a worse valid one is not.
    rows[0] = dict(rows[0], accuracy=0.99)
    assert BEST_MARK in next(ln for ln in results_table(rows).splitlines() if "concat/" in ln)
    no_dim = {k: v for k, v in ROWS[0].items() if k != "dim"}  # dim found in probe_info
    assert "| audio/linear | single | linear | 512 |" in results_table([no_dim, ROWS[1]])
    by_map = results_table(ROWS, best_key="macro_map")
    assert BEST_MARK in next(ln for ln in by_map.splitlines() if "concat/linear" in ln)


def test_format_confusion() -> None:
    text = format_confusion([[3, 1], [0, 4]], NAMES)
    assert "| rock | 3 | 1 | 4 |" in text and "| jazz | 0 | 4 | 4 |" in text
    assert text.splitlines()[0].count("rock") == 1
    with pytest.raises(DataError, match="not 2 x 2"):
        format_confusion([[1, 2, 3]], NAMES)


def test_write_results_round_trip_and_markdown_matches_json(tmp_path) -> None:
    extra = {"label_names": NAMES, "checkpoint": "runs/x/best.pt", "seed": 0, "nan": float("nan")}
    json_path, md_path = write_results(tmp_path / "out", ROWS, extra)
    data = read_results(json_path)
    assert data["label_names"] == NAMES and data["nan"] is None
    assert [r["name"] for r in data["rows"]] == [r["name"] for r in ROWS]
    row = data["rows"][1]
    assert row["confusion_matrix"] == [[3, 1], [0, 4]] and row["per_class_ap"]["jazz"] is None
    assert row["probe_info"]["probe"] == {"lr": 1e-3} and row["formats"] == ["audio"]
    assert json.loads(json_path.read_text()) == data

    md = md_path.read_text()
    table = {r[0].removesuffix(f" {BEST_MARK}"): r for r in _table_rows(md)[1:4]}
    for r in data["rows"]:
        cells = table[r["name"]]
        for col, key in ((4, "valid_accuracy"), (5, "accuracy"), (6, "macro_map")):
            want = "—" if r[key] is None else f"{100 * r[key]:.1f}"
            assert cells[col] == want
    assert "Confusion matrix: concat/linear" in md and "| rock | 3 | 1 | 4 |" in md
    assert re.search(r"\| rock \| 90\.0 \|", md) and "| jazz | — |" in md
    assert "- checkpoint: runs/x/best.pt" in md
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["results.json", "results.md"]


def test_read_results_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_results(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_results(bad)
    with pytest.raises(DataError, match="'rows' is reserved"):
        write_results(tmp_path, ROWS, {"rows": 1})


def test_results_md_ends_with_the_callers_sections_and_names_the_best_row_once(tmp_path) -> None:
    from mfclr.report.markdown import best_sentence, best_trials_table

    best = {"audio": {"trial": "audio_001", "val_accuracy": 0.5, "epochs_done": 2,
                      "hyperparameters": {"temperature": 0.25}}}  # fmt: skip
    section = best_trials_table(best, "val_accuracy")
    _, md_path = write_results(tmp_path, ROWS, {"label_names": NAMES}, sections=[section])
    md = md_path.read_text()
    assert md.rstrip().endswith(section.rstrip())  # written in one go, never appended to
    assert md.count("## Best trial per format") == 1 and "| audio | audio_001 | 0.500 | 2 |" in md
    # The best row is named with the same sentence report.md uses.
    assert md.count(BEST_MARK + " chosen on valid accuracy") == 1
    assert best_sentence(ROWS[1]) in md and "concat fusion of audio" in best_sentence(ROWS[1])


def test_a_tie_on_valid_stars_one_row_the_one_the_sentence_names() -> None:
    rows = [dict(r, valid_accuracy=0.9) for r in ROWS]  # every row ties on valid
    marked = [ln for ln in results_table(rows).splitlines() if BEST_MARK in ln]
    assert len(marked) == 1 and ROWS[0]["name"] in marked[0]
    md = results_markdown(rows, {"label_names": NAMES})
    assert md.count(BEST_MARK) == 2  # the table's row and the sentence under it
    sentence = next(ln for ln in md.splitlines() if "chosen on" in ln)
    assert f"**{ROWS[0]['name']} · linear**" in sentence
    assert f"## Confusion matrix: {ROWS[0]['name']}" in md
