"""experiment_summary.csv rows from Tune results, made up here (no Ray run)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from ray.tune import Result

from src.config import DEFAULT_START, RunSettings
from src.console import describe_config
from src.results import binomial_sd, config_of, refit_choice, trial_row


def epoch(n: int) -> dict[str, float | int]:
    return {"epoch": n, "training_iteration": n, "val_accuracy": 0.5 + n / 10, "val_loss": 1.0}


def result(reported: int, in_file: int) -> Result:
    """A trial that reported `reported` epochs, of which its result.json holds `in_file`."""
    history = pd.DataFrame([epoch(n) for n in range(1, in_file + 1)])
    return Result(
        metrics=epoch(reported), checkpoint=None, error=None, path="/x/trial_a",
        metrics_dataframe=history,
    )  # fmt: skip


def test_a_trial_that_reported_every_epoch_is_completed() -> None:
    row = trial_row(result(reported=3, in_file=3), max_epochs=3)
    assert (row["status"], row["epochs"], row["best_epoch"]) == ("completed", 3, 3)


def test_a_result_file_a_line_short_of_the_experiment_state_is_filled_in() -> None:
    # What a kill -9 during Ray's copy of the trial's files to storage can leave behind: the
    # experiment state knows the trial reported epoch 3, its result.json stops at epoch 2.
    row = trial_row(result(reported=3, in_file=2), max_epochs=3)
    assert (row["status"], row["epochs"], row["best_epoch"]) == ("completed", 3, 3)
    assert row["best_val_accuracy"] == epoch(3)["val_accuracy"]


def test_a_trial_stopped_at_a_rung_stays_stopped_early() -> None:
    row = trial_row(result(reported=2, in_file=2), max_epochs=3)
    assert (row["status"], row["epochs"]) == ("stopped_early", 2)


def test_the_trial_id_is_the_trials_own_even_when_its_last_result_is_a_donors() -> None:
    # A PBT trial stopped right after cloning another holds the donor's last result.
    cloned = result(reported=2, in_file=2)
    assert cloned.metrics is not None
    cloned.metrics["trial_id"] = "donor"
    assert trial_row(cloned, max_epochs=3)["trial_id"] == "a"


def summary(best_gain: float) -> pd.DataFrame:
    """Two trials: the starting configuration (0.70 at epoch 10) and another whose best is
    `best_gain` above it at the same epoch; 500 validation images (1 sd: about 2 points)."""
    other = {**DEFAULT_START, "lr": 1e-3, "trial_id": "other", "is_start": False}
    start = {**DEFAULT_START, "trial_id": "start", "is_start": True}
    rows = [
        {**other, "best_val_accuracy": 0.70 + best_gain, "start_at_best_epoch": 0.70},
        {**start, "best_val_accuracy": 0.70, "start_at_best_epoch": 0.70},
    ]
    table = pd.DataFrame(rows).assign(best_epoch=10, val_images=500)
    table["val_accuracy_sd"] = [binomial_sd(p, 500) for p in table["best_val_accuracy"]]
    return table


SETTINGS = RunSettings(name="x", storage_path=Path("/tmp"), data_dir=None, seed=3)


def test_the_refit_takes_the_best_trial_only_where_it_beat_the_start_beyond_noise() -> None:
    config, why = refit_choice(summary(best_gain=0.05), SETTINGS)  # 5 points: beyond 2 sd
    assert config["lr"] == 1e-3 and config["seed"] == 3 and "beyond noise" in why
    config, why = refit_choice(summary(best_gain=0.02), SETTINGS)  # 2 points: within noise
    assert config["lr"] == DEFAULT_START["lr"] and "within noise" in why
    config, why = refit_choice(summary(best_gain=0.02).drop(columns="is_start"), SETTINGS)
    assert config["lr"] == 1e-3  # no yardstick (a grid): the best
    empty = pd.DataFrame(columns=["trial_id", "best_val_accuracy"])
    assert refit_choice(empty, SETTINGS) == ({**DEFAULT_START, "image_size": 64, "seed": 3},
                                             "the starting configuration (no search)")  # fmt: skip


def test_a_summary_from_before_image_size_was_searched_still_reads() -> None:
    old = pd.Series({**DEFAULT_START, "seed": 0})  # no image_size column: an older experiment
    assert config_of(old) == DEFAULT_START and "image_size" not in describe_config(old)
    new = pd.Series({**DEFAULT_START, "image_size": 96.0, "seed": 0})  # a CSV reads 96 as 96.0
    assert config_of(new)["image_size"] == 96 and "image_size=96" in describe_config(new)
