"""Tables from finished probe runs: a markdown results table, confusion matrices, results files.

A *row* is one probed variant, a plain dict: name, fusion, head, formats, dim, accuracy,
macro_map (fractions in [0, 1] or None), per_class_ap ({class: AP or None}), confusion_matrix
(rows = true, cols = predicted), probe_info, plus anything else JSON-able.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfclr.errors import DataError
from mfclr.io import atomic_write_text

BEST_MARK = "★"
# Rows are chosen on the valid split; test is only ever reported.
BEST_KEY = "valid_accuracy"


def make_row(
    name: str, *, fusion: str, head: str, info: Mapping[str, Any], metrics: Mapping[str, Any]
) -> dict[str, Any]:
    """One row from a fusion's info dict and `classification_metrics` output."""
    return {
        "name": name,
        "fusion": fusion,
        "head": head,
        "formats": list(info.get("formats", [])),
        "dim": info.get("dim"),
        "valid_accuracy": info.get("valid_accuracy"),
        **dict(metrics),
        "probe_info": dict(info),
    }


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.1f}"


def _cell(value: Any) -> str:
    return "—" if value is None else str(value).replace("|", "\\|")


def _best_indices(rows: Sequence[Mapping[str, Any]], key: str) -> set[int]:
    """Every row tying for the highest `key` (None never wins)."""
    scores = [r.get(key) for r in rows]
    valid = [s for s in scores if s is not None and not math.isnan(float(s))]
    if not valid:
        return set()
    top = max(valid)
    return {i for i, s in enumerate(scores) if s is not None and s == top}


def _dim(row: Mapping[str, Any]) -> Any:
    """The row's input dim: its own `dim`, else the one its fusion reported in probe_info."""
    if row.get("dim") is not None:
        return row["dim"]
    return (row.get("probe_info") or {}).get("dim")


def _interval(ci: Any, signed: bool = False) -> str:
    """`[low, high]` fractions -> "low–high" in points (signed: with + for positive ends)."""
    if not isinstance(ci, Sequence) or len(ci) != 2 or any(v is None for v in ci):
        return "—"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    return f"{fmt.format(100 * float(ci[0]))} – {fmt.format(100 * float(ci[1]))}"


def _delta(row: Mapping[str, Any]) -> str:
    d = row.get("delta_vs_control")
    if d is None:
        return "—"
    return f"{100 * float(d):+.1f} [{_interval(row.get('delta_ci95'), signed=True)}]"


def _verdict(row: Mapping[str, Any]) -> str:
    """Whether the row beats its control: the paired interval lies above (✓) or below (✗) 0."""
    ci = row.get("delta_ci95")
    if row.get("delta_vs_control") is None or not ci or None in ci:
        return "—"
    verdict = "✓ above" if ci[0] > 0 else "✗ below" if ci[1] < 0 else "no difference"
    if row.get("n_seeds"):
        verdict += f" ({row.get('seeds_beating_control', 0)}/{row['n_seeds']} seeds)"
    return verdict


