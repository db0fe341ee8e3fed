"""What Ray costs and buys on this machine; prints one JSON line at the end.

1. Pretraining throughput (samples/s, mean over epochs after the first) of the same config as a
   Ray Train run with 1 and with 2 workers (CPU, gloo, one CPU each).
2. Wall time of one config as a plain local run (no Ray), as a Ray Train run (1 worker), and as
   a one-trial Tune sweep (trial driver + Train run + Tune bookkeeping): the Tune/plain ratio is
   the overhead a sweep trial pays.

    python benchmarks/ray_overhead.py [--format audio] [--epochs 4] [--clips-per-class 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch

from mfclr.config import Config, load_config
from mfclr.train.local import pretrain_local
from mfclr.train.ray import TrainRun, launch, load_checkpoint
from mfclr.tune.search import tune_format
from mfclr.tune.spec import load_sweep

SMOKE = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"


def _config(args: argparse.Namespace, cache: Path) -> Config:
    return load_config(
        None,
        "tiny",
        {
            "data.cache_dir": str(cache),
            "train.epochs": args.epochs,
            "train.eval_every": 0,
            "train.batch_size": 16,
            "data.probe.embedded.clips_per_class": args.clips_per_class,
        },
    )


def _throughput(cfg: Config, fmt: str, workers: int, storage: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    cfg = cfg.with_overrides({"ray.workers": workers, "ray.max_failures": 0})
    result = launch(cfg, fmt, TrainRun(str(storage), f"throughput_{workers}", use_gpu=False))
    wall = time.perf_counter() - t0
    history = load_checkpoint(result.checkpoint, fmt)["history"]
    steady = [h["samples_per_s"] for h in history[1:]] or [history[0]["samples_per_s"]]
    return {"samples_per_s": statistics.mean(steady), "wall_s": wall}


def _overhead(args: argparse.Namespace, cfg: Config, root: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    pretrain_local(cfg, args.format, root / "plain", progress=False)
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = cfg.with_overrides({"ray.workers": 1, "ray.max_failures": 0})
    launch(one, args.format, TrainRun(str(root / "train"), "one_worker", use_gpu=False))
    train = time.perf_counter() - t0
    # The same config as the only trial of a sweep: no validation metric is needed by the
    # plain run, but a trial must report one, so both sides evaluate every epoch.
    overrides = [
        f"formats=[{args.format}]",
        "budget.trials=1",
        f"budget.epochs={args.epochs}",
        "budget.grace_period=1",
        "resources.workers=1",
        f"data.cache_dir={cfg.data.cache_dir}",
        "train.batch_size=16",
        f"data.probe.embedded.clips_per_class={args.clips_per_class}",
    ]
    spec, base = load_sweep(SMOKE, overrides)
    t0 = time.perf_counter()
    pretrain_local(base, args.format, root / "plain_eval", progress=False)
    plain_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    tune_format(spec, base, args.format, str(root / "tune"), resume=False, verbose=0)
    tuned = time.perf_counter() - t0
    return {
        "plain_run_s": plain,
        "train_run_1_worker_s": train,
        "plain_run_with_eval_s": plain_eval,
        "tune_trial_s": tuned,
        "train_vs_plain_overhead": train / plain,
        "tune_trial_vs_plain_overhead": tuned / plain_eval,
        "tune_trial_extra_s": tuned - plain_eval,  # Ray's fixed start/stop cost, mostly
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="audio", choices=["audio", "spectrogram"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--clips-per-class", type=int, default=40)
    args = parser.parse_args()
    # Ray gives a 1-CPU worker one intra-op thread (OMP_NUM_THREADS=1); the plain runs get the
    # same, so the ratios measure Ray, not threading.
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=True, log_to_driver=False)
    out: dict[str, Any] = {
        "format": args.format,
        "epochs": args.epochs,
        "loadavg_1min_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="mfclr-bench-") as tmp:
        root = Path(tmp)
        cfg = _config(args, root / "cache")
        pretrain_local(cfg, args.format, root / "warmup", progress=False)  # data cache, imports
        one = _throughput(cfg, args.format, 1, root / "tp")
        two = _throughput(cfg, args.format, 2, root / "tp")
        out.update(
            {
                "workers_1_samples_per_s": one["samples_per_s"],
                "workers_2_samples_per_s": two["samples_per_s"],
                "workers_1_wall_s": one["wall_s"],
                "workers_2_wall_s": two["wall_s"],
                "workers_2_vs_1_samples_per_s": two["samples_per_s"] / one["samples_per_s"],
            }
        )
        out.update(_overhead(args, cfg, root))
    ray.shutdown()
    out["loadavg_1min_end"] = os.getloadavg()[0]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
