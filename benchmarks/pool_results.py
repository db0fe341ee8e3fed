"""Pool the paired gains of several runs: is a row's gain over its random-init control real across
datasets too small to show it one at a time? Reads `results.json` of `mfclr run` (any number);
the last stdout line is one JSON object.

With 135 test tracks (the held-out real music's shape) a single run's paired interval is about
±8 points, so a gain of +4 cannot clear zero on any one dataset. Over k datasets the pooled gain is
the mean of the per-dataset gains (each dataset weighs the same whatever its size), and its 95 %
interval comes from resampling every dataset's test tracks independently, the same tracks for a
row and its control (a stratified paired bootstrap). Rows are matched by name and head; a row
missing from some run is left out.

    python benchmarks/pool_results.py runs/general/seed{4,5,6}-9small/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mfclr.errors import DataError
from mfclr.report.results import read_results

N_BOOT = 4000


def _pairs(results: dict[str, Any]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(name, head) -> (row's per-track correct, its control's), for every trained row."""
    rows = results["rows"]
    by_key = {(r["name"], r["head"]): r for r in rows}
    out = {}
    for r in rows:
        control = by_key.get((r.get("control"), r["head"]))
        if control is None or r.get("test_correct") is None or control.get("test_correct") is None:
            continue
        a, b = np.asarray(r["test_correct"], float), np.asarray(control["test_correct"], float)
        if a.shape != b.shape:
            raise DataError(f"{r['name']}: row and control cover different test tracks")
        out[(r["name"], r["head"])] = (a, b)
    return out


def pool(runs: list[dict[str, Any]], *, n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
    """One entry per (name, head) present in every run: per-run gains, their mean, and the
    stratified paired-bootstrap 95 % interval of the mean."""
    pairs = [_pairs(r) for r in runs]
    keys = [k for k in pairs[0] if all(k in p for p in pairs[1:])]
    rng = np.random.default_rng(seed)
    out = []
    for name, head in keys:
        diffs = [p[(name, head)][0] - p[(name, head)][1] for p in pairs]
        gains = [float(d.mean()) for d in diffs]
        boot = np.mean([d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1) for d in diffs], 0)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        entry = {"name": name, "head": head, "gains": gains, "mean_gain": float(np.mean(gains))}
        out.append(entry | {"ci95": [float(lo), float(hi)], "positive": sum(g > 0 for g in gains)})
    return out


def table(pooled: list[dict], labels: list[str]) -> str:
    head = " | ".join(labels)
    lines = [f"| row | head | {head} | mean Δ [95% CI] | above 0 |",
             "|---|---|" + "---:|" * len(labels) + "---:|---|"]  # fmt: skip
    for p in pooled:
        per = " | ".join(f"{100 * g:+.1f}" for g in p["gains"])
        lo, hi = (100 * v for v in p["ci95"])
        mark = "✓" if lo > 0 else "✗" if hi < 0 else "—"
        mean = f"{100 * p['mean_gain']:+.1f} [{lo:+.1f}, {hi:+.1f}]"
        count = f"{p['positive']}/{len(p['gains'])}"
        lines.append(f"| {p['name']} | {p['head']} | {per} | {mean} | {mark} ({count}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="results.json of mfclr run, one per run")
    ap.add_argument("--labels", help="comma-separated column names (default: the run folders)")
    args = ap.parse_args(argv)
    try:
        runs = [read_results(p) for p in args.results]
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = args.labels.split(",") if args.labels else [p.parent.name for p in args.results]
    if len(labels) != len(runs):
        print(f"error: --labels names {len(labels)} runs, {len(runs)} given", file=sys.stderr)
        return 2
    pooled = pool(runs)
    print(table(pooled, labels))
    print(json.dumps({"runs": [str(p) for p in args.results], "labels": labels, "rows": pooled}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
