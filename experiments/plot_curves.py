"""Overlay learning curves (curve.json files of experiments/learning_curve.py) in one PNG.

    python -m experiments.plot_curves --out docs/img/curves.png \
        "spectrogram, NT-Xent=runs/curve/specC1/curve.json" \
        "spectrogram, NT-Xent + VC=runs/curve/specD2/curve.json"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("curves", nargs="+", help="LABEL=path/to/curve.json (same format per panel)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    by_format: dict[str, list[tuple[str, dict]]] = {}
    for item in args.curves:
        label, _, path = item.partition("=")
        data = json.loads(Path(path).read_text())
        by_format.setdefault(data["format"], []).append((label, data))
    fig, axes = plt.subplots(1, len(by_format), figsize=(6 * len(by_format), 4.2), squeeze=False)
    for ax, (fmt, curves) in zip(axes[0], sorted(by_format.items()), strict=True):
        control = curves[0][1]["points"][0]
        lo = 100 * (control["linear_test"] - max(control["linear_test_std"], 0.0))
        ax.axhline(100 * control["linear_test"], color="grey", lw=2, label="random-init (step 0)")
        ax.axhspan(lo - 0.1, 100 * (control["linear_test"] + control["linear_test_std"]) + 0.1,
                   color="grey", alpha=0.2)  # fmt: skip
        for label, data in curves:
            pts = data["points"]
            steps = [p["step"] for p in pts]
            ax.plot(steps, [100 * p["linear_test"] for p in pts], "o-", label=label)
        ax.set_xscale("symlog", linthresh=48)
        ax.set_xlabel("optimiser steps (batch 32)")
        ax.set_ylabel("linear probe, test accuracy (%)")
        ax.set_title(fmt)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
