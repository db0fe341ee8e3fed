"""Does TPE + ASHA pay for itself? An exhaustive grid against the sweep platform, same trials.

At CPU scale (tiny preset, embedded data), for one format and two hyperparameters that matter
(temperature x learning rate by default):
- the **grid**: every point of a 4 x 4 grid pretrained to the full epoch budget (plain runs in
  this process), scored once at the end with the sweep's validation metric (the quick probe on
  valid, never test);
- **TPE + ASHA**: `mfclr.tune.search.tune_format` with the same trial count over the grid's box
  (log-uniform), the validation metric every epoch, ASHA stopping trials at its rungs; once per
  `--asha GRACE:RF` setting;
- **TPE + synchronous halving** (`budget.scheduler: halving`, mfclr/tune/halving.py): the same,
  each rung deciding once every trial has reached it; once per `--halving GRACE:RF` setting;
and for each: the best valid metric found, the test accuracy of the winner (standardised linear
probe tuned on valid, as the learning curve scores it) and the epochs spent. The target: TPE +
ASHA within one standard error of the grid's best valid metric using at most a third of its
epochs. The standard error is the binomial one of a valid accuracy (sqrt(p(1-p)/n)); the seed
noise of the grid's winner (its config retrained with `--noise-seeds` other seeds) is reported
beside it, because a metric noisier than the differences it ranks cannot be searched.

    python benchmarks/search_efficiency.py --format spectrogram --asha 1:3,2:2 \
        [--halving 1:4] [--grid-from benchmarks/results/search_efficiency-tiny-c100.json] \
        --out runs/bench/search_efficiency

`--grid-from` takes the grid (and its seed-noise retrains) from an earlier result of the same
format, epochs and data instead of training it again (about ten minutes on 2 cores).

The last stdout line is one JSON object (also written to <out>/search_efficiency.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from experiments import learning_curve as lc
from mfclr.config import Config  # noqa: E402
from mfclr.data import load_dataset  # noqa: E402
from mfclr.formats.frozen import frozen_from, load_frozen  # noqa: E402
from mfclr.io import atomic_write_json  # noqa: E402
from mfclr.probe.validate import make_validate  # noqa: E402
from mfclr.train.loop import VAL_METRIC, pretrain  # noqa: E402
from mfclr.train.ray import init_ray  # noqa: E402
from mfclr.tune.search import best_trial, tune_format  # noqa: E402
from mfclr.tune.spec import load_sweep  # noqa: E402

log = logging.getLogger("search_efficiency")
GRID = {
    "temperature": ("train.temperature", [0.05, 0.1, 0.2, 0.5]),
    "lr": ("train.lr", [1e-4, 3e-4, 1e-3, 3e-3]),
}


def sweep_file(
    args: argparse.Namespace, grace: int, rf: int, folder: Path, scheduler: str = "asha"
) -> Path:
    """The TPE + ASHA (or halving) sweep of this benchmark as a sweep file (what a user would
    write)."""
    space = {name: {"key": key, "type": "float", "low": min(v), "high": max(v), "log": True}
             for name, (key, v) in GRID.items()}  # fmt: skip
    doc = {
        "name": f"search_eff_{scheduler}_g{grace}_rf{rf}",
        "preset": "tiny",
        "set": base_overrides(args),
        "dataset": {"kind": "embedded"},
        "formats": [args.format],
        "budget": {
            "trials": len(grid_points()),
            "epochs": args.epochs,
            # halving: every trial of a rung must be proposable while the first ones wait
            "max_concurrent_trials": args.concurrent if scheduler == "asha" else None,
            "scheduler": scheduler,
            "grace_period": grace,
            "reduction_factor": rf,
        },  # fmt: skip
        "resources": {
            "workers": 1,
            "cpus_per_worker": 1,
            "gpus_per_worker": 0,
            "max_failures": 0,
        },  # fmt: skip
        "search": {"seed": args.seed, "metric": "probe", "eval_every": 1, "space": space},
    }
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def base_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "data.probe.embedded.clips_per_class": args.clips_per_class,
        "data.cache_dir": str(Path(args.out).resolve() / "data_cache"),
        "train.epochs": args.epochs,
        "train.seed": args.seed,
        "train.val_metric": "probe",
    }


def grid_points() -> list[dict[str, float]]:
    names = list(GRID)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(GRID[n][1] for n in names))]  # fmt: skip


def plain_run(cfg: Config, fmt: str) -> tuple[float | None, Any]:
    """Pretrain to the full budget; the validation metric at the last epoch, and the model."""
    cfg = cfg.with_overrides({"train.eval_every": cfg.train.epochs})
    seen: list[float] = []
    report = lambda m, s: VAL_METRIC in m and seen.append(m[VAL_METRIC])  # noqa: E731
    try:
        model = pretrain(cfg, fmt, report, validate=make_validate(cfg), progress=False)
    except FloatingPointError as err:  # a diverging corner of the grid is a result, not a crash
        log.warning("diverged: %s", err)
        return None, None
    return (seen[-1] if seen else None), model


def test_of(model: Any, cfg: Config, fmt: str) -> float:
    """The winner's test accuracy, scored as the learning curve scores an encoder."""
    frozen = frozen_from(fmt, model.encoders[fmt], cfg, "grid")
    data = load_dataset(cfg.data, "probe", progress=False)
    return lc.score(frozen, cfg, data, torch.device("cpu"))["linear_test"]


