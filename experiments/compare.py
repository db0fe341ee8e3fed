"""Two panel reports, row against row: is recipe A level with recipe B? For each trained row
(name, head) the paired Δ A − B on every pooled dataset (the same test tracks under both
recipes) and its stratified bootstrap interval over the panel. The last stdout line is one JSON
object.

    python -m experiments.compare runs/panel/reports/shipped.json runs/panel/reports/ntxent.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mfclr.errors import DataError
from mfclr.io import atomic_write_text
from mfclr.probe import pool as pooling
from mfclr.report.results import read_results


def _results(report: Path) -> dict[str, dict[str, Any]]:
    """The pooled datasets' results of one panel report, by dataset name."""
    try:
        data = json.loads(report.read_text())
        paths = {n: Path(data["results"][n]) for n in data["pooled_datasets"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{report}: not a panel report ({e}); give a reports/<label>.json") from e
    return {n: read_results(p) for n, p in paths.items()}


def compare(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> tuple[list[str], list]:
    """The datasets both reports pooled, and each trained row's pooled Δ of a over b there."""
    names = [n for n in a if n in b]
    if not names:
        raise DataError("the two reports pool no dataset in common")
    per = []
    for n in names:
        trained = {(r["name"], r["head"]) for r in a[n]["rows"] if r.get("control")}
        per.append({k: v for k, v in pooling.between(a[n], b[n]).items() if k in trained})
    return names, pooling.pool(per)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="panel report .json of the recipe under test")
    ap.add_argument("b", type=Path, help="panel report .json of the reference recipe")
    ap.add_argument("--out", type=Path, help="also write the table and JSON here (.md)")
    args = ap.parse_args(argv)
    try:
        names, rows = compare(_results(args.a), _results(args.b))
    except DataError as err:
        print(f"compare: error: {err}", file=sys.stderr)
        return 2
    title = f"{args.a.stem} − {args.b.stem}, paired on the same test tracks"
    md = f"## {title}\n\n{pooling.table(rows, names)}\n"
    summary = {"a": str(args.a), "b": str(args.b), "datasets": names, "rows": rows}
    if args.out:
        atomic_write_text(args.out, md)
        atomic_write_text(args.out.with_suffix(".json"), json.dumps(summary, indent=1) + "\n")
    print(md)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
