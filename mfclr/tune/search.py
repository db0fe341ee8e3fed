"""Ray Tune + Optuna: one format's study (space, trainable, tuner) and its best trial.

    sweep file --> per format: OptunaSearch (TPE, seeded, define-by-run space) + ASHA
               --> trial driver (mfclr.tune.trial, a Tune function): one worker trains in the
                   trial itself; two or more = a Ray Train run per trial
               --> best trial by the validation metric --> its encoders in best/

The storage layout and what Ctrl-C / `--resume` do are described in `mfclr.tune.sweep`.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.train import Checkpoint
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from mfclr.config import Config
from mfclr.errors import ConfigError, MfclrError
from mfclr.train.export import export_encoders
from mfclr.train.harness import Sink
from mfclr.train.keys import TIME_ATTR, VAL_METRIC
from mfclr.train.ray import (
    KEEP_CHECKPOINTS,
    init_ray,
    load_checkpoint,
    resolve_use_gpu,
    worker_resources,
)
from mfclr.tune.halving import SuccessiveHalving
from mfclr.tune.panel import export_best
from mfclr.tune.spec import SweepSpec
from mfclr.tune.study import StudyMirror, space_distributions, study_file, study_name
from mfclr.tune.trial import (  # noqa: F401 (re-exported)
    TrialSetup,
    TuneSink,
    trial_config,
    trial_driver,
)

log = logging.getLogger(__name__)
DRIVER_MEMORY = 256 * 1024**2  # bytes reserved (for scheduling only) by a trial driver


class SweepInterrupted(MfclrError):
    """Tune stopped before every trial finished (Ctrl-C, `ray job stop`); state is saved."""


# ----------------------------------------------------------------------------- search space


def define_space(trial: optuna.Trial, fmt: str, params: dict[str, dict[str, Any]]) -> dict:
    """Optuna define-by-run space of one format's study.

    `params` is name -> ParamSpec as a dict. Parameters restricted to other formats are the
    constant None, so every format's trials have the same config keys (W&B group-by works).
    Module-level (used through functools.partial) so the searcher pickles with the experiment.
    """
    constants: dict[str, Any] = {"format": fmt}
    for name, p in params.items():
        if p.get("formats") and fmt not in p["formats"]:
            constants[name] = None
        elif p["type"] == "choice":
            trial.suggest_categorical(name, p["choices"])
        elif p["type"] == "int":
            step = int(p["step"]) if p.get("step") else 1
            trial.suggest_int(name, int(p["low"]), int(p["high"]), step=step, log=p["log"])
        else:
            trial.suggest_float(name, p["low"], p["high"], step=p.get("step"), log=p["log"])
    return constants


def trial_name(trial: Any) -> str:
    """`<format>_<NNN>`, NNN the trial's creation index: stable across Tuner.restore."""
    return f"{trial.config['format']}_{int(trial.experiment_tag.split('_')[0]):03d}"


# ----------------------------------------------------------------------------- trainable


def _trainable(
    spec: SweepSpec, base: Config, storage: str, tracking_dir: str | None, sink: Sink | None = None
) -> Any:
    """The trial driver with its `TrialSetup`; `sink` (the tests' faults) replaces the trials'
    default sink (`TuneSink` in a one-worker trial, `RayTrainSink` in Ray Train workers)."""
    init_ray()  # train.device auto asks the cluster whether it has GPUs
    gpu = resolve_use_gpu(base, None)
    panel = spec.panel["datasets"] if spec.panel else None
    setup = TrialSetup(base=base.to_dict(), keys=spec.param_keys(),
                       train_storage=f"{storage}/{spec.name}/train", tracking_dir=tracking_dir,
                       group=spec.name, use_gpu=gpu, panel=panel)  # fmt: skip
    if sink is None and base.ray.workers == 1:  # ASHA must see a restored trial's last epoch
        sink = TuneSink(repeat_restored=spec.budget.scheduler == "asha")
    if sink is not None:
        role = "sink" if base.ray.workers == 1 else "train_sink"
        setup = dataclasses.replace(setup, **{role: sink})
    driver = tune.with_parameters(trial_driver, setup=setup)
    if base.ray.workers == 1:
        # The trial is the worker: it holds the worker's CPUs (and GPU), so Tune's own
        # accounting, with max_concurrent_trials, bounds how many train at once.
        return tune.with_resources(driver, worker_resources(base, gpu))
    # A Ray Train trial only waits on its workers, which hold their own placement group. It
    # asks for memory, not CPU (Tune refuses an empty request): a trial never takes the CPU its
    # own workers need on a small cluster, and it fits on a head started with --num-cpus=0.
    return tune.with_resources(driver, {"memory": DRIVER_MEMORY})


