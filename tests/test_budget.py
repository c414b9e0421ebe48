"""A time budget: minutes in, trials and epochs out; the run, end to end, within it."""

from __future__ import annotations

import itertools
import json
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pandas as pd
import pytest
import ray
import ray.tune.stopper.timeout
import torch
from conftest import FakeClock
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

import src.budget
import src.refit
import src.search
from src import pipeline
from src.budget import (
    EVALUATION_RESERVE_S,
    START_DRAWS,
    asha_epochs,
    asha_trial,
    epoch_seconds,
    expected_epochs,
)
from src.config import DEFAULT_START, DataSpec, RunSettings, asha_rungs
from src.device import Amp
from src.images import write_synthetic_images
from src.results import EXPERIMENT_INFO, MODEL_FILE, SUMMARY_FILE
from src.search import SearchTimeLimit

SETTINGS = RunSettings(name="exp", storage_path=Path("/tmp"), data_dir=None, max_epochs=10,
                       grace_period=2, reduction_factor=3)  # fmt: skip
OWN_SPACE = replace(SETTINGS, space={"lr": ("loguniform", (1e-4, 1e-2))})  # not SEARCH_SPACE


def test_asha_lets_early_trials_train_longer_than_its_shares_say() -> None:
    # Rungs at 2 and 6 of 10: in a long search every trial trains 2 epochs, a third of them 4
    # more, a ninth 4 more. The first trials meet few rivals at the rungs and train longer.
    shares = 2 + 4 / 3 + 4 / 9
    random_search = replace(OWN_SPACE, searcher="random")
    epochs = list(itertools.islice(expected_epochs(random_search), 1000))
    assert epochs[0] > statistics.fmean(epochs[:10]) > statistics.fmean(epochs[100:200]) > shares
    assert statistics.fmean(epochs[100:200]) == pytest.approx(shares, rel=0.05)
    assert epochs[999] == pytest.approx(statistics.fmean(epochs[100:200]))  # past the simulated
    assert epochs == list(itertools.islice(expected_epochs(random_search), 1000))  # no draw
    # A searcher that learns proposes better trials after its random start: more go on.
    learning = list(itertools.islice(expected_epochs(OWN_SPACE), 20))  # hyperopt
    assert learning[:3] == pytest.approx(epochs[:3], rel=0.1)  # its random start
    assert statistics.fmean(learning[3:20]) > statistics.fmean(epochs[3:20]) + 0.3
    assert next(expected_epochs(replace(SETTINGS, scheduler="fifo"))) == 10
    assert next(expected_epochs(replace(SETTINGS, scheduler="hyperband"))) == pytest.approx(
        1 + 2 / 3 + 6 / 9 + 1 / 27
    )  # rungs at 1, 3, 9


def test_a_start_better_than_a_random_draw_stops_trials_sooner() -> None:
    # The start reaches every rung first; the better it scores, the fewer trials go on past it.
    def early_epochs(start_draws: int) -> float:
        simulated = asha_epochs((2, 6), 10, 3, False, start_draws)
        return statistics.fmean(epochs for epochs, _ in simulated[:10])

    assert early_epochs(3) < early_epochs(2) < early_epochs(1)
    # Every space's start is the best of START_DRAWS, the default space's too: it beat every
    # trial at the first rung with seed 0 only (journal entry 33).
    assert START_DRAWS == 2
    assert next(expected_epochs(SETTINGS)) == next(expected_epochs(OWN_SPACE))


def test_a_trial_beside_the_start_may_reach_the_rungs_first_and_go_on() -> None:
    # With two slots the first trial after the start runs beside it; where it reports a rung
    # first (LEAD_CHANCE) nothing is there to beat, and it trains all 10 epochs; otherwise it
    # meets the start there, as it would on one slot.
    assert src.budget.LEAD_CHANCE == 0.5
    alone, beside = (list(itertools.islice(expected_epochs(SETTINGS, s), 3)) for s in (1, 2))
    assert alone[0] < 6  # the start (the best of two draws) stops it at epoch 2 more often
    assert beside[0] == pytest.approx(0.5 * 10 + 0.5 * alone[0], abs=0.3)
    three = list(itertools.islice(expected_epochs(SETTINGS, 3), 2))
    assert three[1] > beside[1] + 0.5  # on three slots the second trial races it too


def test_the_simulated_rule_is_rays_asha_rule() -> None:
    """The same random scores through Ray's own ASHA bracket and through the simulation stop
    the same trials at the same epochs."""
    rungs, rng = asha_rungs(20, 1, 3), random.Random(1)
    bracket = _Bracket(min_t=1, max_t=20, reduction_factor=3, s=0)
    reached: list[list[float]] = [[] for _ in rungs]
    for trial_id in range(60):
        score, trial = rng.random(), cast(Trial, SimpleNamespace(trial_id=trial_id))
        rays = next(
            (epoch for epoch in range(1, 20)
             if bracket.on_result(trial, epoch, score) == TrialScheduler.STOP),
            None,
        )  # fmt: skip
        assert asha_trial(score, rungs, reached, factor=3) == rays


def test_an_epoch_is_timed_from_a_few_batches(tmp_path: Path) -> None:
    images = write_synthetic_images(tmp_path / "images", 3, 30, 32)
    config = {**DEFAULT_START, "image_size": 32, "seed": 0, "num_conv_layers": 2}
    seconds = epoch_seconds(config, DataSpec(images), threads=1)
    assert 0 < seconds < 60  # (a few batches' time, on any machine)
    assert torch.get_num_threads() >= 1  # restored


class Batches(list):
    """A stream of batches, as src.data's are, on the CPU."""

    images = torch.zeros(1)


