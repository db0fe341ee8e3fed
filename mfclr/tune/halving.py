"""Synchronous successive halving (`budget.scheduler: halving`): every trial trains
`grace_period` epochs, the best 1/rf of them go on to grace * rf epochs, the best 1/rf of those
to grace * rf^2, ... up to `budget.epochs`; the rest stop.

ASHA (the default) decides at each rung from the results recorded there so far, so in a study
whose trials run one after the other its first trials always go on, and when TPE's proposals
improve, most later ones do too (benchmarks/search_efficiency.py measured 34-67 % of a grid's
epochs). Here the decision waits for the whole rung: a trial that reaches it is paused (its
last checkpoint kept) until every other trial has, and the epochs spent are fixed in advance,
sum_k ceil(n / rf^k) * (r_k - r_{k-1}).

This is Tune's HyperBand with a single bracket holding every trial and starting at the grace
period (HyperBand proper hedges over several brackets, most of them without early stopping).
Two fixes to Tune 2.60's HyperBand for this (both measured on 16 trials, two at a time, where 2
trials were left PAUSED in the saved state and the study counted unfinished): each trial gets
its own decision when several train at once, and a paused trial that is stopped is written to
the experiment state as stopped.

A paused trial holds no resources, so the searcher must be able to propose every trial of the
rung while the first ones wait: `max_concurrent_trials` has to cover the whole study (spec.py
checks it), and how many train at once is bounded by the cluster's CPUs and GPUs.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler, TrialScheduler
from ray.tune.schedulers.hyperband import _Bracket


def rungs(epochs: int, grace_period: int, reduction_factor: int) -> list[int]:
    """The epochs at which trials are compared: grace * rf^k below `epochs`, then `epochs`."""
    out = [grace_period]
    while out[-1] < epochs:
        out.append(min(out[-1] * reduction_factor, epochs))
    return out


def planned_epochs(trials: int, epochs: int, grace_period: int, reduction_factor: int) -> int:
    """Epochs the study spends when no trial fails: the survivors of each rung times the epochs
    from that rung to the next."""
    total, alive, done = 0, trials, 0
    for r in rungs(epochs, grace_period, reduction_factor):
        total += alive * (r - done)
        alive, done = math.ceil(alive / reduction_factor), r
    return total


class SuccessiveHalving(HyperBandScheduler):
    """One bracket of `trials` trials from `grace_period` to `max_t` epochs (`time_attr`)."""

    def __init__(
        self,
        *,
        time_attr: str,
        metric: str,
        mode: str,
        trials: int,
        max_t: int,
        grace_period: int,
        reduction_factor: int,
    ) -> None:
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            max_t=max_t,
            reduction_factor=reduction_factor,
        )
        self._trials, self._grace = trials, grace_period
        self._halvings = len(rungs(max_t, grace_period, reduction_factor)) - 1
        # HyperBand makes a band of _s_max_1 brackets; one bracket per band, each sized below.
        self._s_max_1 = 1
        self._current: Trial | None = None

    def _create_bracket(self, s: int) -> _Bracket:
        return _Bracket(
            time_attr=self._time_attr,
            max_trials=self._trials,
            init_t_attr=self._grace,
            max_t_attr=self._max_t_attr,
            eta=self._eta,
            s=self._halvings,
            stop_last_trials=self._stop_last_trials,
        )

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        self._current = trial
        try:
            return super().on_trial_result(tune_controller, trial, result)
        finally:
            self._current = None

    def _process_bracket(self, tune_controller: Any, bracket: _Bracket) -> str:
        """HyperBand's halving step, for trials that train side by side. Tune's assumes that the
        trial whose result completes a rung is the only one RUNNING; with two or more at once,
        another may still be RUNNING while its pause is saved, and Tune's step then applied that
        trial's decision to the current one. Here each trial gets its own."""
        if not bracket.cur_iter_done():
            return TrialScheduler.PAUSE
        current = self._current
        if bracket.finished():
            for t in bracket.current_trials():
                if t is not current:
                    self._drop(tune_controller, t)
            return TrialScheduler.STOP
        bracket.is_being_processed = True
        good, bad = bracket.successive_halving(self._metric, self._metric_op)
        self._num_stopped += len(bad)
        action = TrialScheduler.PAUSE
        for t in bad:
            bracket.cleanup_trial(t)
            if t is current:
                action = TrialScheduler.STOP
            else:
                self._drop(tune_controller, t)
        for t in good:
            if not bracket.continue_trial(t):
                continue
            if t is current:
                action = TrialScheduler.CONTINUE
            else:  # paused, or about to be: choose_trial_to_run starts it again
                bracket.trials_to_unpause.add(t)
        return action

    def _drop(self, tune_controller: Any, trial: Trial) -> None:
        # A trial still RUNNING here is saving its pause: Tune stops it once that is done.
        if trial.status in (Trial.PAUSED, Trial.RUNNING, Trial.PENDING):
            paused = trial.status == Trial.PAUSED
            tune_controller.stop_trial(trial)
            if paused:
                # Tune 2.60 stops a paused trial (no actor) without marking it for the saved
                # experiment state, which then keeps it PAUSED: --resume would run it again
                # and mfclr.tune.search would count the study unfinished. Mark it, as Tune
                # does for a trial it stops with an actor.
                tune_controller._mark_trial_to_checkpoint(trial)
