"""The progress line's estimate of the time left, on trials made up for it (no Ray run)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from src.config import RunSettings, asha_rungs
from src.progress import ProgressLine
from src.search import asha


def trial(status: str, epochs: int) -> Any:
    return SimpleNamespace(status=status, last_result={"training_iteration": epochs})


@pytest.mark.parametrize("max_epochs,grace,factor", [(10, 2, 3), (20, 4, 3), (12, 4, 3), (9, 1, 2)])
def test_asha_rungs_are_the_milestones_ray_uses(max_epochs: int, grace: int, factor: int) -> None:
    settings = RunSettings(
        "x", Path("/tmp"), None, max_epochs=max_epochs, grace_period=grace, reduction_factor=factor
    )
    milestones = [rung for rung, _ in asha(settings)._brackets[0]._rungs]  # Ray's own, private
    assert asha_rungs(max_epochs, grace, factor) == tuple(
        sorted(m for m in milestones if m < max_epochs)
    )


def test_a_running_trial_is_counted_to_its_next_rung() -> None:
    # Late in a search: 2 trials stopped at the first rung (4 epochs each on average), two
    # survivors still running, past that average. They will train at least to the next rung
    # (12) or to the end (20), not stop now.
    trials = [trial("TERMINATED", 4), trial("TERMINATED", 4), trial("RUNNING", 13)]
    trials.append(trial("RUNNING", 5))
    line = ProgressLine("search", trials=4, max_epochs=20, rungs=(4, 12))
    line.epochs_at_start = 0
    # 26 epochs in 260 s: 10 s an epoch; to come: 7 (13 -> 20) + 7 (5 -> 12) epochs.
    assert line.time_left(trials, epochs=26, elapsed=260.0) == ", ~2:20 left"


def test_trials_not_started_cost_what_the_ended_ones_cost_on_average() -> None:
    trials = [trial("TERMINATED", 2), trial("TERMINATED", 10), trial("RUNNING", 1)]
    line = ProgressLine("search", trials=5, max_epochs=10, rungs=(2, 6))
    line.epochs_at_start = 0
    # 13 epochs in 130 s; to come: 2 not started, 6 epochs each, and the running one 1 -> 6.
    assert line.time_left(trials, epochs=13, elapsed=130.0) == ", ~2:50 left"
