"""The time plan's arithmetic, given paces (never this machine's): the space priced by the cost
model, the trials that fit, the re-plan as trials end, and the plan set beside what ran."""

from __future__ import annotations

import itertools
import json
import pickle
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import src.budget
from src.budget import (
    CostModel,
    TrialSoFar,
    batch_seconds,
    costliest,
    drawn_configs,
    expected_epochs,
    plan_budget,
    replanned_trials,
    search_forecast,
    trial_seconds,
)
from src.config import DEFAULT_START, DataSpec, RunSettings
from src.console import plan_lines
from src.model import forward_elements
from src.progress import PlanFollower, ProgressLine
from src.results import EXPERIMENT_INFO, record_actual, write_experiment_info

START = {**DEFAULT_START, "image_size": 64, "seed": 0}
LONG_SPACE = {
    "image_size": ("choice", [64, 96]),
    "num_conv_layers": ("choice", [3, 4]),
    "lr": ("loguniform", (1e-3, 1e-2)),
}
SETTINGS = RunSettings("exp", Path("/tmp"), None, max_epochs=20, grace_period=4, time_budget=60,
                       search_share=0.4, space=LONG_SPACE, num_samples=None)  # fmt: skip


def two_point_model(start_s: float = 0.10, heaviest_s: float = 0.20) -> CostModel:
    heaviest = costliest(SETTINGS, START)
    return CostModel.fit([(START, start_s), (heaviest, heaviest_s)], train=2300, val=500)


def test_the_cost_model_prices_larger_images_and_deeper_networks_higher() -> None:
    model = two_point_model()
    deeper, larger = {**START, "num_conv_layers": 4}, {**START, "image_size": 96}
    assert model.epoch_seconds(START) < model.epoch_seconds(deeper)
    assert model.epoch_seconds(START) < model.epoch_seconds(larger)
    assert model.epoch_seconds(larger) < model.epoch_seconds({**larger, "num_conv_layers": 4})
    # It goes through both timed points, and prices a batch's part per step for a smaller batch.
    assert model.batch_seconds(START) == pytest.approx(0.10)
    assert model.batch_seconds(costliest(SETTINGS, START)) == pytest.approx(0.20)
    assert model.per_batch > 0 and model.per_element > 0
    halved = {**START, "batch_size": 16}
    assert model.epoch_seconds(halved) > model.epoch_seconds(START)  # twice the steps
    assert model.epoch_seconds(START) == pytest.approx(0.10 * (72 + 16 / 3))  # 2300/32, 500/32


def test_one_timed_point_makes_time_follow_the_elements_and_noise_never_prices_below_zero() -> None:
    alone = CostModel.fit([(START, 0.1)], train=100, val=0)
    deeper = {**START, "num_conv_layers": 4}
    ratio = forward_elements(deeper, 64) / forward_elements(START, 64)
    assert 1 < ratio < 1.5  # a block at an eighth of the pixels, twice the channels
    assert alone.batch_seconds(deeper) == pytest.approx(0.1 * ratio)
    for heaviest_s in (0.09, 0.30):  # timed faster than the start; faster than its elements
        model = two_point_model(start_s=0.10, heaviest_s=heaviest_s)
        assert model.per_batch == 0 and model.per_element > 0  # no part below zero
        assert model.batch_seconds(deeper) == pytest.approx(alone.batch_seconds(deeper))


def test_the_costliest_configuration_and_the_draws_follow_the_space() -> None:
    heaviest = costliest(SETTINGS, START)
    assert (heaviest["image_size"], heaviest["num_conv_layers"]) == (96, 4)
    assert heaviest["batch_size"] == START["batch_size"] and heaviest["lr"] == START["lr"]
    drawn = drawn_configs(SETTINGS, START, 400)
    assert drawn == drawn_configs(SETTINGS, START, 400)  # the run's seed decides
    assert {c["image_size"] for c in drawn} == {64, 96}
    assert all(1e-3 <= c["lr"] <= 1e-2 and c["start_filters"] == 32 for c in drawn)
    share_96 = sum(c["image_size"] == 96 for c in drawn) / len(drawn)
    assert 0.4 < share_96 < 0.6  # drawn evenly, as a random searcher draws them


