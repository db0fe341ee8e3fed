"""Markdown pieces of results.md and report.md: the variants table, the pivot, the confusion
matrix, per-class AP, the sentence on the best row, and a sweep's best-trial table.

A *row* is one probed variant, a plain dict: name, fusion, head, formats, dim, accuracy,
macro_map (fractions in [0, 1] or None), per_class_ap ({class: AP or None}), confusion_matrix
(rows = true, cols = predicted), probe_info, plus anything else JSON-able.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mfclr.errors import DataError

BEST_MARK = "★"
# Rows are chosen on the valid split; test is only ever reported.
BEST_KEY = "valid_accuracy"


def pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.1f}"


def cell(value: Any) -> str:
    return "—" if value is None else str(value).replace("|", "\\|")


def best_indices(rows: Sequence[Mapping[str, Any]], key: str) -> set[int]:
    """The row with the highest `key` (None and NaN never win), as a set of at most one index.
    Of rows tying for it, the first in table order: the star and the sentence under the table must
    name the same row (a tie on valid accuracy is common with 90 valid tracks)."""
    scores = [r.get(key) for r in rows]
    valid = [(s, -i) for i, s in enumerate(scores) if s is not None and not math.isnan(float(s))]
    return {-max(valid)[1]} if valid else set()


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


def _delta(row: Mapping[str, Any], key: str = "delta_vs_control", ci: str = "delta_ci95") -> str:
    d = row.get(key)
    if d is None:
        return "—"
    return f"{100 * float(d):+.1f} [{_interval(row.get(ci), signed=True)}]"


def _vs_mfcc(row: Mapping[str, Any]) -> str:
    """The paired difference to the MFCC row with ✓ (interval above 0) or ✗ (below)."""
    text = _delta(row, "delta_vs_mfcc", "mfcc_delta_ci95")
    ci = row.get("mfcc_delta_ci95")
    if text == "—" or not ci or None in ci:
        return text
    return text + (" ✓" if ci[0] > 0 else " ✗" if ci[1] < 0 else "")


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
    its interval, whether the row beats it, and the paired difference to the MFCC row (✓: the
    interval lies above 0). The row chosen by `best_key` (valid accuracy: no choice ever sees
    test) is bold with a ★."""
    lines = [
        "| name | fusion | head | dim | valid acc (%) | test acc (%) [95% CI] | macro mAP (%) "
        "| Δ vs random-init (pts) [95% CI] | beats control | Δ vs MFCC (pts) [95% CI] |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    best = best_indices(rows, best_key)
    for i, r in enumerate(rows):
        acc = pct(r.get("accuracy"))
        if r.get("accuracy_std") is not None:  # repeated over seeds: mean ± std
            acc += f" ± {100 * float(r['accuracy_std']):.1f}"
        if r.get("accuracy_ci95"):
            acc += f" [{_interval(r['accuracy_ci95'])}]"
        cells = [
            cell(r.get("name")) + (f" {BEST_MARK}" if i in best else ""),
            cell(r.get("fusion")),
            cell(r.get("head")),
            cell(_dim(r)),
            pct(r.get("valid_accuracy")),
            acc,
            pct(r.get("macro_map")),
            _delta(r),
            _verdict(r),
            _vs_mfcc(r),
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
    names = [cell(n) for n in label_names]
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
    lines += [f"| {cell(name)} | {pct(ap)} |" for name, ap in per_class_ap.items()]
    return "\n".join(lines)


def pivot_table(rows: Sequence[Mapping[str, Any]], best_key: str = BEST_KEY) -> str:
    """Markdown: one line per variant name, one column per head, cells "accuracy / macro mAP"
    (%); the cell chosen by `best_key` (valid accuracy) bold with a ★."""
    names = list(dict.fromkeys(str(r.get("name")) for r in rows))
    heads = list(dict.fromkeys(str(r.get("head")) for r in rows))
    best = best_indices(rows, best_key)
    cells: dict[tuple[str, str], str] = {}
    for i, r in enumerate(rows):
        text = f"{pct(r.get('accuracy'))} / {pct(r.get('macro_map'))}"
        cells[(str(r.get("name")), str(r.get("head")))] = (
            f"**{text} {BEST_MARK}**" if i in best else text
        )
    lines = ["| variant | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for n in names:
        lines.append(f"| {cell(n)} | " + " | ".join(cells.get((n, h), "—") for h in heads) + " |")
    return "\n".join(lines)


def row_label(row: Mapping[str, Any]) -> str:
    """`name · head`: how plots and the best-row sentence name a row."""
    return f"{row.get('name')} · {row.get('head')}"


def best_sentence(row: Mapping[str, Any], best_key: str = BEST_KEY) -> str:
    """The one line under a table naming its starred row, what it is and its test accuracy."""
    fmts = " + ".join(row.get("formats") or [])
    single = row.get("fusion") in ("none", "single", None)
    what = f"format {fmts}" if single else f"{row.get('fusion')} fusion of {fmts}"
    return (
        f"{BEST_MARK} {chosen_phrase(best_key)}: **{cell(row_label(row))}** ({what}; "
        f"test accuracy {pct(row.get('accuracy'))} %)"
    )


def best_trials_table(best: Mapping[str, Mapping[str, Any]], metric: str) -> str:
    """A sweep's best trial per format (validation split): trial, metric, epochs, parameters."""
    lines = [
        "## Best trial per format (validation split)",
        "",
        f"| format | trial | {metric} | epochs | hyperparameters |",
        "|---|---|---:|---:|---|",
    ]
    for fmt, b in best.items():
        hp = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in b["hyperparameters"].items()
        )
        lines.append(f"| {fmt} | {b['trial']} | {b[metric]:.3f} | {b['epochs_done']} | {hp} |")
    return "\n".join(lines) + "\n"
