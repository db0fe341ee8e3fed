"""Speed of learning: how many CPU seconds until pretraining pays, and steps per second.

For each format, the learning curve (experiments/learning_curve.py) of a preset over seeds gives
the CPU seconds (and optimiser steps) at which the mean linear-probe test accuracy first crosses
the random-init control's mean + 5 points, next to the preset's own pretraining budget; then each
preset's pretraining steps per second are timed side by side in this process. The last stdout
line is one JSON object.

    python -m experiments.speed_of_learning --preset demo --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from experiments import learning_curve as lc
from mfclr.config import load_config  # noqa: E402
from mfclr.distributed import resolve_device  # noqa: E402
from mfclr.train.loop import pretrain  # noqa: E402


def steps_per_second(
    preset: str, fmt: str, steps: int, device: torch.device, overrides: list[str]
) -> float:
    """Optimiser steps per second of the preset's pretraining (validation off), after one
    warm-up epoch of the same length."""
    timing = [f"train.max_steps_per_epoch={steps}", "train.epochs=2", "train.eval_every=0"]
    cfg = load_config(preset=preset, overrides=overrides).for_format(fmt).with_overrides(timing)
    seconds: list[float] = []
    pretrain(cfg, fmt, lambda m, s: seconds.append(m["epoch_seconds"]), device=device,
             progress=False)  # fmt: skip
    return steps / seconds[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", help="the preset whose budget is checked")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--steps",
        default=None,
        help="learning-curve step counts (default: log-spaced up to the budget)",
    )
    ap.add_argument("--speed-presets", default="tiny,demo")
    ap.add_argument("--out", default="runs/bench/speed_of_learning")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every preset (e.g. data.cache_dir=...)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    cfg = load_config(preset=args.preset, overrides=args.set)
    device = resolve_device(cfg.train.device)
    seeds = [int(s) for s in args.seeds.split(",")]
    result: dict = {"preset": args.preset, "seeds": seeds, "formats": {}}
    for fmt in ("spectrogram", "audio"):
        fcfg = cfg.for_format(fmt)  # the format's own recipe (per_format), its own budget
        budget = lc.budget_steps(fcfg)
        steps = ([int(s) for s in args.steps.split(",")] if args.steps
                 else lc.log_steps(budget))  # fmt: skip
        out = Path(args.out) / fmt
        runs = {s: lc.cached_seed(fcfg.with_overrides({"train.seed": s}), fmt, steps, device,
                                  out / "seeds") for s in seeds}  # fmt: skip
        summary = lc.summarise(runs)
        out.mkdir(parents=True, exist_ok=True)
        (out / "curve.json").write_text(json.dumps({"runs": runs, **summary}, indent=2))
        lc.plot(summary, f"{fmt}: preset {args.preset}, seeds {args.seeds}", out / "curve.png")
        last = summary["points"][-1]
        result["formats"][fmt] = {
            "budget_steps": budget,
            "last_point_step": last["step"],
            "last_point_cpu_seconds": last["cpu_seconds"],
            "control_linear_test": summary["control_linear_test"],
            "final_linear_test": [last["linear_test"], last["linear_test_std"]],
            "cross_control_plus_5_step": summary["cross_control_plus_5_step"],
            "cross_control_plus_5_cpu_seconds": summary["cross_control_plus_5_cpu_seconds"],
            "crosses_within_budget": summary["cross_control_plus_5_step"] is not None
            and summary["cross_control_plus_5_step"] <= budget,
        }
    result["steps_per_second"] = {
        p: {f: steps_per_second(p, f, 5, device, args.set) for f in ("audio", "spectrogram")}
        for p in args.speed_presets.split(",")
    }
    result["machine"] = {"threads": torch.get_num_threads(), "device": str(device),
                         "load_avg_1min": _load()}  # fmt: skip
    print(json.dumps(result))
    return 0


def _load() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
