"""Learning curve: representation quality against optimiser steps and CPU seconds, per seed.

For one format and one config (any preset, config file and --set overrides, so any labelled
dataset the config can name), pretrain and, at log-spaced step counts starting at 0 (the
random-init control: the same architecture and seed, untrained), embed every probe-split track
with the frozen encoder and score it with cosine kNN and the standardised, valid-tuned linear
probe on valid and test. Repeated over seeds. Writes `curve.json` and `curve.png` into --out and
prints the JSON summary as its last stdout line.

    python -m experiments.learning_curve --preset demo --format spectrogram \
        --steps 0,25,50,100,200,400 --seeds 0,1,2 --out runs/curve/spec

The steps are evaluated along one run per seed (the learning-rate schedule is the config's, over
the largest step count), so an intermediate point is a snapshot, not a run scheduled to end there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfclr.config import Config, load_config
from mfclr.data import load_dataset
from mfclr.distributed import resolve_device
from mfclr.encoders import encoder_from_spec
from mfclr.formats.frozen import FrozenEncoder, frozen_from, random_frozen
from mfclr.io import atomic_write_text
from mfclr.probe.embed import embed_splits
from mfclr.probe.fit import fit_probe
from mfclr.probe.validate import knn_accuracy
from mfclr.train.budget import resolve_epochs
from mfclr.train.loop import pretrain

log = logging.getLogger("learning_curve")


def score(frozen: FrozenEncoder, cfg: Config, data: Any, device: torch.device) -> dict[str, float]:
    """kNN and linear-probe accuracy on valid and test, plus the embeddings' effective rank."""
    feats = embed_splits(frozen, data, cfg, device, progress=False)
    y = {s: data.splits[s].labels for s in feats}
    probe = fit_probe(feats["train"], y["train"], feats["valid"], y["valid"], head="linear",
                      n_classes=len(data.label_names), cfg=cfg.probe)  # fmt: skip
    test_pred = probe.predict_proba(feats["test"]).argmax(1)
    k = cfg.train.knn_k
    return {
        "knn_valid": knn_accuracy(feats["train"], y["train"], feats["valid"], y["valid"], k=k),
        "knn_test": knn_accuracy(feats["train"], y["train"], feats["test"], y["test"], k=k),
        "linear_valid": float(probe.info["valid_accuracy"]),
        "linear_test": float((test_pred == y["test"]).mean()),
        "effective_rank": effective_rank(probe.standardizer(feats["train"])),
    }


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy of the normalised singular values) of (n, D) features (Roy & Vetterli)."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / max(s.sum(), 1e-12)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def one_seed(cfg: Config, fmt: str, steps: list[int], device: torch.device) -> list[dict]:
    """Points (step, train seconds, CPU seconds, scores) along one pretraining run."""
    data = load_dataset(cfg.data, "probe", progress=False)
    points = [{"step": 0, "train_seconds": 0.0, "cpu_seconds": 0.0,
               **score(random_frozen(cfg, fmt), cfg, data, device)}]  # fmt: skip
    log.info("seed %d step 0: %s", cfg.train.seed, _short(points[-1]))
    targets = [s for s in steps if s > 0]
    if not targets:
        return points
    # Epochs of `chunk` steps (at most one pass over the pretraining split); a target is
    # evaluated at the first epoch end at or past it, and the point records the actual step.
    chunk = max(1, min(math.gcd(*targets), batches_per_pass(cfg)))
    run_cfg = cfg.with_overrides(
        {"train.max_steps_per_epoch": chunk, "train.epochs": math.ceil(max(targets) / chunk),
         "train.eval_every": 0}
    )  # fmt: skip
    pending = sorted(targets)
    clock = {"wall": 0.0, "cpu": 0.0, "t": time.perf_counter(), "c": time.process_time()}

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        clock["wall"] += time.perf_counter() - clock["t"]
        clock["cpu"] += time.process_time() - clock["c"]
        if state is not None and pending and metrics["steps"] >= pending[0]:
            while pending and metrics["steps"] >= pending[0]:
                pending.pop(0)
            part = state["parts"][fmt]  # the one checkpoint layout (mfclr/checkpoint.py)
            enc = encoder_from_spec(part["encoder_spec"])
            enc.load_state_dict(part["encoder"])
            frozen = frozen_from(fmt, enc, run_cfg, "curve")
            points.append({"step": metrics["steps"], "train_seconds": clock["wall"],
                           "cpu_seconds": clock["cpu"], "loss": metrics["loss"],
                           **score(frozen, run_cfg, data, device)})  # fmt: skip
            log.info("seed %d step %d: %s", cfg.train.seed, metrics["steps"], _short(points[-1]))
        clock["t"], clock["c"] = time.perf_counter(), time.process_time()

    pretrain(run_cfg, fmt, report, device=device, progress=False)
    return points


def cached_seed(
    cfg: Config, fmt: str, steps: list[int], device: torch.device, cache: Path
) -> list[dict]:
    """`one_seed`, kept in `cache/seed-<s>-<key>.json` where the key hashes the whole config, the
    format and the steps: a rerun with another seed list only trains the seeds it lacks, and
    any change of recipe misses the cache (the other format's augmentation chain, which this
    run never builds, is left out of the key)."""
    path = cache / f"seed-{cfg.train.seed}-{cache_key(cfg, fmt, steps)}.json"
    if path.is_file():
        log.info("seed %d: reusing %s", cfg.train.seed, path)
        return json.loads(path.read_text())
    points = one_seed(cfg, fmt, steps, device)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(points, indent=2))
    return points


