"""`mfclr run`: every pretraining, then the probe table, in one output folder.

OUT/config.yaml, OUT/run.json
OUT/pretrain/<format>/...      one run folder per format (see train/local.py)
OUT/embeddings/*.npz           track embeddings with labels (trained and random-init)
OUT/results.json, results.md   the variants table (test split)
OUT/classifier.pt              the row chosen on valid, usable (`mfclr predict`); with --seeds N
                               one per OUT/seed-<s>/
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mfclr.config import CROSS, Config, save_config
from mfclr.data import Datasets
from mfclr.data.summary import prepare
from mfclr.formats.frozen import FrozenEncoder, load_frozen
from mfclr.io import atomic_write_json, clean_stale_temps, git_sha
from mfclr.locks import folder_lock
from mfclr.probe.variants import aggregate_seeds
from mfclr.report.results import write_results
from mfclr.stage import probe_and_report
from mfclr.train.budget import describe as describe_budget
from mfclr.train.local import check_resume, pretrain_local

log = logging.getLogger(__name__)
Job = tuple[str, Config, str, str]  # (encoder-set name, config, format, folder label)


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
    with folder_lock(out):
        if seeds == 1:
            return run_all(cfg, out, formats, **flags)
        return _run_seeds(cfg, Path(out), formats, seeds, flags)


def _run_seeds(
    cfg: Config, out: Path, formats: list[str], seeds: int, flags: dict[str, bool]
) -> dict[str, Any]:
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


def _jobs(cfg: Config, formats: list[str]) -> list[Job]:
    """The run's own formats, then each compare variant's."""
    jobs = [("trained", cfg.for_format(fmt), fmt, fmt) for fmt in formats]
    jobs += [(name, cfg.variant(name).for_format(fmt), fmt, f"{name}-{fmt}")
             for name in cfg.compare for fmt in formats]  # fmt: skip
    return jobs


def _pretrain_all(
    cfg: Config, out: Path, jobs: list[Job], *, fresh: bool, progress: bool, override: bool,
    datasets: Datasets,
) -> tuple[dict[str, dict[str, FrozenEncoder]], dict[str, str]]:  # fmt: skip
    """Pretrain every job in OUT/pretrain/<label>; the frozen encoders per encoder set
    ("trained", "cross", a compare variant) and the encoder paths by row prefix."""
    group = cfg.tracking.group or out.resolve().name
    sets: dict[str, dict[str, FrozenEncoder]] = {"trained": {}, CROSS: {}}
    checkpoints = {}
    for kind, job_cfg, fmt, label in jobs:
        log.info("== pretraining %s (%s)", label, describe_budget(job_cfg))
        paths = pretrain_local(job_cfg, fmt, out / "pretrain" / label, resume=not fresh,
                               progress=progress, tracking_dir=out, group=group, label=label,
                               override_resume=override, datasets=datasets)  # fmt: skip
        for f, path in paths.items():
            key = CROSS if fmt == CROSS else kind
            sets.setdefault(key, {})[f] = load_frozen(path, f)
            checkpoints[f if key == "trained" else f"{key}-{f}"] = str(path)
    return sets, checkpoints


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
    out = Path(out)
    with folder_lock(out):
        return _run_all(cfg, out, formats, fresh=fresh, progress=progress,
                        override_resume=override_resume)  # fmt: skip


def _run_all(
    cfg: Config, out: Path, formats: list[str], *, fresh: bool, progress: bool,
    override_resume: bool,
) -> dict[str, Any]:  # fmt: skip
    jobs = _jobs(cfg, formats)
    if not fresh:  # a refused resume must leave the run folder as it was
        for _, job_cfg, fmt, label in jobs:
            check_resume(job_cfg, fmt, out / "pretrain" / label, override=override_resume)
    for folder in (out, out / "embeddings"):  # what a kill mid-write left behind
        clean_stale_temps(folder)
    save_config(cfg, out / "config.yaml")
    atomic_write_json(out / "run.json", {"formats": formats, "git_sha": git_sha()})
    datasets = Datasets(progress=progress)
    log.info("data: %s", {r: d["tracks"] for r, d in prepare(cfg, datasets).items()})
    sets, checkpoints = _pretrain_all(cfg, out, jobs, fresh=fresh, progress=progress,
                                      override=override_resume, datasets=datasets)  # fmt: skip
    log.info("== probing frozen embeddings")
    extra_sets = {k: v for k, v in sets.items() if k != "trained"}
    facts = {"checkpoints": checkpoints, "embeddings": str(out / "embeddings")}
    return probe_and_report(cfg, sets["trained"], out, extra_sets=extra_sets, facts=facts,
                            group=cfg.tracking.group or out.resolve().name,
                            datasets=datasets)  # fmt: skip
