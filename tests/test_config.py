"""Settings check themselves, wherever they are made: the command line, compare, code."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from src.config import (
    DEFAULT_START,
    Comparison,
    Grid,
    RunSettings,
    current_config,
    inference_size,
    is_start_point,
    resolve_method,
    start_config,
    start_point,
)
from src.pipeline import cached_sizes

SETTINGS = RunSettings(name="exp", storage_path=Path("/tmp"), data_dir=None)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"grace_period": 5, "max_epochs": 3}, "--grace-period (5) cannot exceed --max-epochs (3)"),
        ({"num_samples": 0}, "--num-samples must be at least 1, got 0."),
        ({"num_samples": None}, "Without --time-budget, give --num-samples and --refit-epochs."),
        ({"time_budget": -1.0}, "--time-budget must be a positive number of minutes"),
        ({"time_budget": 5.0, "search_share": 1.5}, "--search-share must be at least 0 and below"),
        ({"time_budget": None, "search_share": 0.0}, "--search-share 0 (no search) needs a"),
        ({"image_size": 16}, "--image-size must be at least 32 px"),
        ({"name": "../up"}, "--name may hold letters"),
        ({"searcher": "bohb"}, "--searcher bohb needs hyperband as its partner"),
        ({"image_size": 32, "fixed": {"num_conv_layers": 6}}, "num_conv_layers=6 does not fit"),
        ({"fixed": {"crop_scale": 0.0}}, "crop_scale (a share of the image's area) must be in"),
        ({"space": {"cutout": ("uniform", (0.0, 1.0))}}, "cutout (a share of the image's side)"),
        ({"final_weights": "swa"}, "--final-weights must be one of raw, ema, got 'swa'."),
    ],
)
def test_settings_made_in_code_are_checked_like_flags(changes: dict, message: str) -> None:
    problem = replace(SETTINGS, **changes).problems()
    assert problem is not None and message in problem


def test_good_settings_have_no_problem_and_a_budget_needs_no_counts() -> None:
    assert SETTINGS.problems() is None
    planned = replace(SETTINGS, time_budget=10.0, num_samples=None, refit_epochs=None)
    assert planned.problems() is None


def test_a_grid_is_checked_cell_by_cell_and_not_for_the_grace_period() -> None:
    settings = replace(SETTINGS, image_size=32, max_epochs=1)  # grace 2 > 1: no matter, a grid
    assert settings.problems(Grid({"lr": [1e-3], "dropout": [0.1]})) is None
    deep = Grid({"num_conv_layers": [3, 6], "dropout": [0.1]})
    assert "num_conv_layers=6" in str(settings.problems(deep))
    assert "two different" in str(Grid({"lr": [1e-3]}).problems())


def test_a_comparison_checks_its_methods_and_budget() -> None:
    assert "Unknown method(s) bayes" in str(Comparison(("start", "bayes")).problems(10))
    assert "cannot pay for one full trial" in str(Comparison(budget=5).problems(10))
    assert Comparison().problems(10) is None


@pytest.mark.parametrize(
    "typed, expected",
    [
        ((None, None), ("hyperopt", "asha")),
        (("bohb", None), ("bohb", "hyperband")),
        ((None, "pbt"), ("random", "pbt")),
        (("random", None), ("random", "asha")),
        (("de", "fifo"), ("de", "fifo")),
    ],
)
def test_a_paired_method_brings_its_partner(typed: tuple, expected: tuple) -> None:
    assert resolve_method(*typed) == expected


def test_image_size_is_searched_from_a_list_and_every_size_is_cached_before_trials() -> None:
    searched = replace(SETTINGS, space={"image_size": ("choice", [96, 64])})
    assert searched.problems() is None and searched.image_sizes() == [64, 96]
    assert start_point(searched) == {"image_size": 64}  # the run's --image-size
    ranged = replace(SETTINGS, space={"image_size": ("int", [64, 96])})
    assert "a choice of whole pixel sizes only" in str(ranged.problems())
    tiny = replace(SETTINGS, space={"image_size": ("choice", [16, 64])})
    assert "image_size must be 32 to 512 px, got 16" in str(tiny.problems())
    flag = replace(SETTINGS, space={"image_size": ("choice", [True, 64])})  # a bool is no size
    assert "whole pixel sizes" in str(flag.problems())
    # Searched together, depth and size limit each other: 6 blocks need 64 px.
    both = {"image_size": ("choice", [32, 64]), "num_conv_layers": ("choice", [3, 6])}
    assert "num_conv_layers=6 does not fit 32 px" in str(replace(SETTINGS, space=both).problems())
    pinned = replace(SETTINGS, fixed={"image_size": 48})
    assert start_config(pinned)["image_size"] == 48 and pinned.image_sizes() == [48]
    grid = Grid({"image_size": [32, 48], "lr": [1e-3]})
    assert SETTINGS.image_sizes(grid) == [32, 48]
    assert [c["image_size"] for c in grid.configs(64)] == [32, 48]


def test_the_sizes_a_final_model_is_scored_at_are_cached_before_the_search() -> None:
    searched = replace(SETTINGS, image_size=64, space={"image_size": ("choice", [64, 96])})
    assert inference_size(64) == 80 and inference_size(512) == 512  # the cache's limit
    assert cached_sizes(searched, None) == [64, 80, 96, 120]
    bigger = replace(searched, refit_image_size=128)
    assert cached_sizes(bigger, None) == [64, 96, 128, 160]  # trains at 128, scored at 160
    assert cached_sizes(replace(searched, refit=False), None) == [64, 96]
    assert cached_sizes(SETTINGS, Grid({"image_size": [32, 48], "lr": [1e-3]})) == [32, 48]


def test_the_starting_point_is_found_among_a_searchers_number_types() -> None:
    space = {"lr": ("loguniform", [1e-4, 1e-2]), "batch_size": ("choice", [16, 32])}
    point = start_point(replace(SETTINGS, space=space))
    assert point == {"lr": DEFAULT_START["lr"], "batch_size": DEFAULT_START["batch_size"]}
    assert is_start_point({"lr": np.float64(0.003), "batch_size": np.int64(32)}, point)
    assert not is_start_point({"lr": 0.0031, "batch_size": 32}, point)
    assert not is_start_point({"lr": 0.003, "batch_size": 32}, None)


def test_a_config_saved_before_the_augmentation_was_searched_reads_as_it_trained() -> None:
    old = {k: v for k, v in DEFAULT_START.items() if k not in ("crop_scale", "cutout")}
    assert current_config(old) == {**old, "crop_scale": 0.35, "cutout": 0.0}
    assert current_config({**old, "cutout": 0.25})["cutout"] == 0.25  # what it says wins
