"""A run's life, below the command line: a new experiment or a resumed one, its data prepared
once, the search or grid, the refit of the best configuration, the closing summary.

`hypertune.py` checks the flags and calls one of these; the tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from src.config import MODEL_FILE, SUMMARY_FILE, Grid, RunSettings
from src.console import summary_block
from src.data import DataSpec, image_folder, prepare_cache
from src.evaluate import Evaluation
from src.results import read_experiment_info


@dataclass(frozen=True)
class Outcome:
    """What a finished run leaves: its folder, its summary, the final model's test accuracy."""

    folder: Path
    table: pd.DataFrame
    test_accuracy: float | None


def prepared_data(data_dir: Path | None, image_size: int) -> DataSpec:
    """The images found and decoded into the cache once, before any trial starts."""
    images = image_folder(data_dir)
    prepare_cache(images, image_size)
    return DataSpec(images.root, image_size)


def run(settings: RunSettings, grid: Grid | None, command: str) -> Outcome:
    """A new search (grid None) or grid; after a search, the final model. `command` is the
    command line, recorded in the model file."""
    from src.search import run_experiment

    data_spec = prepared_data(settings.data_dir, settings.image_size)
    table = run_experiment(settings, data_spec, grid)
    return conclude(settings.storage_path / settings.name, settings, grid, table, command)


def resume(folder: Path, command: str) -> Outcome | None:
    """Continue an interrupted experiment where it stopped: its unfinished trials, then its
    refit. None (and a line saying so) where nothing was left to do."""
    from src.search import resume_experiment

    settings, data_spec, grid = read_experiment_info(folder)
    if (folder / SUMMARY_FILE).is_file():
        table = pd.read_csv(folder / SUMMARY_FILE)
    else:
        table = resume_experiment(
            settings, prepared_data(data_spec.root, data_spec.image_size), grid
        )
    if grid is None and settings.refit and not (folder / MODEL_FILE).is_file():
        return conclude(folder, settings, grid, table, command)  # continues an interrupted refit
    print(f"Experiment {folder.name!r} is complete; its summary: {folder / SUMMARY_FILE}")
    return None


def conclude(
    folder: Path, settings: RunSettings, grid: Grid | None, table: pd.DataFrame, command: str
) -> Outcome:
    """The refit (searches only, unless --no-refit) and the closing summary."""
    test = None
    if grid is None and settings.refit:
        test = refit_best(folder, command).accuracy
    print(summary_block(folder, table, test))
    return Outcome(folder, table, test)


def refit_best(
    folder: Path,
    command: str,
    epochs: int | None = None,
    image_size: int | None = None,
    seed: int | None = None,
) -> Evaluation:
    """The final model of an experiment and its test evaluation; unset values come from the
    experiment's settings."""
    from src.refit import plan_refit, refit

    settings, _, _ = read_experiment_info(folder)
    plan = plan_refit(
        folder,
        epochs or settings.refit_epochs,
        image_size or settings.refit_image_size,
        settings.seed if seed is None else seed,
    )
    return refit(plan, command)


def compare(
    settings: RunSettings, methods: list[str], seeds: int, budget: int, resume: bool
) -> pd.DataFrame:
    """Search methods side by side (src/compare.py) on the prepared data."""
    from src.compare import compare as run_comparison

    data_spec = prepared_data(settings.data_dir, settings.image_size)
    return run_comparison(settings, data_spec, methods, seeds, budget, resume)
