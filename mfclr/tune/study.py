"""Each format's study on disk: an Optuna journal file that mirrors Tune's trials.

    <out>/<sweep>/study-<format>.log      optuna-dashboard <file>  |  load_sweep_study(<file>)

Tune's results are the truth; the file is a mirror of them, so it is never a second record that
could disagree. `StudyMirror` (a Tune callback on the driver) appends to it while the sweep runs;
`mirror_experiment` rebuilds it from Tune's saved experiment state before a `--resume` and after
every `fit()` (an interruption included). Each Tune trial is one Optuna trial (user attribute
`trial`: its `<format>_<NNN>` name) with its sampled parameters, the validation metric per
reported epoch as intermediate values (step = `epochs_done`) and a state that says what happened:

    COMPLETE  ran every epoch; value: its last validation metric (what picks the best trial)
    PRUNED    stopped early by ASHA (Tune calls it terminated); value: its last metric
    FAIL      errored (no value)
    RUNNING   unfinished: the sweep is running, or was interrupted and awaits --resume

A journal is append-only: where something already written turns out wrong (an errored trial that
`--resume` runs again), the file is rewritten whole, atomically. A dashboard open on it then
needs a restart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from ray import tune

from mfclr.io import atomic_write_bytes, temp_name
from mfclr.train.keys import TIME_ATTR, VAL_METRIC  # noqa: F401 (TIME_ATTR re-exported)

log = logging.getLogger(__name__)
NAME_ATTR = "trial"  # the user attribute holding a trial's Tune name


def study_file(folder: str | Path, fmt: str) -> Path:
    return Path(folder) / f"study-{fmt}.log"


def study_name(sweep: str, fmt: str) -> str:
    return f"{sweep}-{fmt}"


def space_distributions(space: Any) -> dict[str, BaseDistribution]:
    """The distributions a define-by-run `space(trial)` suggests from (asked once, in memory)."""
    prev = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        trial = optuna.create_study().ask()
    finally:
        optuna.logging.set_verbosity(prev)
    space(trial)
    return dict(trial.distributions)


@dataclass(frozen=True)
class TrialRecord:
    """What the file says of one Tune trial (times: unix seconds, only used when rebuilding)."""

    name: str
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    state: TrialState
    value: float | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    times: tuple[float | None, float | None] = (None, None)


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def trial_record(
    name: str,
    config: Mapping[str, Any],
    status: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    epochs: int,
    distributions: Mapping[str, BaseDistribution],
    error: str | None = None,
) -> TrialRecord:
    """One Tune trial as a record: `status` is Tune's (TERMINATED, ERROR, RUNNING, ...), `rows`
    its reported results in order (the validation metric at `epochs_done`; a repeated epoch keeps
    its last value), `epochs` the sweep's budget (fewer, and terminated: stopped by ASHA)."""
    steps: dict[int, float] = {}
    stamps = []
    for row in rows:
        step, value = _number(row.get(TIME_ATTR)), _number(row.get(VAL_METRIC))
        if step is not None and value is not None:
            steps[int(step)] = value
        if _number(row.get("timestamp")) is not None:
            stamps.append(float(row["timestamp"]))
    done = max(steps, default=0)
    last = steps.get(done)
    if status == "ERROR" or (status == "TERMINATED" and last is None):
        state, value = TrialState.FAIL, None
    elif status == "TERMINATED":
        state, value = (TrialState.COMPLETE if done >= epochs else TrialState.PRUNED), last
    else:  # not finished: running now, or waiting (to start, or for --resume)
        state, value = (TrialState.RUNNING if status == "RUNNING" else TrialState.WAITING), None
    params = {n: config[n] for n in distributions if config.get(n) is not None}
    attrs = {NAME_ATTR: name, "tune_status": status, TIME_ATTR: done}
    if error:
        attrs["error"] = error.splitlines()[0][:300]
    return TrialRecord(name=name, params=params, state=state, value=value, intermediate=steps,
                       distributions={n: distributions[n] for n in params}, attrs=attrs,
                       times=(min(stamps, default=None), max(stamps, default=None)))  # fmt: skip


def _record_of(t: FrozenTrial) -> TrialRecord:
    start, end = t.datetime_start, t.datetime_complete
    return TrialRecord(name=str(t.user_attrs.get(NAME_ATTR)), params=dict(t.params),
                       distributions=dict(t.distributions), state=t.state, value=t.value,
                       intermediate=dict(t.intermediate_values), attrs=dict(t.user_attrs),
                       times=(start.timestamp() if start else None,
                              end.timestamp() if end else None))  # fmt: skip


def _frozen(r: TrialRecord) -> FrozenTrial:
    trial = optuna.trial.create_trial(
        state=r.state,
        value=r.value if r.state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
        params=r.params,
        distributions=r.distributions,
        user_attrs=r.attrs,
        intermediate_values=r.intermediate,
    )
    start, end = r.times
    if start is not None and r.state != TrialState.WAITING:  # a waiting trial has not started
        trial.datetime_start = datetime.fromtimestamp(start)
    if end is not None and r.state.is_finished():
        trial.datetime_complete = datetime.fromtimestamp(max(end, start or end))
    return trial


def _open(path: Path, name: str) -> tuple[JournalStorage, optuna.Study]:
    storage = JournalStorage(JournalFileBackend(str(path)))
    prev = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", load_if_exists=True
        )
    finally:
        optuna.logging.set_verbosity(prev)
    return storage, study


