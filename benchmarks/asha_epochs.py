"""Epochs per trial the time plan expects under ASHA (src/budget.py expected_epochs), for the
runs of journal entries 17-18, beside what they trained: scores as random draws, and as a
searcher that learns proposes them; then the trials the plan counts for entry 18's hour at the
paces that run had. No training; prints in a second.

    .venv/bin/python benchmarks/asha_epochs.py
"""

from __future__ import annotations

import itertools
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.budget import expected_epochs, new_search_trials, search_forecast  # noqa: E402
from src.config import LONG_SPACE, PRESETS, RunSettings  # noqa: E402
from src.space import load_space  # noqa: E402

DEFAULT = RunSettings("plan", Path("/tmp"), None)
SLOTS = 2  # trials at once in every run below
LONG = replace(
    DEFAULT,
    max_epochs=20,
    grace_period=PRESETS["long"]["grace_period"],
    space=load_space(Path(LONG_SPACE)),
)
# (run, settings, trials including the start, epochs per trial after it as trained)
RUNS = [
    ("long, 30 min (entry 17)", LONG, 8, 11.6),
    ("long, 60 min (entry 18)", LONG, 9, 14.0),
    ("default, seed 0 (entry 17)", DEFAULT, 13, 4.75),
    ("default, seed 1 (entry 17)", DEFAULT, 16, 5.2),
]


def mean_epochs(settings: RunSettings, trials: int) -> float:
    return statistics.fmean(itertools.islice(expected_epochs(settings, SLOTS), trials - 1))


# Entry 18's hour (plan-long60-s0): 24 min x 2 slots; the start timed 11.36 s an epoch, an
# average trial priced 19.5 s and run at 22.85 s (hypertune.json, experiment_summary.csv).
HOUR_SEARCH_S, HOUR_START_S, HOUR_PACES_S = 24 * 60, 11.36, (19.5, 22.85)


def planned_trials(settings: RunSettings, pace: float) -> int:
    trials = new_search_trials(settings, HOUR_START_S, pace, SLOTS)
    return search_forecast(HOUR_SEARCH_S, [0.0] * SLOTS, trials)[0]


def main() -> None:
    print(f"{'run':28} {'trials':>6} {'random':>7} {'learns':>7} {'trained':>7}")
    for name, settings, trials, trained in RUNS:
        random_draws = mean_epochs(replace(settings, searcher="random"), trials)
        learning = mean_epochs(replace(settings, searcher="hyperopt"), trials)
        print(f"{name:28} {trials:6} {random_draws:7.2f} {learning:7.2f} {trained:7.2f}")
    print("\nentry 18's hour (9 trials ran): trials planned")
    for pace in HOUR_PACES_S:
        counts = [planned_trials(replace(LONG, searcher=s), pace) for s in ("random", "hyperopt")]
        print(f"  at {pace:5.2f} s an epoch: random scores {counts[0]}, learning {counts[1]}")


if __name__ == "__main__":
    main()
