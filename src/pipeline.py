"""A run's life, below the command line: a new experiment or a resumed one, its data prepared
once, the search or grid, the refit of the best configuration, the closing summary.

`hypertune.py` checks the flags and calls one of these; the tests call them directly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from loguru import logger

from src.commands import hypertune_command
from src.config import Comparison, DataSpec, Grid, RunSettings, inference_size, start_config
from src.console import summary_block
from src.data import split_problem
from src.images import DataError, image_folder, load_cache, prepare_cache
from src.results import (
    ExperimentFolder,
    claimed,
    plan_and_actual,
    read_experiment_info,
    read_summary,
    write_experiment_info,
    write_summary,
)

if TYPE_CHECKING:
    from src.refit import RefitPlan
    from src.results import Evaluation


@dataclass(frozen=True)
class Outcome:
    """What a finished run leaves: its folder, its summary, the final model's test accuracy."""

    folder: Path
    table: pd.DataFrame
    test_accuracy: float | None


def prepared_data(data_dir: Path | None, image_size: int, also: Sequence[int] = ()) -> DataSpec:
    """The images found (the layout said) and decoded into the cache once, before any trial
    starts: at `image_size` and at the `also` sizes (src.pipeline.cached_sizes)."""
    images = image_folder(data_dir)
    logger.info(f"Data: {images.describe()}")
    if problem := split_problem(load_cache(prepare_cache(images, image_size)), images.root):
        raise DataError(problem)
    for size in set(also) - {image_size}:
        prepare_cache(images, size)
    return DataSpec(images.root)


def cached_sizes(settings: RunSettings, grid: Grid | None) -> list[int]:
    """The image sizes decoded before the first trial: those trials train at and, after a
    search, those its final model may train and be scored at, so the budget's end holds no
    decoding."""
    sizes = settings.image_sizes(grid)
    if grid is None and settings.refit:
        final = [settings.refit_image_size] if settings.refit_image_size else sizes
        sizes = sorted({*sizes, *final, *(inference_size(size) for size in final)})
    return sizes


def run(settings: RunSettings, grid: Grid | None, command: str) -> Outcome:
    """A new search (grid None) or grid, in a folder of its own; after a search, the final
    model. `command` is the command line, recorded in the model file."""
    from src.search import run_experiment

    started = time.monotonic()  # a time budget counts from here
    folder = ExperimentFolder.of(settings).path
    with claimed(folder, new=True):
        sizes = cached_sizes(settings, grid)
        data_spec = prepared_data(settings.data_dir, settings.image_size, sizes)
        if grid is None and settings.time_budget:
            return run_within_budget(settings, data_spec, command, started)
        table = run_experiment(settings, data_spec, grid, command=command)
        return conclude(folder, settings, grid, table, command)


def run_within_budget(
    settings: RunSettings, data_spec: DataSpec, command: str, started: float
) -> Outcome:
    """A search that ends within settings.time_budget minutes, final model included: planned
    from the measured pace (src/budget.py), the search stopped at its share, the refit given
    what is left. --search-share 0: no search, the starting configuration trains throughout."""
    import torch

    from src.budget import EVALUATION_RESERVE_S, TRIALS_BEYOND_PLAN, plan_budget
    from src.device import forced_cpu
    from src.search import cluster_resources, run_experiment

    deadline = started + settings.budget_seconds - EVALUATION_RESERVE_S
    folder = ExperimentFolder.of(settings).path
    resources = cluster_resources(settings) if settings.search_share > 0 else None
    trials_on = None
    if resources is not None:
        on_gpu = resources.gpu > 0 and not forced_cpu()
        trials_on = (torch.device("cuda" if on_gpu else "cpu"), resources.concurrent)
    spent = time.monotonic() - started
    plan = plan_budget(settings, start_config(settings), data_spec, trials_on, spent)
    logger.info(plan.describe(settings))
    if resources is not None:
        # A typed --num-samples is the user's cap; the plan's count is only a forecast.
        ceiling = None if settings.num_samples else TRIALS_BEYOND_PLAN * plan.trials
        settings = replace(settings, num_samples=plan.trials)
        limit = started + plan.search_seconds - time.monotonic()
        table = run_experiment(
            settings, data_spec, resources=resources, time_limit=limit, budget=plan,
            command=command, trial_ceiling=ceiling,
        )  # fmt: skip
    else:
        write_experiment_info(settings, data_spec, None, plan.as_dict(), command)
        table = pd.DataFrame(columns=["trial_id", "best_val_accuracy"])
        write_summary(table, folder)
    return conclude(folder, settings, None, table, command, deadline - time.monotonic())


