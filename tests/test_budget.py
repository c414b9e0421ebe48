"""A time budget: minutes in, trials and epochs out; the run, end to end, within it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray
import torch

from src import pipeline
from src.budget import epoch_seconds, expected_trial_epochs, size_factor, trials_that_fit
from src.config import BASELINE, EXPERIMENT_INFO, MODEL_FILE, SUMMARY_FILE, DataSpec, RunSettings
from src.images import write_synthetic_images

SETTINGS = RunSettings(name="exp", storage_path=Path("/tmp"), data_dir=None, max_epochs=10,
                       grace_period=2, reduction_factor=3)  # fmt: skip


def test_an_asha_trial_trains_its_share_of_each_rung() -> None:
    # Rungs at 2 and 6 of 10: every trial trains 2 epochs, a third 4 more, a ninth 4 more.
    assert expected_trial_epochs(SETTINGS) == pytest.approx(2 + 4 / 3 + 4 / 9)
    assert expected_trial_epochs(replace(SETTINGS, scheduler="fifo")) == 10


def test_trials_fit_the_epochs_after_the_starting_configuration_trained_all_of_its() -> None:
    per_trial = expected_trial_epochs(SETTINGS)
    assert trials_that_fit(SETTINGS, 10 + 5 * per_trial) == 6  # the start, then 5 more
    assert trials_that_fit(SETTINGS, 3) == 1  # the start alone, cut by the time limit


def test_a_searched_image_size_costs_its_pixels_on_average() -> None:
    assert size_factor(SETTINGS, 64) == 1  # the default space keeps the start's size
    searched = replace(SETTINGS, space={"image_size": ("choice", [64, 96])})
    assert size_factor(searched, 64) == pytest.approx((1 + 1.5**2) / 2)


def test_an_epoch_is_timed_from_a_few_batches(tmp_path: Path) -> None:
    images = write_synthetic_images(tmp_path / "images", 3, 30, 32)
    config = {**BASELINE, "seed": 0, "num_conv_layers": 2}
    seconds = epoch_seconds(config, DataSpec(images, 32), threads=1)
    assert 0 < seconds < 5
    assert torch.get_num_threads() >= 1  # restored


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


def test_a_time_budgeted_run_ends_within_its_budget(
    tmp_path: Path, images: Path, no_ray_left: None, capsys: pytest.CaptureFixture
) -> None:
    start = time.monotonic()
    outcome = pipeline.run(budgeted(tmp_path, images), None, "cmd")
    seconds = time.monotonic() - start
    # The half minute it was given, give or take the minute the issue allows (a test cannot
    # time a shared machine more closely).
    assert 15 < seconds < 30 + 60, seconds
    info = json.loads((tmp_path / "exp" / EXPERIMENT_INFO).read_text())
    plan = info["plan"]
    assert plan["search_seconds"] == pytest.approx(0.4 * 30) and plan["trials"] >= 2
    table = pd.read_csv(tmp_path / "exp" / SUMMARY_FILE)
    assert 2 <= len(table) <= plan["trials"]
    assert table["is_start"].sum() == 1  # the yardstick, among the trials
    assert outcome.test_accuracy is not None and (tmp_path / "exp" / MODEL_FILE).is_file()
    epochs = torch.load(tmp_path / "exp" / MODEL_FILE, weights_only=True)["trained_on"]["epochs"]
    assert epochs > 1  # the time left, not a fixed count
    assert "vs the start" in capsys.readouterr().out
    assert pipeline.resume(tmp_path / "exp", "cmd") is None  # nothing left to do


def test_no_search_trains_the_starting_configuration_without_ray(
    tmp_path: Path, images: Path
) -> None:
    outcome = pipeline.run(budgeted(tmp_path, images, search_share=0.0, time_budget=0.2), None, "")
    assert not ray.is_initialized()
    assert outcome.table.empty and not list((tmp_path / "exp").glob("trial_*"))
    model = torch.load(tmp_path / "exp" / MODEL_FILE, weights_only=True)
    assert model["config"] == {**BASELINE, "image_size": 32, "seed": 0}