def run_grid(args: argparse.Namespace, base: Config) -> dict[str, Any]:
    t0, rows, best = time.perf_counter(), [], None
    for i, point in enumerate(grid_points()):
        cfg = base.with_overrides({GRID[n][0]: v for n, v in point.items()})
        value, model = plain_run(cfg, args.format)
        rows.append({**point, VAL_METRIC: value})
        log.info("grid %2d/16 %s -> %s", i + 1, point, value)
        if value is not None and (best is None or value > best[0]):
            best = (value, point, cfg, model)
    if best is None:
        raise SystemExit("search_efficiency: every grid point diverged; lower the lr grid")
    value, point, cfg, model = best
    noise = [plain_run(cfg.with_overrides({"train.seed": args.seed + k}), args.format)[0]
             for k in range(1, args.noise_seeds + 1)]  # fmt: skip
    return {
        "best_valid": value,
        "best_point": point,
        "winner_test": test_of(model, cfg, args.format),
        "epochs": len(rows) * args.epochs,
        "wall_s": time.perf_counter() - t0,
        "winner_other_seeds_valid": noise,
        "trials": rows,
    }


def run_tpe(
    args: argparse.Namespace, grace: int, rf: int, folder: Path, scheduler: str = "asha"
) -> dict[str, Any]:
    t0 = time.perf_counter()
    spec, base = load_sweep(sweep_file(args, grace, rf, folder, scheduler))
    storage = str(folder / "storage")
    grid = tune_format(spec, base, args.format, storage, resume=False, verbose=0)
    best = best_trial(spec, args.format, grid, folder / spec.name)
    path = next(iter(best["encoders"].values()))
    data = load_dataset(base.data, "probe", progress=False)
    winner_test = lc.score(load_frozen(path, args.format), base, data, torch.device("cpu"))
    epochs = sum(int(t["epochs_done"] or 0) for t in best["trials"])
    return {
        "scheduler": scheduler,
        "grace_period": grace,
        "reduction_factor": rf,
        "best_valid": best[VAL_METRIC],
        "best_point": best["hyperparameters"],
        "winner_test": winner_test["linear_test"],
        "epochs": epochs,
        "wall_s": time.perf_counter() - t0,
        "trials": [
            {**t["config"], VAL_METRIC: t[VAL_METRIC], "epochs_done": t["epochs_done"]}
            for t in best["trials"]
        ],  # fmt: skip
    }


def verdict(grid: dict[str, Any], tpe: dict[str, Any], n_valid: int) -> dict[str, Any]:
    p = grid["best_valid"]
    se = math.sqrt(p * (1 - p) / n_valid)
    return {
        "within_one_se": tpe["best_valid"] >= p - se,
        "epoch_fraction": tpe["epochs"] / grid["epochs"],
        "target_met": tpe["best_valid"] >= p - se and tpe["epochs"] <= grid["epochs"] / 3,
    }


