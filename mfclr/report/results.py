"""results.json and results.md of a probe table (no torch: `mfclr report` reads them back).

results.json: {"rows": [...], **facts} (facts: dataset, test_tracks, label_names, git_sha and
what the caller adds). results.md: the facts, the variants table, the best row's confusion matrix
and per-class AP, then any extra sections the caller hands over (written once, never re-read).
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
from mfclr.report.markdown import (
    BEST_KEY,
    best_indices,
    best_sentence,
    cell,
    format_confusion,
    format_per_class_ap,
    results_table,
)


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


def results_markdown(
    rows: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
    best_key: str = BEST_KEY,
    sections: Sequence[str] = (),
) -> str:
    """results.md: run facts, the table, the best row's confusion matrix and per-class AP, then
    `sections` (markdown blocks, in order)."""
    parts = ["# Probe results", ""]
    facts = {k: v for k, v in extra.items() if isinstance(v, str | int | float | bool)}
    parts += [f"- {k}: {v}" for k, v in facts.items()] + ([""] if facts else [])
    if rows:  # a panel sweep's own file holds only the pooled verdicts (its sections)
        parts += [results_table(rows, best_key=best_key), ""]
    best = sorted(best_indices(rows, best_key))
    if best:
        row = rows[best[0]]
        parts += [best_sentence(row, best_key), ""]
        per_class = row.get("per_class_ap") or {}
        names = extra.get("label_names") or list(per_class)
        if row.get("confusion_matrix") is not None and names:
            parts += [f"## Confusion matrix: {cell(row.get('name'))} (test)", ""]
            parts += [format_confusion(row["confusion_matrix"], names), ""]
        if per_class:
            parts += [f"## Per-class AP: {cell(row.get('name'))} (test)", ""]
            parts += [format_per_class_ap(per_class), ""]
    parts += [s for section in sections for s in (section.rstrip("\n"), "")]
    return "\n".join(parts)


def write_results(
    out_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
    sections: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write `results.json` ({"rows": [...], **extra}) and `results.md` (with `sections` at the
    end), each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "rows" in extra:
        raise DataError("write_results: 'rows' is reserved in extra; rename that key")
    payload = _jsonable({"rows": list(rows), **extra})
    json_path, md_path = out / "results.json", out / "results.md"
    atomic_write_text(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    atomic_write_text(md_path, results_markdown(payload["rows"], payload, sections=sections))
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