def _run_config(
    spec: SweepSpec, base: Config, fmt: str, storage: str, verbose: int, callbacks: Any
) -> Any:
    """Tune retries a failed one-worker trial from its last checkpoint; a Ray Train trial
    retries its worker group itself (`ray.max_failures`), so Tune does not retry it again."""
    in_process = base.ray.workers == 1
    return tune.RunConfig(
        name=fmt,
        storage_path=f"{storage}/{spec.name}/tune",
        verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=base.ray.max_failures if in_process else 0),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        callbacks=callbacks,
    )


def _space(spec: SweepSpec, fmt: str) -> Any:
    params = {n: p.model_dump() for n, p in spec.search.space.items()}
    return partial(define_space, fmt=fmt, params=params)


def study_mirror(spec: SweepSpec, fmt: str, folder: str | Path) -> StudyMirror:
    """The callback that keeps `<folder>/study-<fmt>.log` (see mfclr.tune.study) up to date."""
    dists = space_distributions(_space(spec, fmt))
    path = str(study_file(folder, fmt))
    return StudyMirror(path, study_name(spec.name, fmt), dists, units(spec))


def units(spec: SweepSpec) -> int:
    """How long a trial that is not stopped runs, in the unit of `epochs_done`: epochs, or the
    datasets of a panel sweep."""
    if spec.panel is not None:
        return len(spec.panel["datasets"])
    assert spec.budget.epochs is not None  # SweepSpec requires it without a panel
    return spec.budget.epochs


def _new_tuner(
    spec: SweepSpec,
    base: Config,
    fmt: str,
    storage: str,
    verbose: int,
    tracking_dir: str | None,
    callbacks: list[Any] | None = None,
    sink: Sink | None = None,
) -> tune.Tuner:
    searcher = OptunaSearch(
        space=_space(spec, fmt),
        metric=VAL_METRIC,
        mode="max",
        seed=spec.search.seed,
    )
    b = spec.budget
    scheduler: TrialScheduler
    if b.scheduler == "halving":
        scheduler = SuccessiveHalving(
            time_attr=TIME_ATTR,
            metric=VAL_METRIC,
            mode="max",
            trials=b.trials,
            max_t=units(spec),
            grace_period=b.grace_period,
            reduction_factor=b.reduction_factor,
        )
    else:
        scheduler = ASHAScheduler(
            time_attr=TIME_ATTR,
            metric=VAL_METRIC,
            mode="max",
            max_t=units(spec) + 1,
            grace_period=b.grace_period,
            reduction_factor=b.reduction_factor,
        )
    return tune.Tuner(
        _trainable(spec, base, storage, tracking_dir, sink),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=b.trials,
            max_concurrent_trials=b.max_concurrent_trials,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
            # A one-worker trial's process (torch, mfclr and Ray Tune imported, ~3-5 s) runs the
            # next trial too. Tune starts a fresh one when the last trial's thread has not ended
            # within TUNE_FUNCTION_THREAD_TIMEOUT_S (2 s: e.g. a stopped trial still saving).
            reuse_actors=base.ray.workers == 1,
        ),
        run_config=_run_config(spec, base, fmt, storage, verbose, callbacks),
    )


def _study_path(spec: SweepSpec, fmt: str, storage: str) -> str:
    return f"{storage}/{spec.name}/tune/{fmt}"


def _refuse_existing(spec: SweepSpec, path: str) -> None:
    raise ConfigError(
        f"sweep '{spec.name}' already has state at {path}; pass --resume "
        "to continue it, or use another --out/--storage"
    )


def check_start(spec: SweepSpec, out: Path, storage: str, resume: bool) -> None:
    """Before any work: refuse to overwrite a sweep's state without --resume (what a resume may
    change is mfclr/tune/resume.py's)."""
    if not resume:
        for fmt in spec.formats:
            if tune.Tuner.can_restore(_study_path(spec, fmt, storage)):
                _refuse_existing(spec, _study_path(spec, fmt, storage))


