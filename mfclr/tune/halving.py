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
A paused trial holds no resources, so the searcher must be able to propose every trial of the
rung while the first ones wait: `max_concurrent_trials` has to cover the whole study (spec.py
checks it), and how many train at once is bounded by the cluster's CPUs and GPUs.
"""

from __future__ import annotations

import math

from ray.tune.schedulers import HyperBandScheduler
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
