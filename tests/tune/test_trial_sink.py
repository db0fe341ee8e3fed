"""TuneSink.restore: a restored trial reports its checkpoint's epoch again (ASHA only), so a
result lost with a stopped driver still reaches the study and the rungs. No Ray runtime: Tune's
session functions are replaced."""

from __future__ import annotations

import pytest

from mfclr.train.keys import TIME_ATTR, VAL_METRIC

trial = pytest.importorskip("mfclr.tune.trial")


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    out: list[dict] = []
    monkeypatch.setattr(trial.tune, "get_checkpoint", lambda: "checkpoint")
    monkeypatch.setattr(trial.tune, "report", lambda metrics, **_: out.append(metrics))
    return out


def _state(epoch: int, history: list[dict]) -> dict:
    return {"epoch": epoch, "history": history}


def test_the_checkpoint_epoch_is_reported_again(monkeypatch, reported) -> None:
    state = _state(3, [{TIME_ATTR: 2, VAL_METRIC: 0.4}, {TIME_ATTR: 3, VAL_METRIC: 0.5}])
    monkeypatch.setattr(trial, "load_checkpoint", lambda c: state)
    assert trial.TuneSink(repeat_restored=True).restore() is state
    assert reported == [{TIME_ATTR: 3, VAL_METRIC: 0.5}]


@pytest.mark.parametrize(
    "sink, state",
    [
        (trial.TuneSink(), _state(3, [{TIME_ATTR: 3, VAL_METRIC: 0.5}])),  # halving: never
        (trial.TuneSink(repeat_restored=True), _state(3, [{TIME_ATTR: 3, "loss": 1.0}])),
        (trial.TuneSink(repeat_restored=True), _state(3, [{TIME_ATTR: 2, VAL_METRIC: 0.5}])),
        (trial.TuneSink(repeat_restored=True), _state(3, [])),
    ],
)
def test_nothing_is_reported_without_the_checkpoint_epochs_metric(
    monkeypatch, reported, sink, state
) -> None:
    monkeypatch.setattr(trial, "load_checkpoint", lambda c: state)
    assert sink.restore() is state and reported == []