def results_table(rows: Sequence[Mapping[str, Any]], *, best_key: str = BEST_KEY) -> str:
    """Markdown table: name, fusion, head, dim, valid accuracy, test accuracy with its 95 %
    bootstrap interval, macro mAP, the paired difference to the row's random-init control with
    its interval, and whether the row beats it. The row chosen by `best_key` (valid accuracy:
    no choice ever sees test) is bold with a ★."""
    lines = [
        "| name | fusion | head | dim | valid acc (%) | test acc (%) [95% CI] | macro mAP (%) "
        "| Δ vs random-init (pts) [95% CI] | beats control |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    best = _best_indices(rows, best_key)
    for i, r in enumerate(rows):
        acc = _pct(r.get("accuracy"))
        if r.get("accuracy_std") is not None:  # repeated over seeds: mean ± std
            acc += f" ± {100 * float(r['accuracy_std']):.1f}"
        if r.get("accuracy_ci95"):
            acc += f" [{_interval(r['accuracy_ci95'])}]"
        cells = [
            _cell(r.get("name")) + (f" {BEST_MARK}" if i in best else ""),
            _cell(r.get("fusion")),
            _cell(r.get("head")),
            _cell(_dim(r)),
            _pct(r.get("valid_accuracy")),
            acc,
            _pct(r.get("macro_map")),
            _delta(r),
            _verdict(r),
        ]
        if i in best:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chosen_phrase(best_key: str) -> str:
    """How the starred row was chosen, for the line under a table."""
    if best_key == "valid_accuracy":
        return "chosen on valid accuracy"
    return f"best by test {best_key.replace('_', ' ')}"


def format_confusion(matrix: Sequence[Sequence[int]], label_names: Sequence[str]) -> str:
    """Markdown confusion matrix: rows = true class, columns = predicted class, with row totals."""
    names = [_cell(n) for n in label_names]
    if len(matrix) != len(names) or any(len(row) != len(names) for row in matrix):
        raise DataError(f"confusion matrix is not {len(names)} x {len(names)} (one per label name)")
    lines = [
        "| true \\ predicted | " + " | ".join(names) + " | total |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for name, row in zip(names, matrix, strict=True):
        counts = [int(v) for v in row]
        lines.append(f"| {name} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |")
    return "\n".join(lines)


def format_per_class_ap(per_class_ap: Mapping[str, float | None]) -> str:
    """Markdown table class -> AP (%); '—' for a class absent from the test split."""
    lines = ["| class | AP (%) |", "|---|---:|"]
    lines += [f"| {_cell(name)} | {_pct(ap)} |" for name, ap in per_class_ap.items()]
    return "\n".join(lines)


def pivot_table(rows: Sequence[Mapping[str, Any]], best_key: str = BEST_KEY) -> str:
    """Markdown: one line per variant name, one column per head, cells "accuracy / macro mAP"
    (%); the cell chosen by `best_key` (valid accuracy) bold with a ★."""
    names = list(dict.fromkeys(str(r.get("name")) for r in rows))
    heads = list(dict.fromkeys(str(r.get("head")) for r in rows))
    best = _best_indices(rows, best_key)
    cells: dict[tuple[str, str], str] = {}
    for i, r in enumerate(rows):
        text = f"{_pct(r.get('accuracy'))} / {_pct(r.get('macro_map'))}"
        cells[(str(r.get("name")), str(r.get("head")))] = (
            f"**{text} {BEST_MARK}**" if i in best else text
        )
    lines = ["| variant | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for n in names:
        lines.append(f"| {_cell(n)} | " + " | ".join(cells.get((n, h), "—") for h in heads) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- files


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> Python; NaN/inf -> None (strict JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def results_markdown(
    rows: Sequence[Mapping[str, Any]], extra: Mapping[str, Any], best_key: str = BEST_KEY
) -> str:
    """results.md: run facts, the table, then the best row's confusion matrix and per-class AP."""
    parts = ["# Probe results", ""]
    facts = {k: v for k, v in extra.items() if isinstance(v, str | int | float | bool)}
    parts += [f"- {k}: {v}" for k, v in facts.items()] + ([""] if facts else [])
    parts += [results_table(rows, best_key=best_key), ""]
    best = sorted(_best_indices(rows, best_key))
    if best:
        row = rows[best[0]]
        parts += [f"{BEST_MARK} {chosen_phrase(best_key)}: **{_cell(row.get('name'))}** "
                  f"({_cell(row.get('head'))} head; test accuracy {_pct(row.get('accuracy'))} %)",
                  ""]  # fmt: skip
        per_class = row.get("per_class_ap") or {}
        names = extra.get("label_names") or list(per_class)
        if row.get("confusion_matrix") is not None and names:
            parts += [f"## Confusion matrix: {_cell(row.get('name'))} (test)", ""]
            parts += [format_confusion(row["confusion_matrix"], names), ""]
        if per_class:
            parts += [f"## Per-class AP: {_cell(row.get('name'))} (test)", ""]
            parts += [format_per_class_ap(per_class), ""]
    return "\n".join(parts)


def write_results(
    out_dir: str | Path, rows: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write `results.json` ({"rows": [...], **extra}) and `results.md`, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "rows" in extra:
        raise DataError("write_results: 'rows' is reserved in extra; rename that key")
    payload = _jsonable({"rows": list(rows), **extra})
    json_path, md_path = out / "results.json", out / "results.md"
    _atomic_write(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    _atomic_write(md_path, results_markdown(payload["rows"], payload))
    return json_path, md_path


def read_results(path: str | Path) -> dict[str, Any]:
    """Load a results.json written by `write_results`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"results file '{p}' does not exist; run `mfclr probe` first")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise DataError(f"results file '{p}' is not valid JSON; re-run `mfclr probe`") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise DataError(f"results file '{p}' has no 'rows' list; re-run `mfclr probe`")
    return data