def resume(folder: Path, command: str) -> Outcome | None:
    """Continue an interrupted experiment where it stopped: its unfinished trials, then its
    refit. None (and a line saying so) where nothing was left to do."""
    with claimed(folder, new=False):
        return resume_claimed(folder, command)


def resume_claimed(folder: Path, command: str) -> Outcome | None:
    from src.search import resume_experiment

    settings, data_spec, grid = read_experiment_info(folder)
    files = ExperimentFolder(folder)
    if files.summary.is_file():
        table = read_summary(folder)
    else:
        sizes = cached_sizes(settings, grid)
        data_spec = prepared_data(data_spec.root, settings.image_size, sizes)
        table = resume_experiment(settings, data_spec, grid)
    if grid is None and settings.refit and not files.model.is_file():
        return conclude(folder, settings, grid, table, command)  # continues an interrupted refit
    print(f"Experiment {folder.name!r} is complete; its summary: {files.summary}")
    return None


def conclude(
    folder: Path,
    settings: RunSettings,
    grid: Grid | None,
    table: pd.DataFrame,
    command: str,
    refit_seconds: float | None = None,
) -> Outcome:
    """The refit (searches only, unless --no-refit; within `refit_seconds` under a time
    budget) and the closing summary."""
    test, chosen = None, ""
    if grid is None and settings.refit:
        test, plan = refit_best(folder, command, seconds=refit_seconds)
        chosen = plan.why
    if len(table):
        draw_figures(folder)
    track_outcome(folder, settings)
    print(summary_block(folder, table, test, chosen))
    return Outcome(folder, table, None if test is None else test.accuracy)


def track_outcome(folder: Path, settings: RunSettings) -> None:
    """The experiment's results, files and model logged to its MLflow run, where it has one."""
    if settings.mlflow is not None:
        from src.tracking import record_outcome

        record_outcome(folder, settings.mlflow)


def draw_figures(folder: Path) -> None:
    """The experiment's figures and report.html. A finished run's results matter more than its
    pictures: a failure here is a warning that says how to try again, never a lost run."""
    from src.analysis import analyze_folder, default_request

    try:
        analyze_folder(folder, default_request())
    except Exception as err:
        logger.warning(
            f"The figures of {folder.name} could not be drawn ({type(err).__name__}: {err}); "
            f"the results are complete. Try again with: {hypertune_command('analyze', folder)}"
        )


def refit_best(
    folder: Path,
    command: str,
    epochs: int | None = None,
    image_size: int | None = None,
    seed: int | None = None,
    seconds: float | None = None,
) -> tuple[Evaluation, RefitPlan]:
    """The final model of an experiment, its test evaluation and the plan it followed
    (src/refit.py: plan_refit says where unset values come from). Under a time budget, unless
    `epochs` is given, the refit ends within `seconds` (by default the budget's refit share)."""
    from src.refit import plan_refit, refit

    settings, _, _ = read_experiment_info(folder)
    if epochs is not None or settings.refit_epochs:  # counted, not timed
        seconds = None
    elif seconds is None:  # the refit's share of the budget; none planned: the default count
        seconds = plan_and_actual(folder)[0].get("refit_seconds") or None
    plan = plan_refit(folder, epochs, image_size, seed, seconds)
    return refit(plan, command, seconds), plan


def refit_experiment(
    folder: Path,
    command: str,
    epochs: int | None = None,
    image_size: int | None = None,
    seed: int | None = None,
) -> tuple[Evaluation, RefitPlan]:
    """`hypertune.py refit`: refit_best, while no other process runs the experiment."""
    with claimed(folder, new=False):
        if (model := ExperimentFolder(folder).model).is_file():
            logger.info(f"Replacing {model} once the new model is trained.")
        outcome = refit_best(folder, command, epochs, image_size, seed)
        track_outcome(folder, read_experiment_info(folder)[0])
        return outcome


def compare(settings: RunSettings, comparison: Comparison, resume: bool) -> pd.DataFrame:
    """Search methods side by side (src/compare.py) on the prepared data, in a folder of their
    own (the same one again with `resume`)."""
    from src.compare import compare as run_comparison

    folder = ExperimentFolder.of(settings).path
    with claimed(folder, new=not resume):
        data_spec = prepared_data(settings.data_dir, settings.image_size)
        table = run_comparison(settings, data_spec, comparison, resume)
        for run in sorted(folder.iterdir()):  # each method and seed: an experiment of its own
            if ExperimentFolder(run).info.is_file():
                track_outcome(run, settings)
        return table
