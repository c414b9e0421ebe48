"""experiment_summary.csv rows from Tune results, made up here (no Ray run)."""

from __future__ import annotations

import pandas as pd
from ray.tune import Result

from src.results import trial_row


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
