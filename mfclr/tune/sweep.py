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

from mfclr import signals
from mfclr.config import CROSS, Config, absolute_paths, save_config
from mfclr.data import Datasets
from mfclr.data.summary import prepare
from mfclr.formats.frozen import load_frozen
from mfclr.io import atomic_write_text, clean_stale_temps, is_remote
from mfclr.locks import folder_lock
from mfclr.probe import pool
from mfclr.report.markdown import best_trials_table, results_table
from mfclr.stage import probe_and_report
from mfclr.train.keys import VAL_METRIC
from mfclr.train.ray import init_ray
from mfclr.tune.panel import finish_panel
from mfclr.tune.resume import check_resume, check_state_files, record_overrides
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
    facts = {"sweep": spec.name, "validation_metric": VAL_METRIC, "storage": storage,
             "best": best}  # fmt: skip
    if spec.panel is not None:
        return finish_panel(spec, base, best, out, facts, [best_trials_table(best, VAL_METRIC)])
    frozen = {
        fmt: {f: load_frozen(p, f) for f, p in b["encoders"].items()} for fmt, b in best.items()
    }
    separate = {fmt: encs[fmt] for fmt, encs in frozen.items() if fmt != CROSS}
    cross = {CROSS: frozen[CROSS]} if CROSS in frozen else None
    facts["embeddings"] = str(out / "embeddings")
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
    override_resume: bool = False,
    verbose: int = 1,
) -> dict[str, Any]:
    """Every format's study, then the fused probe; returns the results (see finish_sweep). The
    sweep folder is locked for the whole sweep; a resume under other settings is refused unless
    `override_resume` (mfclr/tune/resume.py)."""
    out = Path(out).resolve() / spec.name
    storage = storage or spec.storage or str(out.parent)
    storage = storage.rstrip("/") if is_remote(storage) else str(Path(storage).resolve())
    base = absolute_paths(base)
    with folder_lock(out):
        _start(spec, base, out, storage, resume, override_resume)
        return _run(spec, base, out, storage, resume, verbose)


def _start(
    spec: SweepSpec, base: Config, out: Path, storage: str, resume: bool, override: bool
) -> None:
    """Refuse what must not start (an existing sweep without --resume, a changed resume, foreign
    state files), then clean what a killed write left and record the sweep."""
    check_start(spec, out, storage, resume)
    dumped = spec.model_dump(mode="json")
    changed = check_resume(out, dumped, base, override=override) if resume else {}
    if resume:
        check_state_files(f"{storage}/{spec.name}/tune")
    for folder in (out, out / "best"):
        clean_stale_temps(folder)
    if changed:
        record_overrides(out, changed)
    atomic_write_text(out / "sweep.yaml", yaml.safe_dump(dumped, sort_keys=False))
    save_config(base, out / "config.yaml")


def _run(
    spec: SweepSpec, base: Config, out: Path, storage: str, resume: bool, verbose: int
) -> dict[str, Any]:
    datasets = Datasets()
    prepare(base, datasets)  # decode the dataset once here, not in every worker at once
    init_ray()
    best = {}
    for fmt in spec.formats:
        log.info("== sweep %s: %s (%d trials)", spec.name, fmt, spec.budget.trials)
        grid = tune_format(spec, base, fmt, storage, resume=resume, verbose=verbose,
                           tracking_dir=str(out), study_dir=out)  # fmt: skip
        signals.install()  # Tune leaves its SIGINT handler behind: Ctrl-C must stop the probe
        best[fmt] = {**best_trial(spec, fmt, grid, out), "study": str(study_file(out, fmt))}
    log.info("== fused probe of the best %s encoders", ", ".join(best))
    return finish_sweep(spec, base, best, out, storage, datasets)


def print_summary(result: dict[str, Any], file: Any = sys.stdout) -> None:
    print(
        f"\nsweep {result['sweep']}: test split of {result['dataset']} "
        f"({result['test_tracks']} tracks)\n",
        file=file,
    )
    if result["rows"]:
        print(results_table(result["rows"]), file=file)
    for key, rows in (result.get("pooled") or {}).items():  # a panel sweep's verdicts
        if rows:
            table = pool.table(rows, result["pooled_datasets"])
            print(f"pooled {key.replace('_', ' ')}:\n{table}\n", file=file)
    print("\n" + best_trials_table(result["best"], VAL_METRIC), file=file)
    print(f"results: {result['results_json']}  {result['results_md']}", file=file)
    if result.get("classifier"):
        print(f"classifier: {result['classifier']} (row {result['classifier_row']})", file=file)
