"""What a Tune trial costs over the plain run of the same work; prints one JSON line at the end.

The same config (the smoke sweep's, tiny models, validation at the last epoch only) is trained
three times, one after the other:
1. a plain local run (`pretrain_local`, no Ray),
2. the only trial of a one-format Tune sweep with one worker: the loop in the trial's process,
3. the same sweep with two workers: a Ray Train run (2 DDP workers, gloo) inside the trial, each
   worker with half the batch (the same samples and steps as the plain run);
4. with `--study-trials N` (default 3; 0 skips it), a one-worker study of N such trials one after
   the other (other temperatures and weight decays, the same steps): Tune runs trials 2..N in
   the process of trial 1 (`reuse_actors`), so only the first pays the process start.

`one_worker_trial_overhead` / `two_worker_trial_overhead` are the extra wall time over the plain
run as a fraction of it (0.1 = 10 % slower); `one_worker_study_overhead` is the study's extra
over N plain runs (N x the plain run's time) as a fraction of them, and
`one_worker_study_extra_s_per_trial` its extra seconds per trial. Ray's start (`ray.init`) is
outside every timing: a sweep pays it once. The first run warms the data cache and imports and
is not timed.

    python benchmarks/ray_overhead.py [--format audio] [--epochs 4] [--steps 20]
        [--clips-per-class 40] [--batch-size 16] [--study-trials 3]

`--epochs 50` makes the plain run about a minute on a 2-core machine (an epoch is ~12 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch

from mfclr.config import Config
from mfclr.train.local import pretrain_local
from mfclr.tune.search import tune_format
from mfclr.tune.spec import SweepSpec, load_sweep

SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"


def _sweep(
    args: argparse.Namespace, cache: Path, workers: int, trials: int = 1
) -> tuple[SweepSpec, Config]:
    overrides = [
        f"formats=[{args.format}]",
        f"budget.trials={trials}",
        f"budget.epochs={args.epochs}",
        f"budget.grace_period={args.epochs}",
        f"resources.workers={workers}",
        "resources.max_failures=0",
        # The trial must report a validation metric; once, at the end, keeps it a small share.
        f"search.eval_every={args.epochs}",
        # The plain run's choices, so the three runs do the same work.
        "search.space.probe_head.choices=[linear]",
        "search.space.projector.choices=[mlp]",
        f"data.cache_dir={cache}",
        # train.batch_size is per worker: two workers of half the batch see the same samples.
        f"train.batch_size={args.batch_size // workers}",
        f"train.max_steps_per_epoch={args.steps}",
        f"data.probe.embedded.clips_per_class={args.clips_per_class}",
    ]
    return load_sweep(SMOKE, overrides)


def _plain(base: Config, fmt: str, folder: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    pretrain_local(base, fmt, folder, progress=False)
    wall = time.perf_counter() - t0
    last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
    return {"wall_s": wall, "samples_per_s": last["samples_per_s"]}


def _trial(spec: SweepSpec, base: Config, fmt: str, storage: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    grid = tune_format(spec, base, fmt, str(storage), resume=False, verbose=0)
    wall = time.perf_counter() - t0
    results = list(grid)
    failed = [r.error for r in results if r.error is not None]
    if failed or len(results) != spec.budget.trials:
        raise RuntimeError(f"the benchmark study failed: {failed or len(results)}")
    rates = [r.metrics["samples_per_s"] for r in results]
    return {"wall_s": wall, "samples_per_s": sum(rates) / len(rates)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="audio", choices=["audio", "spectrogram"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per epoch (cap)")
    parser.add_argument("--clips-per-class", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--study-trials", type=int, default=3,
                        help="trials of the one-worker study (0: no study)")  # fmt: skip
    args = parser.parse_args()
    if args.study_trials == 1 or args.study_trials < 0:
        parser.error("--study-trials must be 0 (no study) or at least 2")
    # Ray gives a 1-CPU worker or trial one intra-op thread (OMP_NUM_THREADS=1); the plain run
    # gets the same, so the ratios measure Ray, not threading.
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    out: dict[str, Any] = {"format": args.format, "epochs": args.epochs, "steps": args.steps,
                           "loadavg_1min_start": os.getloadavg()[0]}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mfclr-bench-") as tmp:
        root = Path(tmp)
        spec_one, base = _sweep(args, root / "cache", workers=1)
        spec_two, base_two = _sweep(args, root / "cache", workers=2)
        pretrain_local(base.with_overrides({"train.epochs": 1}), args.format, root / "warmup",
                       progress=False)  # fmt: skip
        runs = {
            "plain": _plain(base, args.format, root / "plain"),
            "one_worker_trial": _trial(spec_one, base, args.format, root / "one"),
            "two_worker_trial": _trial(spec_two, base_two, args.format, root / "two"),
        }
        if args.study_trials:
            spec_n, _ = _sweep(args, root / "cache", workers=1, trials=args.study_trials)
            runs["one_worker_study"] = _trial(spec_n, base, args.format, root / "study")
    ray.shutdown()
    plain = runs["plain"]["wall_s"]
    for name, r in runs.items():
        out[f"{name}_s"] = r["wall_s"]
        out[f"{name}_samples_per_s"] = r["samples_per_s"]
    for name in ("one_worker_trial", "two_worker_trial"):
        out[f"{name}_extra_s"] = runs[name]["wall_s"] - plain
        out[f"{name}_overhead"] = (runs[name]["wall_s"] - plain) / plain
    if "one_worker_study" in runs:
        n = args.study_trials
        extra = runs["one_worker_study"]["wall_s"] - n * plain
        out["study_trials"] = n
        out["one_worker_study_extra_s_per_trial"] = extra / n
        out["one_worker_study_overhead"] = extra / (n * plain)
    out["loadavg_1min_end"] = os.getloadavg()[0]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
