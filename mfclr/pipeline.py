"""`mfclr run`: both pretrainings, then the probe table, in one output folder.

OUT/config.yaml, OUT/run.json
OUT/pretrain/<format>/...      one run folder per format (see runner.py)
OUT/embeddings/*.npz           track embeddings with labels (trained and random-init)
OUT/results.json, results.md   the variants table (test split)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mfclr import checkpoint as ckpt
from mfclr.config import CROSS, Config, save_config
from mfclr.io import clean_stale_temps
from mfclr.runner import check_resume, pretrain_local, write_json

log = logging.getLogger(__name__)


def class_counts(data: Any) -> dict[str, dict[str, int]]:
    """class name -> split -> tracks of a PreparedDataset (unlabelled: one row, "(unlabelled)")."""
    names = data.label_names or ["(unlabelled)"]
    counts = {name: dict.fromkeys(data.splits, 0) for name in names}
    for split, sp in data.splits.items():
        for label in sp.labels:
            counts[names[max(int(label), 0)]][split] += 1
    return counts


def prepare(cfg: Config) -> dict[str, Any]:
    """Decode and cache the probe (and, if separate, the pretraining) dataset; return a summary."""
    from mfclr.data import load_dataset

    summary = {}
    for role in ("probe", "pretrain"):
        if role == "pretrain" and cfg.data.pretrain is None:
            continue
        data = load_dataset(cfg.data, role)
        summary[role] = {
            "name": data.name,
            "cache": str(data.cache_path),
            "classes": data.label_names,
            "tracks": {s: len(sp) for s, sp in data.splits.items()},
            "class_counts": class_counts(data),
            "stats": data.stats,
        }
    return summary


def run_seeds(
    cfg: Config,
    out: str | Path,
    formats: list[str],
    seeds: int,
    *,
    fresh: bool = False,
    progress: bool = True,
    override_resume: bool = False,
) -> dict[str, Any]:
    """`run_all` once per pretraining seed (train.seed, +1, ...) in OUT/seed-<s>/, then one
    table of means ± std over seeds in OUT/results.json|md. One seed is plain `run_all`."""
    flags = {"fresh": fresh, "progress": progress, "override_resume": override_resume}
    if seeds == 1:
        return run_all(cfg, out, formats, **flags)
    from mfclr.evaluate import aggregate_seeds
    from mfclr.report import write_results

    out = Path(out)
    runs = []
    for i in range(seeds):
        seed = cfg.train.seed + i
        log.info("==== seed %d (%d of %d)", seed, i + 1, seeds)
        runs.append(run_all(cfg.with_overrides({"train.seed": seed}), out / f"seed-{seed}",
                            formats, **flags))  # fmt: skip
    rows = aggregate_seeds([r["rows"] for r in runs])
    keep = ("dataset", "test_tracks", "label_names", "git_sha")
    extra = {k: runs[0][k] for k in keep}
    extra |= {
        "seeds": [cfg.train.seed + i for i in range(seeds)],
        "per_seed_results": [str(r["results_json"]) for r in runs],
        "embeddings": str(out / f"seed-{cfg.train.seed}" / "embeddings"),
    }
    save_config(cfg, out / "config.yaml")
    json_path, md_path = write_results(out, rows, extra)
    return {"rows": rows, "results_json": json_path, "results_md": md_path, **extra}


def run_all(
    cfg: Config,
    out: str | Path,
    formats: list[str],
    *,
    fresh: bool = False,
    progress: bool = True,
    override_resume: bool = False,
) -> dict[str, Any]:
    """Pretrain each format (resuming unless fresh; see pretrain_local for `override_resume`),
    evaluate every variant, write results."""
    from mfclr.evaluate import evaluate, load_frozen
    from mfclr.report import write_results
    from mfclr.tracking import log_probe_rows
    from mfclr.train import resolve_device

    out = Path(out)
    # (set name, config, format, folder label): the run's own formats, then each compare
    # variant's.
    jobs = [("trained", cfg, fmt, fmt) for fmt in formats]
    jobs += [(name, cfg.variant(name), fmt, f"{name}-{fmt}") for name in cfg.compare
             for fmt in formats]  # fmt: skip
    if not fresh:  # a refused resume must leave the run folder as it was
        for _, job_cfg, fmt, label in jobs:
            check_resume(job_cfg, fmt, out / "pretrain" / label, override=override_resume)
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "embeddings"):  # what a kill mid-write left behind
        clean_stale_temps(folder)
    group = cfg.tracking.group or out.resolve().name
    save_config(cfg, out / "config.yaml")
    write_json(out / "run.json", {"formats": formats, "git_sha": ckpt.git_sha()})
    data = prepare(cfg)
    log.info("data: %s", {r: d["tracks"] for r, d in data.items()})
    sets: dict[str, dict[str, Any]] = {"trained": {}, CROSS: {}}
    checkpoints = {}
    for kind, job_cfg, fmt, label in jobs:
        log.info("== pretraining %s (%d epochs)", label, job_cfg.train.epochs)
        paths = pretrain_local(job_cfg, fmt, out / "pretrain" / label, resume=not fresh,
                               progress=progress, tracking_dir=out, group=group, label=label,
                               override_resume=override_resume)  # fmt: skip
        for f, path in paths.items():
            key = CROSS if fmt == CROSS else kind
            sets.setdefault(key, {})[f] = load_frozen(path, f)
            checkpoints[f if key == "trained" else f"{key}-{f}"] = str(path)
    log.info("== probing frozen embeddings")
    extra_sets = {k: v for k, v in sets.items() if k != "trained"}
    rows = evaluate(cfg, sets["trained"], out, device=resolve_device(cfg.train.device),
                    extra=extra_sets)  # fmt: skip
    extra = {
        "dataset": data["probe"]["name"],
        "test_tracks": data["probe"]["tracks"]["test"],
        "label_names": data["probe"]["classes"],
        "checkpoints": checkpoints,
        "embeddings": str(out / "embeddings"),
        "git_sha": ckpt.git_sha(),
    }
    json_path, md_path = write_results(out, rows, extra)
    log_probe_rows(
        cfg,
        rows,
        dir=out,
        group=group,
        dataset=extra["dataset"],
        label_names=extra["label_names"],
        git_sha=extra["git_sha"],
    )
    return {"rows": rows, "results_json": json_path, "results_md": md_path, **extra}