def table(result: dict[str, Any]) -> str:
    g = result["grid"]
    lines = ["| search | best valid | winner test | epochs | wall s | within 1 SE | ≤ 1/3 epochs |",
             "|---|---:|---:|---:|---:|:-:|:-:|",
             f"| grid 4×4 | {100 * g['best_valid']:.1f} | {100 * g['winner_test']:.1f} | "
             f"{g['epochs']} | {g['wall_s']:.0f} | — | — |"]  # fmt: skip
    for t in result["tpe_asha"]:
        v = t["verdict"]
        name = "ASHA" if t.get("scheduler", "asha") == "asha" else "halving"
        lines.append(
            f"| TPE + {name} g{t['grace_period']} rf{t['reduction_factor']} | "
            f"{100 * t['best_valid']:.1f} | {100 * t['winner_test']:.1f} | {t['epochs']} | "
            f"{t['wall_s']:.0f} | {'yes' if v['within_one_se'] else 'no'} | "
            f"{'yes' if v['epoch_fraction'] <= 1 / 3 else 'no'} |"
        )
    return "\n".join(lines)


def _setting(text: str) -> tuple[int, int]:
    try:
        grace, rf = (int(x) for x in text.split(":"))
    except ValueError:
        raise SystemExit(f"search_efficiency: '{text}' is not GRACE:RF (e.g. 1:3)") from None
    return grace, rf


def earlier_grid(args: argparse.Namespace, n_valid: int) -> dict[str, Any]:
    """The grid of an earlier result, if it was measured on the same format, budget and data."""
    earlier = json.loads(Path(args.grid_from).read_text())
    same = (earlier.get("format"), earlier.get("epochs"), earlier.get("n_valid"))
    if same != (args.format, args.epochs, n_valid):
        raise SystemExit(
            f"search_efficiency: {args.grid_from} has (format, epochs, valid tracks) {same}, "
            f"this run {(args.format, args.epochs, n_valid)}; train the grid again"
        )
    return {**earlier["grid"], "from": str(args.grid_from)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="spectrogram", choices=["audio", "spectrogram"])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--clips-per-class", type=int, default=40)
    ap.add_argument("--asha", default="1:3", help="GRACE:RF settings, comma-separated ('': none)")
    ap.add_argument("--halving", default="", help="GRACE:RF settings of synchronous halving")
    ap.add_argument("--grid-from", default=None, help="an earlier result JSON: reuse its grid")
    ap.add_argument("--concurrent", type=int, default=1, help="Tune's max concurrent trials")
    ap.add_argument("--noise-seeds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench/search_efficiency")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = [("asha", *_setting(s)) for s in args.asha.split(",") if s]
    settings += [("halving", *_setting(s)) for s in args.halving.split(",") if s]
    if not settings:
        ap.error("give at least one --asha or --halving GRACE:RF setting")
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        spec, base = load_sweep(sweep_file(args, settings[0][1], settings[0][2], Path(tmp)))
    n_valid = len(load_dataset(base.data, "probe", progress=False).splits["valid"])
    result: dict[str, Any] = {"format": args.format, "epochs": args.epochs, "n_valid": n_valid,
                              "grid_space": {n: v for n, (_, v) in GRID.items()}}  # fmt: skip
    result["grid"] = run_grid(args, base) if args.grid_from is None else earlier_grid(args, n_valid)
    init_ray()
    result["tpe_asha"] = []
    for scheduler, grace, rf in settings:
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            tpe = run_tpe(args, grace, rf, Path(tmp), scheduler)
        tpe["verdict"] = verdict(result["grid"], tpe, n_valid)
        result["tpe_asha"].append(tpe)
        log.info("TPE + %s g%d rf%d: %s", scheduler, grace, rf, tpe["verdict"])
    result["table"] = table(result)
    atomic_write_json(out / "search_efficiency.json", result)
    print(result["table"], file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