def cache_key(cfg: Config, fmt: str, steps: list[int]) -> str:
    config = cfg.to_dict()
    unused = {"audio": "spectrogram", "spectrogram": "audio"}.get(fmt)
    config["augment"] = {k: v for k, v in config["augment"].items() if k != unused}
    blob = json.dumps({"config": config, "format": fmt, "steps": steps}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def batches_per_pass(cfg: Config) -> int:
    """Full batches in one pass over the pretraining split (one worker, as the loop drops the
    last partial batch)."""
    pool = len(load_dataset(cfg.data, "pretrain", progress=False).splits["train"])
    return pool // min(cfg.train.batch_size, pool)


def budget_steps(cfg: Config) -> int:
    """The optimiser steps a plain run of `cfg` takes (one worker): epochs x steps per epoch,
    the epochs derived from train.steps when it is set."""
    cfg = resolve_epochs(cfg)
    per_epoch = batches_per_pass(cfg)
    if cfg.train.max_steps_per_epoch is not None:
        per_epoch = min(per_epoch, cfg.train.max_steps_per_epoch)
    return cfg.train.epochs * per_epoch


def log_steps(budget: int, points: int = 5) -> list[int]:
    """0 and `points` step counts halving down from `budget` (e.g. 0, 30, 60, 120, 240, 480)."""
    return [0] + sorted({max(1, round(budget / 2**k)) for k in range(points)})


def _short(p: dict) -> str:
    keys = ("linear_valid", "linear_test", "knn_test", "effective_rank", "train_seconds")
    return "  ".join(f"{k} {p[k]:.3f}" for k in keys if k in p)


def summarise(runs: dict[int, list[dict]]) -> dict[str, Any]:
    """Mean and std over seeds per step; the random-init band; when the linear probe on test
    first crosses the control's mean + 5 points (and valid, for a choice that never sees test)."""
    by_step: dict[int, list[dict]] = {}
    for pts in runs.values():
        for p in pts:
            by_step.setdefault(p["step"], []).append(p)
    keys = ["linear_valid", "linear_test", "knn_valid", "knn_test", "effective_rank",
            "train_seconds", "cpu_seconds"]  # fmt: skip
    table = []
    for step in sorted(by_step):
        pts = by_step[step]
        row: dict[str, Any] = {"step": step, "n_seeds": len(pts)}
        for k in keys:
            vals = np.array([p[k] for p in pts if k in p], dtype=float)
            row[k] = float(vals.mean())
            row[f"{k}_std"] = float(vals.std())
        table.append(row)
    control = table[0]
    crossed = next((r for r in table[1:] if r["linear_test"] >= control["linear_test"] + 0.05),
                   None)  # fmt: skip
    return {
        "points": table,
        "control_linear_test": [control["linear_test"], control["linear_test_std"]],
        "best_linear_test": max(r["linear_test"] for r in table),
        "cross_control_plus_5_step": crossed and crossed["step"],
        "cross_control_plus_5_cpu_seconds": crossed and crossed["cpu_seconds"],
        "cross_control_plus_5_train_seconds": crossed and crossed["train_seconds"],
    }


def plot(summary: dict[str, Any], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = summary["points"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, xkey, xlabel in ((axes[0], "step", "optimiser steps"),
                             (axes[1], "train_seconds", "training seconds (wall)")):  # fmt: skip
        xs = np.array([p[xkey] for p in pts])
        for key, colour, label in (("linear_test", "tab:blue", "linear probe (test)"),
                                   ("knn_test", "tab:orange", "kNN (test)")):  # fmt: skip
            m = np.array([p[key] for p in pts])
            s = np.array([p[f"{key}_std"] for p in pts])
            ax.plot(xs, 100 * m, "o-", color=colour, label=label)
            ax.fill_between(xs, 100 * (m - s), 100 * (m + s), color=colour, alpha=0.15)
            ax.axhspan(100 * (m[0] - s[0]), 100 * (m[0] + s[0]), color="grey", alpha=0.25)
            ax.axhline(100 * m[0], color=colour, ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=max(xs[1], 1e-3) if len(xs) > 1 else 1)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)  — grey band: random-init mean ± std")
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", required=True, choices=["audio", "spectrogram"])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--config", help="a config file (applied after the preset)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument(
        "--steps",
        default="0,25,50,100,200,400",
        help="comma-separated optimiser step counts (0 = random init)",
    )
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    ap.add_argument("--out", required=True, help="folder for curve.json and curve.png")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = sorted({int(s) for s in args.steps.split(",")} | {0})
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load_config(args.config, args.preset, args.set).for_format(args.format)
    device = resolve_device(base.train.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for seed in seeds:
        cfg = base.with_overrides({"train.seed": seed})
        runs[seed] = cached_seed(cfg, args.format, steps, device, out / "seeds")
        summary = summarise(runs)
        result = {"format": args.format, "preset": args.preset, "overrides": args.set,
                  "seeds": seeds, "steps": steps, "runs": {str(k): v for k, v in runs.items()},
                  **summary}  # fmt: skip
        (out / "curve.json").write_text(json.dumps(result, indent=2))
    plot(summary, f"{args.format}: {args.preset} {' '.join(args.set)}"[:110], out / "curve.png")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
