"""Which probe settings and fusions make the fused row beat its single formats? Re-probes a run's
saved track embeddings (no encoder is run again); the last stdout line is one JSON object.

For each probe-settings variant (`--variant NAME KEY=VALUE ...`, dotted `probe.*` keys over the
config of `--preset`/`--set`; `base` = the config as it is) and each head, the rows of `mfclr run`
are fitted again from `<embeddings>/{audio,spectrogram}.npz` and their random-init controls
(`random-*.npz`): single formats and every fusion of `--fusions`. Printed per row: valid and test
accuracy, the paired difference to its control and, for fused rows, the paired difference to the
better single format of the same head (chosen on valid, as a user would).

    python -m experiments.fusion_probe --embeddings runs/demo/embeddings --preset demo \\
        --fusions concat,weighted,gated \\
        --variant wide-wd probe.weight_decays=[0.0,0.001,0.01,0.03]

A variant changes the probe of every row alike, controls included: it can make the control
stronger, never weaker than the settings it widens.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mfclr.config import Config, load_config
from mfclr.probe.embed import load_embeddings
from mfclr.probe.fusion import get_fusion
from mfclr.probe.stats import paired_delta

FORMATS = ("audio", "spectrogram")


def _load(folder: Path, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray], int]:
    feats, labels, n = {}, {}, 0
    for fmt in FORMATS:
        e = load_embeddings(folder / f"{prefix}{fmt}.npz")
        nested = e.features()  # a single-format file stores bare "<split>" keys
        feats[fmt] = nested.get("", nested.get(fmt))
        labels, n = e.labels, len(e.label_names)
    return feats, labels, n


def _rows(cfg: Config, sets: dict[str, Any], labels: dict[str, np.ndarray], n: int,
          fusions: list[str], head: str) -> dict[str, dict[str, Any]]:  # fmt: skip
    out = {}
    for kind, feats in sets.items():
        variants = [(f, "concat", {f: feats[f]}) for f in FORMATS]
        variants += [(f"fused-{fu}", fu, feats) for fu in fusions]
        for name, fusion, sub in variants:
            res = get_fusion(fusion)(sub, labels, head, cfg.probe, n)
            correct = (res.probs.argmax(axis=1) == labels["test"]).astype(int)
            out[f"{kind}:{name}"] = {"valid": res.info.get("valid_accuracy"),
                                     "test": float(correct.mean()), "correct": correct}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embeddings", required=True, type=Path)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--fusions", default="concat,weighted")
    ap.add_argument("--heads", default="linear,mlp")
    ap.add_argument("--variant", nargs="+", action="append", default=[],
                    metavar="NAME KEY=VALUE")  # fmt: skip
    args = ap.parse_args(argv)
    base = load_config(preset=args.preset, overrides=args.set)
    variants = {"base": base}
    for name, *pairs in args.variant:
        over = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}
        variants[name] = base.with_overrides(over)
    trained, labels, n = _load(args.embeddings, "")
    control, _, _ = _load(args.embeddings, "random-")
    fusions = [f for f in args.fusions.split(",") if f]
    result: dict[str, Any] = {
        "embeddings": str(args.embeddings),
        "test_tracks": len(labels["test"]),
        "variants": {},
    }
    print("| variant | head | row | valid | test | Δ control [95% CI] | Δ best single [95% CI] |")
    print("|---|---|---|---:|---:|---:|---:|")
    for vname, cfg in variants.items():
        result["variants"][vname] = {"probe": cfg.probe.model_dump(), "rows": []}
        for head in args.heads.split(","):
            rows = _rows(cfg, {"trained": trained, "control": control}, labels, n, fusions, head)
            single = max(FORMATS, key=lambda f: rows[f"trained:{f}"]["valid"])
            for key, r in rows.items():
                kind, name = key.split(":")
                if kind != "trained":
                    continue
                d, ci = paired_delta(r["correct"], rows[f"control:{name}"]["correct"])
                row = {"head": head, "row": name, "valid": r["valid"], "test": r["test"],
                       "delta_control": d, "delta_control_ci95": list(ci)}  # fmt: skip
                vs = ""
                if name.startswith("fused"):
                    ds, cis = paired_delta(r["correct"], rows[f"trained:{single}"]["correct"])
                    row |= {"vs_single": single, "delta_single": ds, "delta_single_ci95": list(cis)}
                    vs = f"{100 * ds:+.1f} [{100 * cis[0]:+.1f} – {100 * cis[1]:+.1f}] vs {single}"
                result["variants"][vname]["rows"].append(row)
                print(f"| {vname} | {head} | {name} | {100 * r['valid']:.1f} | "
                      f"{100 * r['test']:.1f} | {100 * d:+.1f} [{100 * ci[0]:+.1f} – "
                      f"{100 * ci[1]:+.1f}] | {vs} |", flush=True)  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
