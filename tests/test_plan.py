"""The time plan's arithmetic, given paces (never this machine's): the space priced by the cost
model, the trials that fit, the re-plan as trials end, and the plan set beside what ran."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import src.budget
from src.budget import (
    CostModel,
    batch_seconds,
    costliest,
    drawn_configs,
    expected_epochs,
    plan_budget,
    search_forecast,
    trial_seconds,
    trials_in_reach,
)
from src.config import DEFAULT_START, DataSpec, RunSettings
from src.console import plan_lines
from src.model import forward_elements
from src.progress import ProgressLine
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
    epochs = list(itertools.islice(expected_epochs(SETTINGS), 100))
    others = [(e, trial_seconds(e, plan.trial_epoch_seconds)) for e in epochs]
    start = (20, trial_seconds(20, plan.epoch_seconds))
    assert (plan.trials, plan.epochs) == search_forecast(24 * 60, 2, start, others)
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
    assert search_forecast(250.0, 1, (10, 100.0), others) == (6, 25.0)
    # Two slots, 100 s: the start holds one throughout; trials of 4 epochs, 42 s each, begin at
    # 0, 42 and 84 s on the other. The last is cut by the end: 14 of its 40 s of epochs (2 s
    # setting up), 1.4 epochs. 4 trials, 10 + 4 + 4 + 1.4 epochs.
    trials, epochs = search_forecast(100.0, 2, (10, 100.0), itertools.repeat((4, 42.0)))
    assert trials == 4 and epochs == pytest.approx(19.4)
    # Early trials cost more (ASHA lets more of them on): on one slot of 160 s after a 100 s
    # start, 10 + 20 s trials end by 130 s and the 30 s one that begins then ends at 160 s.
    early = [(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    assert search_forecast(160.0, 1, (10, 100.0), early) == (4, 16.0)
    assert search_forecast(50.0, 1, (10, 100.0), early)[0] == 1  # the start alone, cut short


def test_slow_first_trials_lower_the_trial_count() -> None:
    assert trials_in_reach([10.0], [], slots=2, seconds_left=100) is None  # too little to go on
    # Two trials held their slots 40 s each; one runs for 10 s so far; 55 s left on 2 slots:
    # it holds its slot 30 s more, which leaves 80 s: 2 more trials.
    assert trials_in_reach([40.0, 40.0], [10.0], slots=2, seconds_left=55) == 2
    assert trials_in_reach([4.0, 4.0], [], slots=2, seconds_left=55) == 27  # fast: more
    assert trials_in_reach([40.0, 40.0], [10.0], slots=2, seconds_left=0) == 0  # at the end


def test_the_progress_line_shows_the_re_planned_count() -> None:
    line = ProgressLine("search", trials=20, max_epochs=10, time_limit=100.0, slots=2)
    line.epochs_at_start = 0
    now = time.monotonic()
    ended: list[Any] = [
        SimpleNamespace(trial_id=i, status="TERMINATED", last_result={"training_iteration": 4})
        for i in "ab"
    ]
    for t in ended:
        line.started[t.trial_id] = now - 40
        line.ended(t)
    assert line.describe(ended, elapsed=45.0).startswith("search 2/4 (re-planned) trials done")
    stopped_by_the_limit: list[Any] = [  # ended without Tune's "complete" callback
        SimpleNamespace(trial_id="c", status="TERMINATED", last_result={"training_iteration": 1})
    ]
    assert line.describe(ended + stopped_by_the_limit, elapsed=100.0).startswith(
        "search 3/3 (re-planned) trials done"
    )  # never fewer planned than started
    fresh = ProgressLine("search", trials=20, max_epochs=10, time_limit=100.0, slots=2)
    assert fresh.describe([], elapsed=1.0).startswith("search 0/20 trials done")


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
    assert "4.0 min planned, 3.9 ran" in lines
    assert "1.9 of 2 slots busy on average: a slot stood idle 0.8 s per trial" in lines
    assert "0.4 s setting up and 0.05 s per epoch on its checkpoint" in lines
    assert "final model: 80 epochs planned, 78 trained; 5.8 min planned, 5.7 ran" in lines
