"""Pool several runs' paired gains over their random-init controls: is a row's gain real across
datasets too small to show it one at a time? Reads the results.json of `mfclr run` / `mfclr
probe` (any number; the pooling itself is `mfclr.probe.pool`); the last stdout line is one JSON
object.

    python -m experiments.pool_results runs/panel/*/probe-*/results.json --labels a,b,c,d
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mfclr.errors import DataError
from mfclr.probe import pool as pooling
from mfclr.report.results import read_results


def pool(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each trained row's gain over its control, pooled over `runs` (rows present in all)."""
    return pooling.pool([pooling.vs_control(r) for r in runs])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="results.json files, one per run")
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
    print(pooling.table(pooled, labels))
    print(json.dumps({"runs": [str(p) for p in args.results], "labels": labels, "rows": pooled}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
