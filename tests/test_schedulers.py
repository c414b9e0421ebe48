"""Our fixes to Tune's schedulers, driven the way Tune drives them (end to end: test_faults)."""

from __future__ import annotations

import tempfile
from types import SimpleNamespace
from typing import Any

import pytest
from ray.tune import Checkpoint
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from src.bohb import ResumableHyperBand
from src.config import METRIC, MODE
from src.search import ASHAKeepingStart, PBTWithinMaxEpochs


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


class RecordingController:
    """What PBT asks of Tune's controller: the trials, a checkpoint of a strong one, and a
    pause for the weak one it clones into (recorded)."""

    search_alg = None

    def __init__(self, trials: list[Trial]) -> None:
        self.trials, self.paused = trials, list[str]()

    def get_trials(self) -> list[Trial]:
        return self.trials

    def _schedule_trial_save(self, trial: Trial, result: dict) -> object:
        return Checkpoint.from_directory(tempfile.mkdtemp())

    def pause_trial(self, trial: Trial, should_checkpoint: bool) -> None:
        self.paused.append(trial.trial_id)
        trial.set_status(Trial.PAUSED)


@pytest.mark.parametrize("epoch, cloned", [(1, ["weakest"]), (2, [])])
def test_pbt_clones_into_the_weak_except_at_their_last_epoch(epoch: int, cloned: list) -> None:
    # Cloning at the last epoch leaves nothing to train: the trial would end as the donor's
    # copy, its last result the donor's (a duplicate row in experiment_summary.csv, seen in CI).
    names = ["weak", "strong", "strongest", "weakest"]
    trials = [Trial("train_cnn", config={"lr": 0.1}, trial_id=n, stub=True) for n in names]
    tune_controller: Any = RecordingController(trials)
    scheduler = PBTWithinMaxEpochs(
        2, metric=METRIC, mode=MODE, perturbation_interval=1, log_config=False,
        hyperparam_mutations={"lr": [0.1, 0.01]},
    )  # fmt: skip
    for trial in trials:
        trial.set_status(Trial.RUNNING)
        scheduler.on_trial_add(tune_controller, trial)
    for trial, accuracy in zip(trials, [0.3, 0.8, 0.9, 0.2], strict=True):
        result = {"training_iteration": epoch, METRIC: accuracy}
        scheduler.on_trial_result(tune_controller, trial, result)
    assert tune_controller.paused == cloned


@pytest.mark.parametrize("keep_start", [True, False])
def test_asha_stops_the_weak_but_never_the_starting_configuration(keep_start: bool) -> None:
    # The starting configuration is the yardstick: it must reach every epoch the best does.
    start = {"lr": 3e-3}
    configs = {"a": {"lr": 1e-2}, "b": {"lr": 1e-3}, "c": {"lr": 5e-4}, "start": start}
    trials = [Trial("train_cnn", config=c, trial_id=n, stub=True) for n, c in configs.items()]
    asha: dict[str, Any] = {"time_attr": "training_iteration", "metric": METRIC, "mode": MODE,
                            "max_t": 9, "grace_period": 1, "reduction_factor": 2}  # fmt: skip
    scheduler = ASHAKeepingStart(start, **asha) if keep_start else ASHAScheduler(**asha)
    controller: Any = SimpleNamespace(get_trials=lambda: trials, search_alg=None)
    decisions = {}
    for trial, accuracy in zip(trials, [0.9, 0.8, 0.2, 0.1], strict=True):  # start: worst
        scheduler.on_trial_add(controller, trial)
        result = {"training_iteration": 1, METRIC: accuracy}
        decisions[trial.trial_id] = scheduler.on_trial_result(controller, trial, result)
    # Asynchronous halving: a trial below the top half of those seen so far at the rung stops.
    assert decisions == {
        "a": "CONTINUE", "b": "STOP", "c": "STOP", "start": "CONTINUE" if keep_start else "STOP"
    }  # fmt: skip