def test_the_plan_prices_the_space_not_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given paces (a 96 px x 4 block batch 2x the start's), the plan holds fewer trials than
    one priced at the start's pace, and says what it priced."""

    def paced(config: dict[str, Any], spec: DataSpec, *args: Any, **kwargs: Any) -> tuple:
        assert kwargs["together"] == 2  # timed as the trials will run: two at once
        heavy = config["image_size"] == 96 and config["num_conv_layers"] == 4
        return (0.20 if heavy else 0.10), 2300, 500

    monkeypatch.setattr(src.budget, "batch_seconds", paced)
    trials_on = (torch.device("cpu"), 2)
    spec = DataSpec(Path("/tmp"))
    plan = plan_budget(SETTINGS, START, spec, trials_on, spent=0.0)
    flat = plan_budget(replace(SETTINGS, space={}), START, spec, trials_on, spent=0.0)
    assert plan.epoch_seconds == pytest.approx(flat.epoch_seconds) == pytest.approx(7.7333, 1e-3)
    assert plan.trial_epoch_seconds > 1.25 * plan.epoch_seconds
    assert plan.trials < flat.trials
    # The forecast of 24 min on 2 slots, the start's 20 epochs at its pace, then trials at the
    # epochs ASHA lets each expect, at the space's price (search_forecast's arithmetic is
    # tested by hand below).
    epochs = list(itertools.islice(expected_epochs(SETTINGS, slots=2), 100))
    others = [(e, trial_seconds(e, plan.trial_epoch_seconds)) for e in epochs]
    start = (20, trial_seconds(20, plan.epoch_seconds))
    forecast = search_forecast(24 * 60, [0.0, 0.0], [start, *others])
    assert (plan.trials, plan.epochs) == forecast
    assert plan.trial_epochs == pytest.approx(sum(epochs[: plan.trials - 1]) / (plan.trials - 1))
    assert "priced over the space" in plan.describe(SETTINGS)


def test_the_pace_is_timed_in_as_many_threads_at_once_as_trials_will_run(
    monkeypatch: pytest.MonkeyPatch, image_dir: Path
) -> None:
    seen: list[tuple[int, int]] = []  # (thread, parties at its start line)
    lock = threading.Lock()

    def timed(*args: Any, **kwargs: Any) -> float:
        start_line = args[4]
        with lock:
            seen.append((threading.get_ident(), start_line.parties))
            seconds = 0.1 * len(seen)  # the first timer 0.1 s a batch, the second 0.2 s
        start_line.wait(timeout=60)  # returns only once every timer has reached it
        return seconds

    monkeypatch.setattr(src.budget, "time_batches", timed)
    config = {**START, "image_size": 32, "num_conv_layers": 2}
    per_batch, train, val = batch_seconds(
        config, DataSpec(image_dir), 1, device=torch.device("cpu"), together=2
    )
    assert len({thread for thread, _ in seen}) == 2 and {p for _, p in seen} == {2}
    assert per_batch == pytest.approx((0.1 + 0.2) / 2)  # the mean of the two
    assert train > val > 0


def test_the_forecast_counts_every_trial_that_starts_before_the_end() -> None:
    assert src.budget.TRIAL_OVERHEAD_S == 2.0  # in the partial epochs below
    # One slot, 250 s: the start (10 epochs, 100 s), then trials of 3 epochs, 30 s each, begin
    # at 100, 130, 160, 190 and 220 s; the last ends at 250 s, just in time: 6 trials, 25 epochs.
    others = itertools.repeat((3, 30.0))
    assert search_forecast(250.0, [0.0], itertools.chain([(10, 100.0)], others)) == (6, 25.0)
    # Two slots, 100 s: the start holds one throughout; trials of 4 epochs, 42 s each, begin at
    # 0, 42 and 84 s on the other. The last is cut by the end: 14 of its 40 s of epochs (2 s
    # setting up), 1.4 epochs. 4 trials, 10 + 4 + 4 + 1.4 epochs.
    trials, epochs = search_forecast(
        100.0, [0.0, 0.0], itertools.chain([(10, 100.0)], itertools.repeat((4, 42.0)))
    )
    assert trials == 4 and epochs == pytest.approx(19.4)
    # Early trials cost more (ASHA lets more of them on): on one slot of 160 s after a 100 s
    # start, 10 + 20 s trials end by 130 s and the 30 s one that begins then ends at 160 s.
    early = [(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    assert search_forecast(160.0, [0.0], [(10, 100.0), *early]) == (4, 16.0)
    assert search_forecast(50.0, [0.0], [(10, 100.0), *early])[0] == 1  # the start, cut short
    # Slots busy at first: free after 30 and 200 s; trials of 30 s begin at 30, 60 and 90 s.
    assert search_forecast(100.0, [200.0, 30.0], itertools.repeat((3, 30.0)))[0] == 3


FIFO = replace(SETTINGS, scheduler="fifo", max_epochs=4)  # every trial trains 4 epochs


def running(epochs: int, pace: float | None, priced: float = 10.0) -> TrialSoFar:
    return TrialSoFar(epochs, pace, priced, running=True)


def test_slow_first_trials_lower_the_trial_count() -> None:
    assert src.budget.EPOCH_OVERHEAD_S == 0.05 and src.budget.TRIAL_OVERHEAD_S == 2.0
    assert replanned_trials(FIFO, 10.0, [running(0, None)], slots=2, seconds_left=100) is None
    # As priced (10 s an epoch): the start has 2 epochs to go (20.1 s), the second trial 3
    # (30.15 s); trials to come hold a slot 4 x 10.05 + 2 = 42.2 s, and begin at 20.1, 30.15,
    # 62.3 and 72.35 s of the 100 left: 2 + 4 trials.
    as_priced = [running(2, 10.0), running(1, 10.0)]
    assert replanned_trials(FIFO, 10.0, as_priced, slots=2, seconds_left=100) == 6
    # Twice as slow as priced: they free at 40.1 and 60.15 s, a trial holds its slot 82.2 s,
    # and only those two begin before the end.
    slow = [running(2, 20.0), running(1, 20.0)]
    assert replanned_trials(FIFO, 10.0, slow, slots=2, seconds_left=100) == 4
    # A costlier trial that trains as fast as its price says is no slower machine: the trials
    # to come keep their price (the space's average), only its own slot frees later.
    costly = [running(2, 10.0), running(1, 20.0, priced=20.0)]
    assert replanned_trials(FIFO, 10.0, costly, slots=2, seconds_left=100) == 5
    # An ended trial frees its slot now: trials begin at 0, 20.1, 42.2, 62.3 and 84.4 s.
    ended = [running(2, 10.0), TrialSoFar(4, 10.0, 10.0, running=False)]
    assert replanned_trials(FIFO, 10.0, ended, slots=2, seconds_left=100) == 7
    # At the end of the search no more begin.
    assert replanned_trials(FIFO, 10.0, as_priced, slots=2, seconds_left=0) == 2


def test_a_running_trial_is_expected_to_its_next_rung() -> None:
    # Under ASHA (rungs 4 and 12 of 20), after 150 trials that all stopped at epoch 4, a trial
    # to come expects under 5 epochs; one that passed epoch 4 trains to 12 at least: 7 more at
    # 10.05 s hold the one slot 70.35 s.
    assert SETTINGS.rungs() == (4, 12)
    ended = [TrialSoFar(4, 10.0, 10.0, running=False)] * 150  # all stopped at the first rung
    so_far = [*ended, running(5, 10.0)]
    assert next(itertools.islice(expected_epochs(SETTINGS, 1, so_far), 150, None)) < 5
    assert replanned_trials(SETTINGS, 10.0, so_far, slots=1, seconds_left=70) == 151
    assert replanned_trials(SETTINGS, 10.0, so_far, slots=1, seconds_left=71) == 152


def test_trials_stopped_at_the_first_rung_lower_the_epochs_to_come() -> None:
    # Rungs 4 and 12 of 20. What the simulation expects of the trials after the start, and its
    # chances that each goes on past epoch 4.
    simulated = src.budget.asha_epochs((4, 12), 20, 3, True, src.budget.START_DRAWS)
    chances = [chance for _, chance in simulated[:4]]
    plain = list(itertools.islice(expected_epochs(SETTINGS), 10))
    start = running(9, 10.0)

    def to_come(*others: TrialSoFar) -> list[float]:
        return list(itertools.islice(expected_epochs(SETTINGS, 1, [start, *others]), 10))

    stopped = TrialSoFar(4, 10.0, 10.0, running=False)
    went_on = running(5, 10.0)
    # Four trials stopped at the rung where the simulation gave them sum(chances) to go on:
    # epochs past the rung scale by (0 + 1) / (sum + 1), the prior's one trial.
    share = 1 / (sum(chances) + src.budget.PRIOR_TRIALS_ON)
    assert to_come(*[stopped] * 4) == pytest.approx([4 + share * (e - 4) for e in plain])
    assert to_come(*[stopped] * 4)[9] < plain[9] - 1
    assert to_come(*[went_on] * 4)[9] > plain[9] + 1  # all four went on: more to come
    # Trials not yet decided leave it as simulated: one short of the rung, one the search's
    # end cut short before it; the start is never counted.
    assert to_come(running(3, 10.0), TrialSoFar(2, 10.0, 10.0, running=False)) == plain
    assert list(itertools.islice(expected_epochs(SETTINGS, 1, [stopped]), 10)) == plain
    # Never past max_epochs, however many went on.
    assert max(itertools.islice(expected_epochs(SETTINGS, 1, [start, *[went_on] * 100]), 200)) <= 20


def test_trials_stopped_at_the_first_rung_raise_the_re_planned_count() -> None:
    stopped = [running(6, 10.0)] + [TrialSoFar(4, 10.0, 10.0, running=False)] * 4
    went_on = [running(6, 10.0)] + [TrialSoFar(12, 10.0, 10.0, running=False)] * 4
    fewer = replanned_trials(SETTINGS, 10.0, went_on, slots=2, seconds_left=600)
    more = replanned_trials(SETTINGS, 10.0, stopped, slots=2, seconds_left=600)
    assert fewer is not None and more is not None and more > fewer + 1


MODEL = CostModel(per_batch=0.0, per_element=1e-7, train_images=2300, val_images=500)
PLAN = src.budget.BudgetPlan(10, 100.0, MODEL.epoch_seconds(START), 10.0, 2, 4.0, 20, 80.0, 0.0,
                             MODEL)  # fmt: skip


def test_the_progress_line_shows_the_re_planned_count() -> None:
    model = MODEL
    follower = PlanFollower(FIFO, PLAN, time_limit=100.0)
    line = ProgressLine("search", trials=20, max_epochs=4, time_limit=100.0, follower=follower)
    line.epochs_at_start = 0
    start: Any = SimpleNamespace(trial_id="a", status="RUNNING", config=START,
                                 last_result={"training_iteration": 1})  # fmt: skip
    assert line.describe([start], elapsed=1.0).startswith("search 0/20 trials done")
    result = {"training_iteration": 1, "epoch_seconds": 2 * model.epoch_seconds(START)}
    follower.on_trial_result(1, [start], start, result)  # twice as slow as priced
    assert follower.history and follower.history[-1][1] == follower.trials
    assert line.describe([start], elapsed=5.0).startswith(
        f"search 0/{follower.trials} (re-planned) trials done"
    )
    started: list[Any] = [start] + [
        SimpleNamespace(trial_id=i, status="TERMINATED", config=START,
                        last_result={"training_iteration": 1}) for i in "bcdefghijklmnopqrstuvwxyz"
    ]  # fmt: skip
    assert line.describe(started, elapsed=99.0).startswith(
        "search 25/26 (re-planned) trials done"
    )  # never fewer planned than started
    assert (
        ProgressLine("search", trials=20, max_epochs=4)
        .describe([], 1.0)
        .startswith("search 0/20 trials done")
    )


def test_a_resumed_search_re_plans_the_time_it_has_left() -> None:
    follower = PlanFollower(FIFO, PLAN, time_limit=100.0)
    start: Any = SimpleNamespace(trial_id="a", status="RUNNING", config=START, last_result={})
    report = {"training_iteration": 1, "epoch_seconds": MODEL.epoch_seconds(START)}
    follower.on_trial_result(1, [start], start, report)
    fresh = follower.trials
    follower.searched = 90.0  # 90 s searched when the experiment was saved, then interrupted
    resumed = pickle.loads(pickle.dumps(follower))
    resumed.setup()  # as Tune does when it restores the experiment
    resumed.on_trial_result(1, [start], start, {**report, "training_iteration": 2})
    seconds, trials = resumed.history[-1]
    assert seconds >= 90.0 and fresh is not None and trials < fresh  # 10 s left, not 100


def test_the_summary_sets_the_plan_beside_what_ran(tmp_path: Path) -> None:
    folder = tmp_path / "exp"
    settings = RunSettings("exp", tmp_path, None, time_budget=10)
    plan = {"minutes": 10, "search_seconds": 240.0, "epoch_seconds": 4.0,
            "trial_epoch_seconds": 4.0, "concurrent": 2, "trial_epochs": 3.0, "trials": 30,
            "epochs": 97.0, "refit_seconds": 345.0}  # fmt: skip
    write_experiment_info(settings, DataSpec(tmp_path), None, plan)
    assert plan_lines(folder) == []  # nothing ran yet
    search = {"trials": 26, "epochs": 90, "seconds": 236.0, "compute_seconds": 400.0,
              "slot_seconds": 452.0, "idle_per_trial_s": 0.77, "slots": 2, "mean_running": 1.92,
              "max_running": 2, "setup_per_trial_s": 0.4, "report_per_epoch_s": 0.05}  # fmt: skip
    record_actual(folder, "search", search)
    record_actual(folder, "final_model", {"planned_epochs": 80, "epochs": 78,
                                          "planned_seconds": 345.0, "seconds": 340.2,
                                          "train_seconds": 330.0})  # fmt: skip
    info = json.loads((folder / EXPERIMENT_INFO).read_text())
    assert info["plan"] == plan and info["actual"]["search"] == search
    lines = "\n".join(plan_lines(folder))
    assert "search: 30 trials planned, 26 ran; ~97 epochs planned, 90 trained" in lines
    record_actual(folder, "search", {**search, "replanned": [[15.2, 10], [31.0, 24], [200.4, 26]]})
    assert (
        "search: 30 trials planned (re-planned from the trials' pace: 10 at 0:15, then 26 at "
        "3:20), 26 ran" in "\n".join(plan_lines(folder))
    )
    assert "4.0 min planned, 3.9 ran" in lines
    assert "1.9 of 2 slots busy on average: a slot stood idle 0.8 s per trial" in lines
    assert "0.4 s setting up and 0.05 s per epoch on its checkpoint" in lines
    assert "final model: 80 epochs planned, 78 trained; 5.8 min planned, 5.7 ran" in lines
