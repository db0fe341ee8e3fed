"""Probe on every chunk's embedding (CLMR's protocol) instead of the track mean: does it help the
fused row against the better single format?

Reads a panel report (`experiments.panel`), embeds each dataset's tracks chunk by chunk with the
report's trained encoders, and fits one probe per level on the same features: a multinomial
logistic regression on standardised features, its L2 strength chosen on valid log-loss. At the
`mean` level it is fitted on track means; at the `chunk` level on every chunk, a track's
probabilities being the mean of its chunks'. Both levels share this probe (scikit-learn's), so
the comparison is between levels, not between this probe and mfclr's.

    python -m experiments.chunk_probe runs/panel/reports/a-rms1400.json --out chunk.json
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from experiments.panel import PANEL
from mfclr.config import SPLITS, load_config
from mfclr.config.panel import load_panel
from mfclr.data.clips import iter_track_chunks
from mfclr.data.datasets import Datasets
from mfclr.formats.frozen import FrozenEncoder, load_frozen
from mfclr.probe import pool

FORMATS = ("audio", "spectrogram")
CS = (1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)  # inverse L2 strengths (scikit-learn's C)


def chunk_embeddings(
    frozen: FrozenEncoder, split: Any, max_chunks: int
) -> tuple[np.ndarray, np.ndarray]:
    """(chunk embeddings (n_chunks, D), their track indices) of one split."""
    frozen.encoder.eval()
    frozen.frontend.eval()
    xs, tracks = [], []
    with torch.inference_mode():
        for i, chunks in iter_track_chunks(split, frozen.crop_samples, max_chunks):
            xs.append(frozen.embed_input(torch.from_numpy(chunks)).numpy())
            tracks += [i] * len(chunks)
    return np.concatenate(xs), np.asarray(tracks)


def per_track_mean(rows: np.ndarray, tracks: np.ndarray, n_tracks: int) -> np.ndarray:
    """The mean of each track's chunk rows (embeddings or class probabilities)."""
    out = np.zeros((n_tracks, rows.shape[1]))
    np.add.at(out, tracks, rows)
    return out / np.bincount(tracks, minlength=n_tracks)[:, None]


def fit_level(feats: dict[str, tuple[np.ndarray, np.ndarray]], labels: dict[str, np.ndarray],
              level: str) -> dict[str, Any]:  # fmt: skip
    """Fit at `level` ("mean" or "chunk"); the valid-chosen fit's valid accuracy and test rows."""

    def rows(split: str) -> tuple[np.ndarray, np.ndarray]:
        x, tracks = feats[split]
        n = len(labels[split])
        return (per_track_mean(x, tracks, n), np.arange(n)) if level == "mean" else (x, tracks)

    x_train, t_train = rows("train")
    scaler = StandardScaler().fit(x_train)
    best: dict[str, Any] | None = None
    for c in CS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=c, max_iter=2000).fit(
                scaler.transform(x_train), labels["train"][t_train]
            )
        probs = {}
        for split in ("valid", "test"):
            x, t = rows(split)
            p = clf.predict_proba(scaler.transform(x))
            probs[split] = per_track_mean(p, t, len(labels[split]))
        loss = log_loss(labels["valid"], probs["valid"], labels=clf.classes_)
        if best is None or loss < best["valid_loss"]:
            right = {s: (probs[s].argmax(1) == labels[s]).astype(int) for s in probs}
            best = {
                "valid_loss": float(loss),
                "C": c,
                "valid_accuracy": float(right["valid"].mean()),
                "test_correct": right["test"],
            }
    assert best is not None
    return best


def dataset_rows(results_path: Path, overrides: list[str], max_chunks: int) -> dict[str, Any]:
    """Rows (name, head = the level) of one dataset, as pool's pairings read them."""
    results = json.loads(results_path.read_text())
    cfg = load_config(preset="demo", overrides=overrides)
    data = Datasets(progress=False).get(cfg.data, "probe")
    labels = {s: np.asarray(data.splits[s].labels) for s in SPLITS}
    frozen = {f: load_frozen(results["checkpoints"][f]) for f in FORMATS}
    chunks = {f: {s: chunk_embeddings(frozen[f], data.splits[s], max_chunks) for s in SPLITS}
              for f in FORMATS}  # fmt: skip
    fused = {s: (np.concatenate([chunks[f][s][0] for f in FORMATS], 1), chunks[FORMATS[0]][s][1])
             for s in SPLITS}  # fmt: skip
    rows = []
    for level in ("mean", "chunk"):
        for name, feats in [*((f, chunks[f]) for f in FORMATS), ("fused", fused)]:
            fit = fit_level(feats, labels, level)
            rows.append({"name": name, "head": level, "valid_accuracy": fit["valid_accuracy"],
                         "C": fit["C"], "accuracy": float(fit["test_correct"].mean()),
                         "test_correct": fit["test_correct"].tolist()})  # fmt: skip
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="a panel report .json (experiments.panel)")
    ap.add_argument("--panel", type=Path, default=PANEL)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for loading the data, e.g. data.cache_dir=cache",
    )
    ap.add_argument("--max-chunks", type=int, default=8)
    ap.add_argument("--out", type=Path, help="write accuracies and pooled verdicts here (.json)")
    args = ap.parse_args(argv)
    report = json.loads(args.report.read_text())
    names = report["pooled_datasets"]
    panel = load_panel(args.panel, names)
    per = {}
    for name in names:
        over = [f"{k}={v}" for k, v in panel[name]["set"].items()] + args.set
        per[name] = dataset_rows(Path(report["results"][name]), over, args.max_chunks)
        print(f"{name}: embedded and probed", file=sys.stderr, flush=True)

    def fused_vs_best(results: dict[str, Any]) -> dict[tuple[str, str], tuple[Any, Any]]:
        rows = {(r["name"], r["head"]): r for r in results["rows"]}
        out = {}
        for level in ("mean", "chunk"):
            best = pool.best_single(rows, level, FORMATS)
            assert best is not None
            out[("fused", level)] = (np.asarray(rows[("fused", level)]["test_correct"], float),
                                     np.asarray(best["test_correct"], float))  # fmt: skip
        return out

    def chunk_vs_mean(results: dict[str, Any]) -> dict[tuple[str, str], tuple[Any, Any]]:
        rows = {(r["name"], r["head"]): r for r in results["rows"]}
        return {(n, "chunk - mean"): (np.asarray(rows[(n, "chunk")]["test_correct"], float),
                                      np.asarray(rows[(n, "mean")]["test_correct"], float))
                for n in (*FORMATS, "fused")}  # fmt: skip

    summary = {"fused_vs_best_single": pool.pool([fused_vs_best(per[n]) for n in names]),
               "chunk_vs_mean": pool.pool([chunk_vs_mean(per[n]) for n in names])}  # fmt: skip
    accuracy = {n: {f"{r['name']}/{r['head']}": r["accuracy"] for r in per[n]["rows"]}
                for n in names}  # fmt: skip
    print(f"\n## test accuracy\n\n{pool.accuracy_table(per, 'mean')}")
    print(f"\n{pool.accuracy_table(per, 'chunk')}")
    for key, rows in summary.items():
        print(f"\n## {key}\n\n{pool.table(rows, names)}")
    if args.out:
        out = {"report": str(args.report), "argv": argv or sys.argv[1:], "accuracy": accuracy}
        args.out.write_text(json.dumps(out | summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