def test_a_round_slowed_by_something_else_does_not_set_the_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Something else busy on the cores during the first timed round (Ray's processes starting,
    # journal entry 33) slows only that round: the fastest round counts.
    calls = itertools.count()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if next(calls) <= src.budget.TIMED_BATCHES:  # the warm-up batch and the first round
            time.sleep(0.05)

    monkeypatch.setattr(src.budget, "make_step", lambda *args: step)
    stream = Batches([(torch.zeros(1), torch.zeros(1))] * 40)
    amp = Amp.for_device(torch.device("cpu"))
    seconds = src.budget.time_batches(torch.nn.Linear(1, 1), stream, None, amp)
    assert next(calls) == 1 + src.budget.TIMING_ROUNDS * src.budget.TIMED_BATCHES  # all timed
    assert seconds < 0.05 / 2  # not the slowed round's 0.05 s a batch


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_synthetic_images(tmp_path / "images", 3, 24, 32)


@pytest.fixture
def no_ray_left() -> Iterator[None]:
    yield
    ray.shutdown()


def budgeted(tmp_path: Path, images: Path, **changes: Any) -> RunSettings:
    settings = RunSettings(name="exp", storage_path=tmp_path, data_dir=images, image_size=32,
                           max_epochs=3, grace_period=1, num_samples=None, refit_epochs=None,
                           time_budget=0.5)  # fmt: skip
    return replace(settings, **changes)


BATCH_S = 0.75  # what timing a batch "measures" (the plan's pace)
REFIT_EPOCH_S = 0.5  # what an epoch of the final model takes on the run's clock


def test_a_time_budgeted_run_ends_within_its_budget(
    tmp_path: Path,
    images: Path,
    no_ray_left: None,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The run's clock moves only as the test says: the search takes its share, each epoch of
    # the final model REFIT_EPOCH_S, so the plan, the search's limit and the final model's
    # epochs are exact, however fast this machine is and however long Ray takes to start.
    clock = FakeClock()
    for module in (pipeline, src.search, src.refit, ray.tune.stopper.timeout):
        if hasattr(module, "time"):
            monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(src.budget, "time_batches", lambda *args, **kwargs: BATCH_S)
    monkeypatch.setattr(
        src.refit, "train_epoch", clock.taking(REFIT_EPOCH_S, src.refit.train_epoch)
    )
    limits = []
    search = src.search.run_experiment

    def search_taking_its_share(*args: Any, **kwargs: Any) -> pd.DataFrame:
        limits.append(kwargs["time_limit"])
        table = search(*args, **kwargs)
        clock.advance(kwargs["time_limit"])
        return table

    monkeypatch.setattr(src.search, "run_experiment", search_taking_its_share)
    ray.init(num_cpus=2, include_dashboard=False)  # two trials at once, on any machine
    start = clock.monotonic()
    outcome = pipeline.run(budgeted(tmp_path, images), None, "cmd")  # half a minute
    # Within the half minute, the evaluation's reserve after it included.
    assert clock.monotonic() - start <= 0.5 * 60 - EVALUATION_RESERVE_S
    plan = json.loads((tmp_path / "exp" / EXPERIMENT_INFO).read_text())["plan"]
    assert plan["search_seconds"] == pytest.approx(0.4 * 30) and plan["trials"] >= 2
    assert limits == [plan["search_seconds"]]  # the search was stopped at its share
    table = pd.read_csv(tmp_path / "exp" / SUMMARY_FILE)
    # The limit, not the plan's count, ends a search; on this clock it never came, so every
    # trial the ceiling allows ran.
    assert len(table) == src.budget.TRIALS_BEYOND_PLAN * plan["trials"]
    assert table["is_start"].sum() == 1  # the yardstick, among the trials
    # The plan followed the run: re-planned from the trials' reports, each count with its second.
    replanned = json.loads((tmp_path / "exp" / EXPERIMENT_INFO).read_text())["actual"]["search"][
        "replanned"
    ]
    assert replanned and all(seconds >= 0 and trials >= 1 for seconds, trials in replanned)
    assert outcome.test_accuracy is not None and (tmp_path / "exp" / MODEL_FILE).is_file()
    epochs = torch.load(tmp_path / "exp" / MODEL_FILE, weights_only=True)["trained_on"]["epochs"]
    # The time left, not a fixed count (the pace timed before training allows 1 epoch).
    assert epochs == plan["refit_seconds"] // REFIT_EPOCH_S > 1
    assert "vs the start" in capsys.readouterr().out
    assert pipeline.resume(tmp_path / "exp", "cmd") is None  # nothing left to do


def test_the_search_ends_at_its_time_limit_once_a_trial_has_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(ray.tune.stopper.timeout, "time", clock)
    limit, unreported = SearchTimeLimit(12.0), SearchTimeLimit(12.0)
    assert not limit.stop_all() and not unreported.stop_all()  # Tune's first look starts them
    clock.advance(11.0)
    assert limit("trial", {"epoch": 1}) is False  # a result: never a reason to stop its trial
    assert not limit.stop_all()
    clock.advance(2.0)
    assert limit.stop_all()
    clock.advance(60.0)
    assert not unreported.stop_all()  # no trial has reported yet: nothing to refit


def test_no_search_trains_the_starting_configuration_without_ray(
    tmp_path: Path, images: Path
) -> None:
    outcome = pipeline.run(budgeted(tmp_path, images, search_share=0.0, time_budget=0.2), None, "")
    assert not ray.is_initialized()
    assert outcome.table.empty and not list((tmp_path / "exp").glob("trial_*"))
    model = torch.load(tmp_path / "exp" / MODEL_FILE, weights_only=True)
    assert model["config"] == {**DEFAULT_START, "image_size": 32, "seed": 0}
