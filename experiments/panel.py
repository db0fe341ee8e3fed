"""One config over a dataset panel: every dataset's probe table, and per row the paired Δ pooled
over the panel's pooled datasets (against the random-init control, the MFCC row, and, for fused
rows, the better single format chosen on valid).

    python -m experiments.panel --preset demo --label demo
    python -m experiments.panel --preset demo --set train.vc_weight=0 --label ntxent
    python -m experiments.panel --preset demo --formats audio --set model.samplecnn.channels=...

Everything is cached and resumes where it stopped (a panel point is hours on 2 cores, and a
background job may be stopped at any time):
    <out>/<dataset>/pretrain/<format>-<fingerprint>-s<seed>/   a `mfclr pretrain` run folder; the
        fingerprint hashes every config key that decides that format's weights
        (mfclr.config.formats.fingerprint), so a change to the audio recipe retrains audio only
    <out>/<dataset>/probe-<key>/results.json    the probe table of those encoders (+ MFCC row)
    <out>/reports/<label>.md|.json              the report
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mfclr.config import Config, load_config
from mfclr.config.formats import DEFAULT_FORMATS, fingerprint
from mfclr.config.panel import load_panel
from mfclr.errors import ConfigError, MfclrError
from mfclr.io import atomic_write_text
from mfclr.probe import pool as pooling

log = logging.getLogger("experiments.panel")
PANEL = Path(__file__).resolve().parents[1] / "panels" / "real.yaml"


def _pretrain(cfg: Config, fmt: str, root: Path, progress: bool) -> dict[str, Path]:
    """The encoder(s) of one pretraining (two for cross), trained once per fingerprint."""
    from mfclr.formats import components
    from mfclr.train.local import pretrain_local

    fp = fingerprint(cfg.for_format(fmt).to_dict(), components(fmt, cfg))
    run_dir = root / "pretrain" / f"{fmt}-{fp}-s{cfg.train.seed}"
    return pretrain_local(cfg, fmt, run_dir, progress=progress)


def _probe(cfg: Config, encoders: dict[str, Path], root: Path) -> dict[str, Any]:
    from mfclr.formats.frozen import load_frozen
    from mfclr.report.results import read_results
    from mfclr.stage import probe_and_report

    material = {"encoders": {f: str(p) for f, p in sorted(encoders.items())},
                "probe": cfg.probe.model_dump(mode="json"), "mel": cfg.mel.model_dump(mode="json"),
                "data": cfg.data.model_dump(mode="json"), "seed": cfg.train.seed}  # fmt: skip
    key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]
    folder = root / f"probe-{key}"
    if not (folder / "results.json").is_file():
        frozen = {f: load_frozen(p, f) for f, p in encoders.items()}
        probe_and_report(cfg, frozen, folder, facts={"checkpoints": material["encoders"]})
    return {**read_results(folder / "results.json"), "results_path": str(folder / "results.json")}


def run_dataset(
    base: Config, name: str, entry: dict[str, Any], formats: list[str], seeds: list[int],
    out: Path, progress: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    """Pretrain (cached) and probe (cached) one dataset at every seed; one results dict each."""
    results = []
    for seed in seeds:
        cfg = base.with_overrides({**entry["set"], "train.seed": seed})
        root = out / name
        encoders = {}
        for fmt in formats:  # cross: its two encoders are the table's trained ones
            log.info("== %s seed %d: %s", name, seed, fmt)
            encoders |= _pretrain(cfg, fmt, root, progress)
        log.info("== %s seed %d: probe", name, seed)
        results.append(_probe(cfg, encoders, root))
    return results


def seed_mean(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One dataset's results averaged over seeds: per row, each test track's fraction of seeds
    that got it right, and the mean valid accuracy (rows present at every seed)."""
    if len(results) == 1:
        return results[0]
    keyed = [{(r["name"], r["head"]): r for r in res["rows"]} for res in results]
    rows = []
    for key, first in keyed[0].items():
        if not all(key in k for k in keyed[1:]):
            continue
        same = [k[key] for k in keyed]
        row = dict(first)
        row["test_correct"] = np.mean([r["test_correct"] for r in same], axis=0).tolist()
        row["accuracy"] = float(np.mean([r["accuracy"] for r in same]))
        row["valid_accuracy"] = float(np.mean([r.get("valid_accuracy") or 0 for r in same]))
        rows.append(row)
    return {**results[0], "rows": rows}


def report(label: str, per: dict[str, dict[str, Any]], pooled_names: list[str],
           command: str) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The markdown report and its JSON: accuracies per dataset, then the pooled comparisons."""
    pooled = {n: per[n] for n in pooled_names if n in per}
    heads = sorted({r["head"] for res in per.values() for r in res["rows"]})
    comparisons = {
        "vs_control": [pooling.vs_control(r) for r in pooled.values()],
        "vs_mfcc": [pooling.vs_mfcc(r) for r in pooled.values()],
        "vs_best_single": [pooling.vs_best_single(r) for r in pooled.values()],
    }
    summary = {k: pooling.pool(v) for k, v in comparisons.items()}
    titles = {
        "vs_control": "against its random-init control",
        "vs_mfcc": "against the MFCC row",
        "vs_best_single": "fused against the better single format (chosen on valid)",
    }
    md = [f"# Panel: {label}", "", f"`{command}`", ""]
    for head in heads:
        md += [pooling.accuracy_table(per, head), ""]
    for key, rows in summary.items():
        if rows:
            md += [f"## Pooled over {', '.join(pooled)}: {titles[key]}", "",
                   pooling.table(rows, list(pooled)), ""]  # fmt: skip
    data = {
        "label": label,
        "command": command,
        "pooled_datasets": list(pooled),
        "results": {n: r.get("results_path") for n, r in per.items()},
        **summary,
    }
    return "\n".join(md), data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--panel", type=Path, default=PANEL)
    ap.add_argument("--datasets", help="comma-separated subset of the panel's datasets")
    ap.add_argument("--formats", default=",".join(DEFAULT_FORMATS))
    ap.add_argument("--seeds", default="0", help="pretraining seeds, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("runs/panel"))
    ap.add_argument("--label", help="the report's name (default: a hash of the overrides)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    command = "python -m experiments.panel " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        panel = load_panel(args.panel)
        names = args.datasets.split(",") if args.datasets else list(panel)
        unknown = [n for n in names if n not in panel]
        if unknown:
            raise ConfigError(f"--datasets: '{unknown[0]}' is not in {args.panel}")
        base = load_config(args.config, args.preset,
                           ["tracking.wandb=disabled", "compare={}", *args.overrides])  # fmt: skip
        formats, seeds = args.formats.split(","), [int(s) for s in args.seeds.split(",")]
        label = args.label or hashlib.sha256(command.encode()).hexdigest()[:8]
        per = {}
        for name in names:
            res = run_dataset(base, name, panel[name], formats, seeds, args.out, not args.quiet)
            per[name] = seed_mean(res)
        md, data = report(label, per, [n for n in names if panel[n]["pooled"]], command)
    except MfclrError as err:
        print(f"panel: error: {err}", file=sys.stderr)
        return 2
    (args.out / "reports").mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "reports" / f"{label}.md", md + "\n")
    atomic_write_text(args.out / "reports" / f"{label}.json", json.dumps(data, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
