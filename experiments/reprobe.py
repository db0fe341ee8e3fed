"""Re-probe a panel's saved track embeddings with other fusions or probe settings, and pool the
verdicts: no encoder runs again, so a fusion is judged on a whole panel in minutes.

Reads a panel report (`experiments.panel`'s `<out>/reports/<label>.json`, which names each
dataset's results.json; the embeddings lie beside it), fits every single format and every fusion
of `--fusions` for the trained encoders and their random-init controls, and prints per pooled
verdict (against the control, against the better single format chosen on valid) one table, and
the ceiling of any fusion of the two: a track counted right when either format gets it right.

    python -m experiments.reprobe runs/panel/reports/ntxent.json --fusions concat,scaled,weighted
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mfclr.config import load_config
from mfclr.probe import pool
from mfclr.probe.embed import load_embeddings
from mfclr.probe.fusion import get_fusion

FORMATS = ("audio", "spectrogram")
SETS = {"trained": "", "random-init": "random-"}  # encoder set -> embedding file prefix


def _features(folder: Path, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray], int]:
    feats, labels, n = {}, {}, 0
    for fmt in FORMATS:
        e = load_embeddings(folder / f"{prefix}{fmt}.npz")
        nested = e.features()
        feats[fmt] = nested.get("", nested.get(fmt))
        labels, n = e.labels, len(e.label_names)
    return feats, labels, n


def dataset_rows(folder: Path, cfg: Any, fusions: list[str], heads: list[str]) -> dict[str, Any]:
    """A results-like dict ({"rows": [...]}) of the embeddings in `folder`."""
    rows = []
    for kind, prefix in SETS.items():
        feats, labels, n = _features(folder, prefix)
        variants = [(f, "none", {f: feats[f]}) for f in FORMATS]
        variants += [("fused" if fu == "concat" else f"fused-{fu}", fu, feats) for fu in fusions]
        for head in heads:
            for name, fusion, sub in variants:
                res = get_fusion("concat" if fusion == "none" else fusion)(
                    sub, labels, head, cfg.probe, n
                )
                correct = (res.probs.argmax(axis=1) == labels["test"]).astype(int)
                row_name = name if kind == "trained" else (
                    kind + name.removeprefix("fused") if name.startswith("fused")
                    else f"{kind}-{name}")  # fmt: skip
                rows.append({"name": row_name, "head": head, "fusion": fusion, "encoders": kind,
                             "valid_accuracy": res.info.get("valid_accuracy"),
                             "accuracy": float(correct.mean()), "test_correct": correct.tolist(),
                             "weights": res.info.get("weights")})  # fmt: skip
    controls = {(r["head"], r["fusion"]): r["name"] for r in rows if r["encoders"] != "trained"}
    for r in rows:
        if r["encoders"] == "trained":
            key = (r["head"], r["fusion"])
            r["control"] = (
                controls.get(key) if r["fusion"] != "none" else f"random-init-{r['name']}"
            )
    return {"rows": rows}


def ceiling(results: dict[str, Any]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """What any fusion of these two formats could gain at most: a track counts as right when
    either single format gets it right, against the better single format chosen on valid. When
    the formats fail on the same tracks this bound is small, whatever the fusion."""
    rows = {(r["name"], r["head"]): r for r in results["rows"] if r["encoders"] == "trained"}
    out = {}
    for head in {h for _, h in rows}:
        best = pool.best_single(rows, head, FORMATS)
        if best is None:
            continue
        singles = [rows[(f, head)] for f in FORMATS if (f, head) in rows]
        either = np.max([np.asarray(s["test_correct"], float) for s in singles], axis=0)
        out[("either format right", head)] = (either, np.asarray(best["test_correct"], float))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="a panel report .json (experiments.panel)")
    ap.add_argument("--fusions", default="concat,scaled,weighted,average,product")
    ap.add_argument("--heads", default="linear")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, help="write the pooled verdicts here (.json)")
    args = ap.parse_args(argv)
    report = json.loads(args.report.read_text())
    cfg = load_config(preset=args.preset, overrides=args.set)
    pooled = report["pooled_datasets"]
    per = {n: dataset_rows(Path(report["results"][n]).parent / "embeddings", cfg,
                           args.fusions.split(","), args.heads.split(","))
           for n in pooled}  # fmt: skip
    summary = {
        "vs_control": pool.pool([pool.vs_control(per[n]) for n in pooled]),
        "vs_best_single": pool.pool([pool.vs_best_single(per[n]) for n in pooled]),
        "ceiling_vs_best_single": pool.pool([ceiling(per[n]) for n in pooled]),
    }
    for key, rows in summary.items():
        print(f"\n## {key}\n\n{pool.table(rows, pooled)}")
    accuracy = {n: {f"{r['name']}/{r['head']}": r["accuracy"] for r in per[n]["rows"]}
                for n in pooled}  # fmt: skip
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "report": str(args.report),
                    "argv": argv or sys.argv[1:],
                    "accuracy": accuracy,
                    **summary,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
