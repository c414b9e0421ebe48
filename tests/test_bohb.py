"""BOHB's scheduler on --resume, driven the way Tune drives it (end to end: test_faults)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ray.tune.experiment import Trial

from src.bohb import ResumableHyperBand
from src.config import METRIC, MODE


class StubTrial:
    """What HyperBand reads of a trial: its id and status (Tune sets the status)."""

    def __init__(self, trial_id: str, status: str) -> None:
        self.trial_id, self.status = trial_id, status


def test_a_resumed_trial_is_not_kept_waiting_for_finished_ones() -> None:
    # On --resume Tune hands every restored trial to on_trial_add, the finished ones too.
    finished = [StubTrial("done", Trial.TERMINATED), StubTrial("failed", Trial.ERROR)]
    resumed: Any = StubTrial("resumed", Trial.PENDING)
    everyone: list[Any] = [*finished, resumed]
    searcher = SimpleNamespace(on_pause=lambda trial_id: None, on_unpause=lambda trial_id: None)
    tune: Any = SimpleNamespace(
        search_alg=SimpleNamespace(searcher=searcher), get_trials=lambda: everyone
    )
    scheduler = ResumableHyperBand(metric=METRIC, mode=MODE, max_t=9, reduction_factor=3)
    for trial in everyone:
        scheduler.on_trial_add(tune, trial)

    # It reaches its bracket's first milestone (1 epoch) and is paused there.
    assert scheduler.choose_trial_to_run(tune) == resumed
    resumed.status = Trial.RUNNING
    decision = scheduler.on_trial_result(tune, resumed, {"training_iteration": 1, METRIC: 0.5})
    assert decision == "PAUSE"
    resumed.status = Trial.PAUSED

    # Nothing else runs: the bracket is halved and the trial goes on. Had the finished trials
    # been placed in its bracket, it would wait for their first epoch forever.
    assert scheduler.choose_trial_to_run(tune) == resumed
