"""What `mfclr predict` prints and writes: the top-k labels of each file as a terminal table,
a CSV or a JSON file (no torch: plain lists in, text out).

`top` is, per file, its k (label, probability) pairs, most probable first; `skipped` the files
that could not be used as (path, reason, message).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mfclr.errors import ConfigError
from mfclr.io import atomic_write_text

Top = Sequence[Sequence[tuple[str, float]]]
Skipped = Sequence[tuple[str, str, str]]
SUFFIXES = (".csv", ".json")


def check_out(path: Path) -> None:
    """Refuse an --out that is not a .csv or .json file name, before any work."""
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(
            f"--out '{path}' must end in .csv or .json (the predictions' format), "
            f"e.g. {path.with_suffix('.csv')}"
        )
    if path.is_dir():
        raise ConfigError(f"--out '{path}' is a folder; pass a file name such as preds.csv")


def predictions_table(paths: Sequence[str], top: Top) -> str:
    """A markdown table: one row per file, its k labels with probabilities (0.00-1.00)."""
    k = max((len(t) for t in top), default=0)
    names = ["1st", "2nd", "3rd"] + [f"{i}th" for i in range(4, k + 1)]
    lines = ["| file | " + " | ".join(names[:k]) + " |", "|---" * (k + 1) + "|"]
    for path, pairs in zip(paths, top, strict=True):
        cells = [f"{label} {p:.2f}" for label, p in pairs]
        lines.append(f"| {path.replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_line(n_files: int, skipped: Skipped) -> str:
    """`12 files predicted, 2 skipped (corrupt 1, short 1)`."""
    causes = Counter(reason for _, reason, _ in skipped)
    detail = ", ".join(f"{k} {v}" for k, v in sorted(causes.items()))
    return f"{n_files} files predicted, {len(skipped)} skipped" + (f" ({detail})" if detail else "")


def predictions_csv(paths: Sequence[str], top: Top) -> str:
    """CSV: path, then label_1, probability_1, ..., label_k, probability_k."""
    k = max((len(t) for t in top), default=0)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path"] + [f"{c}_{i}" for i in range(1, k + 1)
                                for c in ("label", "probability")])  # fmt: skip
    for path, pairs in zip(paths, top, strict=True):
        writer.writerow([path] + [v for label, p in pairs for v in (label, repr(p))])
    return buf.getvalue()


def predictions_json(
    paths: Sequence[str], top: Top, probs: Sequence[Sequence[float]], label_names: Sequence[str],
    skipped: Skipped, model: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """{"model", "label_names", "predictions": [{path, top: [{label, probability}],
    probabilities: {label: p}}], "skipped": [{path, reason, message}]}."""
    return {
        "model": model,
        "label_names": list(label_names),
        "predictions": [
            {
                "path": path,
                "top": [{"label": lab, "probability": p} for lab, p in pairs],
                "probabilities": {n: float(v) for n, v in zip(label_names, row, strict=True)},
            }
            for path, pairs, row in zip(paths, top, probs, strict=True)
        ],  # fmt: skip
        "skipped": [{"path": p, "reason": r, "message": m} for p, r, m in skipped],
    }


def write_predictions(
    path: Path, paths: Sequence[str], top: Top, probs: Sequence[Sequence[float]],
    label_names: Sequence[str], skipped: Skipped, model: dict[str, Any],
) -> Path:  # fmt: skip
    """Write `predictions_csv` or `predictions_json`, by `path`'s suffix, atomically."""
    if path.suffix.lower() == ".csv":
        text = predictions_csv(paths, top)
    else:
        payload = predictions_json(paths, top, probs, label_names, skipped, model)
        text = json.dumps(payload, indent=2) + "\n"
    return atomic_write_text(path, text, "predictions")