def tune_format(
    spec: SweepSpec,
    base: Config,
    fmt: str,
    storage: str,
    *,
    resume: bool,
    verbose: int = 1,
    tracking_dir: str | None = None,
    study_dir: str | Path | None = None,
    sink: Sink | None = None,
) -> tune.ResultGrid:
    """Run (or resume) one format's study; raises SweepInterrupted if it did not finish.

    With `tracking_dir`, each trial's rank 0 logs a W&B pretrain run there (group: the sweep).
    With `study_dir`, the study is mirrored to `<study_dir>/study-<fmt>.log` (mfclr.tune.study).
    `sink` replaces each trial's sink (the tests' faults wrap the default one).
    """
    path = _study_path(spec, fmt, storage)
    mirror = study_mirror(spec, fmt, study_dir) if study_dir is not None else None
    if tune.Tuner.can_restore(path):
        if not resume:
            _refuse_existing(spec, path)
        log.info("%s: restoring the study from %s", fmt, path)
        if mirror is not None:  # the restored experiment brings its own StudyMirror, if any
            mirror.rebuild(tune.ExperimentAnalysis(path))
        tuner = tune.Tuner.restore(
            path,
            trainable=_trainable(spec, base, storage, tracking_dir, sink),
            resume_unfinished=True,
            resume_errored=True,
        )
    else:
        callbacks = [mirror] if mirror is not None else None
        tuner = _new_tuner(spec, base, fmt, storage, verbose, tracking_dir, callbacks, sink)
    grid = tuner.fit()
    # After Ctrl-C, fit() returns normally and reports stopped trials as terminated: the saved
    # experiment state (what --resume restores) tells which trials really finished.
    analysis = tune.ExperimentAnalysis(path, storage_filesystem=grid.filesystem)
    if mirror is not None:
        mirror.rebuild(analysis)
    finished = sum(t.status in ("TERMINATED", "ERROR") for t in analysis.trials)
    if finished < spec.budget.trials:
        raise SweepInterrupted(
            f"sweep '{spec.name}' ({fmt}) stopped with {finished} of "
            f"{spec.budget.trials} trials finished; state saved in {path}"
        )
    return grid


# ----------------------------------------------------------------------------- results


def _checkpoint_path(result: tune.Result) -> str | None:
    """A Ray Train trial names its run's checkpoint in its metrics; a one-worker trial's is
    its own last Tune checkpoint."""
    path = (result.metrics or {}).get("checkpoint_path")
    if path is None and result.checkpoint is not None:
        path = result.checkpoint.path
    return path


def _trial_rows(grid: tune.ResultGrid) -> list[dict[str, Any]]:
    rows = []
    for r in grid:
        m = r.metrics or {}
        rows.append(
            {
                "trial": Path(r.path).name,
                "config": r.config,
                VAL_METRIC: m.get(VAL_METRIC),
                "epochs_done": m.get(TIME_ATTR),
                "checkpoint": _checkpoint_path(r),
                "error": str(r.error).splitlines()[0][:300] if r.error else None,
            }
        )
    return rows


def best_trial(spec: SweepSpec, fmt: str, grid: tune.ResultGrid, out: Path) -> dict[str, Any]:
    """The best trial by the validation metric; its checkpoint exported to out/best/<fmt>.pt."""
    scored = [r for r in grid if (r.metrics or {}).get(VAL_METRIC) is not None]
    if not scored:
        raise MfclrError(
            f"no {fmt} trial of sweep '{spec.name}' reported {VAL_METRIC}; "
            f"see the trial errors under {grid.experiment_path}"
        )
    best = grid.get_best_result(metric=VAL_METRIC, mode="max", scope="last")
    source = _checkpoint_path(best)
    if source is None:
        raise MfclrError(f"best {fmt} trial {best.path} of sweep '{spec.name}' kept no checkpoint")
    checkpoint = Checkpoint(path=source, filesystem=grid.filesystem)
    if spec.panel is not None:  # best/<dataset>/<format>.pt per panel dataset
        encoders: dict[str, Any] = export_best(checkpoint, out, fmt)
    else:  # best/<format>.pt; a cross-format trial holds both: best/cross-<input format>.pt
        encoders = export_encoders(load_checkpoint(checkpoint, fmt), out / "best", stem=fmt)
    keys = spec.param_keys()
    chosen = {n: best.config.get(n) for n in keys if best.config.get(n) is not None}
    return {
        "trial": Path(best.path).name,
        VAL_METRIC: best.metrics[VAL_METRIC],
        "epochs_done": best.metrics.get(TIME_ATTR),
        "hyperparameters": chosen,
        "config_keys": {n: keys[n] for n in chosen},
        "checkpoint": source,
        "encoders": encoders,
        "trials": _trial_rows(grid),
    }
