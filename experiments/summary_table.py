"""One run's results.json as the short table the README and docs/results.md show: one head,
each trained row with its accuracy, its paired Δ over its untrained control and over the MFCC
row, then the controls and the MFCC row themselves.

    python -m experiments.summary_table runs/demo/results.json --head linear
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mfclr.errors import DataError
from mfclr.report.results import read_results


def _pts(v: float) -> str:
    return f"{100 * v:+.1f}"


def _delta(row: dict[str, Any], key: str, ci_key: str) -> str:
    if row.get(key) is None:
        return "—"
    lo, hi = row[ci_key]
    mark = " ✓" if lo > 0 else " ✗" if hi < 0 else ""
    return f"{_pts(row[key])} [{_pts(lo)}, {_pts(hi)}]{mark}"


def table(results: dict[str, Any], head: str) -> str:
    rows = [r for r in results["rows"] if r["head"] == head and "accuracy" in r]
    trained = [r for r in rows if r.get("control")]
    others = [r for r in rows if not r.get("control")]
    lines = ["| row | test acc. % [95% CI] | Δ vs its control | Δ vs MFCC |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for r in trained + others:
        acc = f"{100 * r['accuracy']:.1f}"
        if r.get("accuracy_ci95"):
            acc += " [{:.1f}, {:.1f}]".format(*(100 * v for v in r["accuracy_ci95"]))
        lines.append(f"| {r['name']} | {acc} | {_delta(r, 'delta_vs_control', 'delta_ci95')} | "
                     f"{_delta(r, 'delta_vs_mfcc', 'mfcc_delta_ci95')} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a run's results.json")
    ap.add_argument("--head", default="linear")
    args = ap.parse_args(argv)
    try:
        print(table(read_results(args.results), args.head))
    except DataError as err:
        print(f"summary_table: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
