"""Pooled paired differences over datasets: is a gain real across datasets too small to show it
one at a time?

With 84-135 test tracks one dataset's paired interval is about ±8-10 points, so a gain of +4
cannot clear zero on any one dataset. Over k datasets the pooled gain is the mean of the
per-dataset gains (each dataset weighs the same whatever its size), and its 95 % interval comes
from resampling every dataset's test tracks independently, the same tracks for both sides of a
pair (a stratified paired bootstrap).

A *comparison* names two rows of a results.json (by name and head): a row against its
random-init control, against the `mfcc` row, the fused row against the better single format
(chosen on valid), or a row of one config against the same row of another config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mfclr.errors import DataError

N_BOOT = 4000
Row = dict[str, Any]
# (results of one dataset) -> {(label, head): (a's per-track correct, b's)}
Pairing = Callable[[dict[str, Any]], dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]]


def _correct(row: Row) -> np.ndarray:
    return np.asarray(row["test_correct"], dtype=float)


def _by_key(results: dict[str, Any]) -> dict[tuple[str, str], Row]:
    return {(r["name"], r["head"]): r for r in results["rows"]}


def _pair(a: Row, b: Row) -> tuple[np.ndarray, np.ndarray]:
    x, y = _correct(a), _correct(b)
    if x.shape != y.shape:
        raise DataError(f"{a['name']} and {b['name']} cover different test tracks")
    return x, y


def vs_control(results: dict[str, Any]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Every trained row against its random-init control."""
    rows = _by_key(results)
    out = {}
    for (name, head), r in rows.items():
        control = rows.get((r.get("control"), head))
        if control is not None:
            out[(name, head)] = _pair(r, control)
    return out


def vs_mfcc(results: dict[str, Any]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Every row that has a `delta_vs_mfcc` against the `mfcc` row of its head."""
    rows = _by_key(results)
    out = {}
    for (name, head), r in rows.items():
        mfcc = rows.get(("mfcc", head))
        if mfcc is not None and "delta_vs_mfcc" in r:
            out[(name, head)] = _pair(r, mfcc)
    return out


def vs_best_single(
    results: dict[str, Any], formats: Sequence[str] = ("audio", "spectrogram")
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Every fused row of the trained encoders against the better single format of its head,
    the better one chosen on valid accuracy (never test)."""
    rows = _by_key(results)
    out = {}
    for (name, head), r in rows.items():
        if r.get("encoders") != "trained" or r.get("fusion") in (None, "none"):
            continue
        best = best_single(rows, head, formats)
        if best is not None:
            out[(name, head)] = _pair(r, best)
    return out


def best_single(
    rows: dict[tuple[str, str], Row], head: str, formats: Sequence[str] = ("audio", "spectrogram")
) -> Row | None:
    """The single-format row of `head` with the best valid accuracy (never test); None unless
    at least two formats have a row. `rows` is keyed by (name, head)."""
    singles = [rows[(f, head)] for f in formats if (f, head) in rows]
    if len(singles) < 2:
        return None
    return max(singles, key=lambda s: s.get("valid_accuracy") or 0.0)


def between(a: dict[str, Any], b: dict[str, Any]) -> dict[tuple[str, str], tuple[np.ndarray, ...]]:
    """Each row of results `a` against the same row (name, head) of results `b` (another config
    on the same dataset)."""
    ra, rb = _by_key(a), _by_key(b)
    return {k: _pair(ra[k], rb[k]) for k in ra if k in rb}


def pool(
    per_dataset: list[dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One entry per (name, head) present in every dataset: per-dataset gains, their mean, and
    the stratified paired-bootstrap 95 % interval of the mean (fractions)."""
    if not per_dataset:
        return []
    keys = [k for k in per_dataset[0] if all(k in p for p in per_dataset[1:])]
    rng = np.random.default_rng(seed)
    out = []
    for name, head in keys:
        diffs = [p[(name, head)][0] - p[(name, head)][1] for p in per_dataset]
        gains = [float(d.mean()) for d in diffs]
        boot = np.mean([d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1) for d in diffs], 0)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out.append({"name": name, "head": head, "gains": gains, "mean_gain": float(np.mean(gains)),
                    "ci95": [float(lo), float(hi)],
                    "positive": sum(g > 0 for g in gains)})  # fmt: skip
    return out


def verdict(ci: Sequence[float]) -> str:
    return "✓" if ci[0] > 0 else "✗" if ci[1] < 0 else "—"


def table(pooled: list[dict[str, Any]], labels: Sequence[str], what: str = "Δ") -> str:
    """Markdown: one line per row, the per-dataset gains in points, the pooled mean and
    interval, and ✓ (interval above 0), ✗ (below) or — (contains 0)."""
    lines = [f"| row | head | {' | '.join(labels)} | pooled {what} [95% CI] | above 0 |",
             "|---|---|" + "---:|" * len(labels) + "---:|---|"]  # fmt: skip
    for p in pooled:
        per = " | ".join(f"{100 * g:+.1f}" for g in p["gains"])
        lo, hi = (100 * v for v in p["ci95"])
        mean = f"{100 * p['mean_gain']:+.1f} [{lo:+.1f}, {hi:+.1f}]"
        count = f"{p['positive']}/{len(p['gains'])}"
        lines.append(f"| {p['name']} | {p['head']} | {per} | {mean} | {verdict(p['ci95'])} "
                     f"({count}) |")  # fmt: skip
    return "\n".join(lines)


def accuracy_table(per: dict[str, dict[str, Any]], head: str) -> str:
    """Test accuracy (%) per row (one head) and dataset."""
    names = list(per)
    order = [r["name"] for r in next(iter(per.values()))["rows"] if r["head"] == head]
    lines = [f"| row ({head}) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for row in order:
        cells = []
        for res in per.values():
            match = [r for r in res["rows"] if r["name"] == row and r["head"] == head]
            cells.append(f"{100 * match[0]['accuracy']:.1f}" if match else "—")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
