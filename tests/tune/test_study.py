"""The on-disk Optuna study of a sweep (mfclr.tune.study): Tune trials become Optuna trials with
the right state, the journal is appended while trials report and rewritten only when something
written went stale, and the Tune callback pickles and writes what it is told. No Ray runtime:
the callback gets stand-ins for Tune's trials."""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import pytest

pytest.importorskip("ray")

from optuna.trial import TrialState  # noqa: E402

from mfclr.train.keys import VAL_METRIC  # noqa: E402
from mfclr.tune.search import define_space, study_mirror  # noqa: E402
from mfclr.tune.spec import load_sweep  # noqa: E402
from mfclr.tune.study import (  # noqa: E402
    TIME_ATTR,
    space_distributions,
    trial_record,
    write_study,
)

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "sweeps" / "smoke.yaml"
NAME = "smoke-spectrogram"


def _dists() -> dict:
    spec, _ = load_sweep(SMOKE)
    params = {n: p.model_dump() for n, p in spec.search.space.items()}
    return space_distributions(partial(define_space, fmt="spectrogram", params=params))


CONFIG = {"format": "spectrogram", "temperature": 0.3, "weight_decay": 1e-5, "mask_size": 4,
          "probe_head": "linear"}  # fmt: skip


def _rows(*values: float) -> list[dict[str, Any]]:
    return [{TIME_ATTR: i + 1, VAL_METRIC: v, "timestamp": 1.7e9 + i} for i, v in enumerate(values)]


def _record(name: str, status: str, *values: float, epochs: int = 2) -> Any:
    return trial_record(name, CONFIG, status, _rows(*values), epochs=epochs,
                        distributions=_dists())  # fmt: skip


def _load(path: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name=NAME, storage=storage)


def test_tune_trials_map_to_optuna_states() -> None:
    done, pruned = _record("a_001", "TERMINATED", 0.2, 0.4), _record("a_002", "TERMINATED", 0.3)
    assert (done.state, done.value, done.intermediate) == (
        TrialState.COMPLETE,
        0.4,
        {1: 0.2, 2: 0.4},
    )
    # Stopped by ASHA before the budget: Tune says terminated, Optuna says pruned (last value).
    assert (pruned.state, pruned.value, pruned.intermediate) == (TrialState.PRUNED, 0.3, {1: 0.3})
    assert _record("a_003", "ERROR", 0.1).state == TrialState.FAIL
    assert _record("a_004", "RUNNING", 0.1).state == TrialState.RUNNING
    assert _record("a_005", "PAUSED", 0.1).state == TrialState.WAITING
    assert set(done.params) == {"temperature", "weight_decay", "mask_size", "probe_head"}
    # A repeated epoch (a restarted worker reports it again) keeps one value: the last.
    again = trial_record("a_006", CONFIG, "RUNNING", [*_rows(0.1), {TIME_ATTR: 1, VAL_METRIC: 0.5}],
                         epochs=2, distributions=_dists())  # fmt: skip
    assert again.intermediate == {1: 0.5}


def test_the_journal_is_appended_and_rewritten_only_when_stale(tmp_path: Path) -> None:
    path = tmp_path / "study-spectrogram.log"
    write_study(path, NAME, [_record("a_001", "RUNNING", 0.2)], complete=False)
    first = path.read_bytes()
    write_study(path, NAME, [_record("a_001", "TERMINATED", 0.2, 0.4)], complete=False)
    write_study(path, NAME, [_record("a_002", "TERMINATED", 0.3)], complete=False)
    assert path.read_bytes().startswith(first)  # appended: a reader of the file stays valid
    trials = _load(path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert [t.user_attrs["trial"] for t in trials] == ["a_001", "a_002"]
    assert trials[0].intermediate_values == {1: 0.2, 2: 0.4} and trials[0].value == 0.4
    # An errored trial that --resume runs again: what was written is stale, the file is rebuilt
    # with one trial per Tune trial, never two.
    write_study(path, NAME, [_record("a_003", "ERROR")], complete=False)
    write_study(path, NAME, [_record("a_003", "RUNNING", 0.1)], complete=False)
    states = {t.user_attrs["trial"]: t.state for t in _load(path).trials}
    assert states == {"a_001": TrialState.COMPLETE, "a_002": TrialState.PRUNED,
                      "a_003": TrialState.RUNNING}  # fmt: skip
    # The complete list from Tune drops a trial it does not know of.
    write_study(path, NAME, [_record("a_001", "TERMINATED", 0.2, 0.4)], complete=True)
    assert [t.user_attrs["trial"] for t in _load(path).trials] == ["a_001"]
    assert not list(tmp_path.glob(".*tmp*"))


class FakeTrial:
    """What StudyMirror reads of a Tune trial."""

    def __init__(self, name: str, last: dict[str, Any] | None = None) -> None:
        self.name, self.config, self.last_result, self.path = name, CONFIG, last, f"/x/{name}"

    def __str__(self) -> str:
        return self.name


def test_the_callback_pickles_and_mirrors_what_tune_reports(tmp_path: Path) -> None:
    spec, _ = load_sweep(SMOKE)
    mirror = pickle.loads(pickle.dumps(study_mirror(spec, "spectrogram", tmp_path)))
    rows = _rows(0.2, 0.4)
    trial = FakeTrial("spectrogram_001")
    mirror.on_trial_start(0, [trial], trial)
    for row in rows:
        trial.last_result = row
        mirror.on_trial_result(0, [trial], trial, row)
    running = _load(tmp_path / "study-spectrogram.log").trials[0]
    assert running.state == TrialState.RUNNING and running.intermediate_values == {1: 0.2, 2: 0.4}
    mirror.on_trial_complete(0, [trial], trial)
    broken = FakeTrial("spectrogram_002")
    mirror.on_trial_start(0, [trial, broken], broken)
    mirror.on_trial_error(0, [trial, broken], broken)
    done, failed = _load(tmp_path / "study-spectrogram.log").trials
    assert (done.state, done.value) == (TrialState.COMPLETE, 0.4)
    assert failed.state == TrialState.FAIL and failed.user_attrs["trial"] == "spectrogram_002"
