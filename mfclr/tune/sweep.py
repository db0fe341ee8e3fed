"""A whole sweep: one study per format (search.py), then the fused probe of the best trials.

Layout under the storage root (a local folder or s3://...; default the output folder):
    <sweep>/tune/<format>/            Tune experiment state (what --resume restores); a
                                      one-worker trial's checkpoints: <format>_<NNN>/checkpoint_*
    <sweep>/train/<format>_<NNN>/     trial NNN's encoder.pt (two or more workers: also its Ray
                                      Train run, checkpoint_*)
and in the local sweep folder <out>/<sweep>/: sweep.yaml, config.yaml, best/<format>.pt,
study-<format>.log (each format's Optuna study: `optuna-dashboard <file>`; see tune/study.py),
embeddings/, results.json, results.md, classifier.pt (the row chosen on valid, or
`--set probe.save_row=NAME/HEAD`; copied to the storage root when it is remote, as the results).

Interruption: Ctrl-C (SIGINT) makes Tune save the experiment state; `mfclr sweep FILE --resume`
restores it: finished trials are not run again, unfinished ones resume from their last checkpoint
(stable names: `<format>_<NNN>`). `ray job stop` sends SIGTERM unless the job
runs with `RAY_JOB_STOP_SIGNAL=SIGINT` (and `RAY_JOB_STOP_WAIT_TIME_S=60` to let it save).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pyarrow.fs
import yaml

from mfclr.config import CROSS, Config, absolute_paths, save_config
from mfclr.data import Datasets
from mfclr.data.summary import prepare
from mfclr.formats.frozen import load_frozen
from mfclr.io import atomic_write_text, is_remote
from mfclr.report.markdown import best_trials_table, results_table
from mfclr.stage import probe_and_report
from mfclr.train.keys import VAL_METRIC
from mfclr.train.ray import init_ray
from mfclr.tune.search import best_trial, check_start, tune_format
from mfclr.tune.spec import SweepSpec, final_stage_config
from mfclr.tune.study import study_file

log = logging.getLogger(__name__)


def finish_sweep(
    spec: SweepSpec, base: Config, best: dict[str, dict[str, Any]], out: Path, storage: str,
    datasets: Datasets | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Fused-probe evaluation of the best encoders under every head of `final_stage_config`;
    results.json + results.md in `out` (the best-trial table is a section of results.md)."""
    base = final_stage_config(spec, base)
    frozen = {
        fmt: {f: load_frozen(p, f) for f, p in b["encoders"].items()} for fmt, b in best.items()
    }
    separate = {fmt: encs[fmt] for fmt, encs in frozen.items() if fmt != CROSS}
    cross = {CROSS: frozen[CROSS]} if CROSS in frozen else None
    facts = {"sweep": spec.name, "validation_metric": VAL_METRIC, "storage": storage,
             "embeddings": str(out / "embeddings"), "best": best}  # fmt: skip
    result = probe_and_report(base, separate, out, extra_sets=cross, facts=facts,
                              sections=[best_trials_table(best, VAL_METRIC)],
                              group=spec.name, datasets=datasets)  # fmt: skip
    if is_remote(storage):  # the local sweep folder may be a job's ephemeral working dir
        best_files = [f"best/{Path(p).name}" for b in best.values() for p in b["encoders"].values()]
        studies = [Path(b["study"]).name for b in best.values()]
        saved = ["classifier.pt"] if result.get("classifier") else []
        for name in ["results.json", "results.md", *saved, *best_files, *studies]:
            pyarrow.fs.copy_files(str(out / name), f"{storage}/{spec.name}/{name}")
    return result


def run_sweep(
    spec: SweepSpec,
    base: Config,
    out: str | Path,
    *,
    storage: str | None = None,
    resume: bool = False,
    verbose: int = 1,
) -> dict[str, Any]:
    """Every format's study, then the fused probe; returns the results (see finish_sweep)."""
    out = Path(out).resolve() / spec.name
    storage = storage or spec.storage or str(out.parent)
    storage = storage.rstrip("/") if is_remote(storage) else str(Path(storage).resolve())
    base = absolute_paths(base)
    check_start(spec, out, storage, resume)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.yaml",
                      yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))  # fmt: skip
    save_config(base, out / "config.yaml")
    datasets = Datasets()
    prepare(base, datasets)  # decode the dataset once here, not in every worker at once
    init_ray()
    best = {}
    for fmt in spec.formats:
        log.info("== sweep %s: %s (%d trials)", spec.name, fmt, spec.budget.trials)
        grid = tune_format(spec, base, fmt, storage, resume=resume, verbose=verbose,
                           tracking_dir=str(out), study_dir=out)  # fmt: skip
        best[fmt] = {**best_trial(spec, fmt, grid, out), "study": str(study_file(out, fmt))}
    log.info("== fused probe of the best %s encoders", ", ".join(best))
    return finish_sweep(spec, base, best, out, storage, datasets)


def print_summary(result: dict[str, Any], file: Any = sys.stdout) -> None:
    print(
        f"\nsweep {result['sweep']}: test split of {result['dataset']} "
        f"({result['test_tracks']} tracks)\n",
        file=file,
    )
    print(results_table(result["rows"]), file=file)
    print("\n" + best_trials_table(result["best"], VAL_METRIC), file=file)
    print(f"results: {result['results_json']}  {result['results_md']}", file=file)
    if result.get("classifier"):
        print(f"classifier: {result['classifier']} (row {result['classifier_row']})", file=file)