def read_trials(path: str | Path, name: str) -> dict[str, FrozenTrial]:
    """The trials of a study file by Tune name ({} when there is no file yet)."""
    if not Path(path).is_file():
        return {}
    _, study = _open(Path(path), name)
    return {str(t.user_attrs.get(NAME_ATTR)): t for t in study.get_trials(deepcopy=False)}


def _appendable(t: FrozenTrial, r: TrialRecord) -> bool:
    """Whether the written trial `t` becomes `r` by appending to the journal."""
    if t.params != r.params:
        return False
    if t.state.is_finished():
        return (t.state, t.value, t.intermediate_values) == (r.state, r.value, r.intermediate)
    return set(t.intermediate_values) <= set(r.intermediate)


def _append(storage: JournalStorage, study: optuna.Study, t: FrozenTrial, r: TrialRecord) -> None:
    if t.state.is_finished():
        return
    tid = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), t.number
    )
    for step, value in r.intermediate.items():
        if t.intermediate_values.get(step) != value:
            storage.set_trial_intermediate_value(tid, step, value)
    for key, value in r.attrs.items():
        if t.user_attrs.get(key) != value:
            storage.set_trial_user_attr(tid, key, value)
    if r.state != t.state:
        storage.set_trial_state_values(tid, r.state, None if r.value is None else [r.value])


def _rebuild(path: Path, name: str, records: Sequence[TrialRecord]) -> None:
    # Built in a scratch journal by Optuna itself, then put in place whole (the file is small).
    tmp = path.parent / temp_name(path.name)
    try:
        _, study = _open(tmp, name)
        for r in records:
            study.add_trial(_frozen(r))
        atomic_write_bytes(path, tmp.read_bytes(), "study file")
    finally:
        tmp.unlink(missing_ok=True)
    log.info("study %s rewritten from Tune's trials (%d) in %s", name, len(records), path)


def write_study(
    path: str | Path, name: str, records: Sequence[TrialRecord], *, complete: bool = True
) -> Path:
    """Make the study file say `records`. `complete`: these are all the trials (any other one
    written is stale); else they update their namesakes and the other trials stay as written.
    Appends when it can; rewrites the whole file when something already written differs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage, study = _open(path, name)
    written = study.get_trials(deepcopy=False)
    by_name = {str(t.user_attrs.get(NAME_ATTR)): t for t in written}
    if not complete:
        new = {r.name: r for r in records}
        records = [new.pop(n, None) or _record_of(t) for n, t in by_name.items()]
        records += list(new.values())
    ok = len(by_name) == len(written) and set(by_name) <= {r.name for r in records}
    if not (ok and all(_appendable(by_name[r.name], r) for r in records if r.name in by_name)):
        _rebuild(path, name, records)
        return path
    for r in records:
        if r.name in by_name:
            _append(storage, study, by_name[r.name], r)
        else:
            study.add_trial(_frozen(r))
    return path


def _tune_name(trial: Any) -> str:
    """The trial's `<format>_<NNN>` name (Tune's trial_name_creator, also its folder's name)."""
    return str(trial) or Path(trial.path).name


def mirror_experiment(
    analysis: tune.ExperimentAnalysis,
    path: str | Path,
    name: str,
    distributions: Mapping[str, BaseDistribution],
    epochs: int,
) -> Path:
    """Rewrite the study file from Tune's saved experiment state (every trial, its results)."""
    frames = analysis.trial_dataframes
    records = []
    for t in sorted(analysis.trials, key=_tune_name):
        frame = frames.get(t.trial_id)
        rows = frame.to_dict("records") if frame is not None and len(frame) else []
        # Called between fits only: an unfinished trial is waiting for --resume, not running.
        status = t.status if t.status in ("TERMINATED", "ERROR") else "PAUSED"
        records.append(trial_record(_tune_name(t), t.config, status, rows, epochs=epochs,
                                    distributions=distributions))  # fmt: skip
    return write_study(path, name, records, complete=True)


class StudyMirror(tune.Callback):
    """Writes each trial's start, results and end to the study file as Tune reports them (on the
    driver). Pickled with the experiment state, so it holds only the path and the space; a
    failure to write is a warning (the file is rebuilt from Tune's state after `fit()`)."""

    def __init__(
        self, path: str, name: str, distributions: Mapping[str, BaseDistribution], epochs: int
    ) -> None:
        self.path, self.name, self.epochs = path, name, epochs
        self.distributions = dict(distributions)

    def _write(self, trial: Any, status: str, result: Mapping[str, Any] | None = None) -> None:
        name = _tune_name(trial)
        try:
            before = read_trials(self.path, self.name).get(name)
            steps = before.intermediate_values.items() if before is not None else ()
            rows = [{TIME_ATTR: s, VAL_METRIC: v} for s, v in steps]
            rows += [r for r in (result, trial.last_result) if r]
            record = trial_record(name, trial.config, status, rows, epochs=self.epochs,
                                  distributions=self.distributions)  # fmt: skip
            write_study(self.path, self.name, [record], complete=False)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            log.warning("study file %s not updated for %s: %s", self.path, name, err)

    def rebuild(self, analysis: tune.ExperimentAnalysis) -> Path:
        """The file rewritten from Tune's saved state (see `mirror_experiment`)."""
        return mirror_experiment(analysis, self.path, self.name, self.distributions, self.epochs)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, "RUNNING")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._write(trial, "RUNNING", result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, "ERROR")
