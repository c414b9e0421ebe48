"""How far one search's trial count strays from its plan: a time-limited ASHA search played
out in simulated time, many times, against the forecast src/budget.py makes from the same
paces (issue 40). Each simulated search draws its trials from the space as the plan prices them
(src/budget.py drawn_configs and the start's measured pace, in proportion to the elements each
writes), gives each a score (the start above every trial, as in the space it was chosen in;
HyperOpt's learned trials the best of two draws), and lets Ray's ASHA rule judge each report
at a rung in the order the reports come: the trial that starts beside the start races it there
as it does in a real run. No training; prints in seconds.

    .venv/bin/python benchmarks/count_spread.py --start-pace 20 --seconds 220 --max-epochs 10 6
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.budget import (  # noqa: E402
    COST_SAMPLES,
    EPOCH_OVERHEAD_S,
    LEARNED_DRAWS,
    RANDOM_TRIALS,
    TRIAL_OVERHEAD_S,
    drawn_configs,
    elements_of,
    new_search_trials,
    search_forecast,
    stops_at_rung,
)
from src.config import RunSettings, start_config  # noqa: E402


def one_search(
    settings: RunSettings, paces: list[float], seconds: float, rng: random.Random
) -> int:
    """Trials started before `seconds` in one search of two slots: the start (paces[0]) first."""
    rungs, factor, slots = settings.rungs(), settings.reduction_factor, 2
    reached: dict[int, list[float]] = {rung: [] for rung in rungs}
    events: list[tuple[float, int, int]] = []  # (when, trial, epoch reported)
    scores: list[float] = []

    def begin(trial: int, now: float) -> None:
        draws = LEARNED_DRAWS if trial > RANDOM_TRIALS else 1
        scores.append(2.0 if trial == 0 else max(rng.random() for _ in range(draws)))
        heapq.heappush(events, (now + TRIAL_OVERHEAD_S + paces[trial] + EPOCH_OVERHEAD_S, trial, 1))

    for trial in range(slots):
        begin(trial, 0.0)
    while events:
        now, trial, epoch = heapq.heappop(events)
        if now >= seconds:
            break
        done = epoch == settings.max_epochs
        if epoch in reached:
            done |= stops_at_rung(scores[trial], reached[epoch], factor)
        if not done:
            heapq.heappush(events, (now + paces[trial] + EPOCH_OVERHEAD_S, trial, epoch + 1))
        elif len(scores) < len(paces):
            begin(len(scores), now)
    return len(scores)


def forecast(settings: RunSettings, start_pace: float, trial_pace: float, seconds: float) -> int:
    """The plan's count (src/budget.py plan_budget) from the same paces."""
    trials = new_search_trials(settings, start_pace, trial_pace, 2)
    return search_forecast(seconds, [0.0, 0.0], trials)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start-pace", type=float, default=20.0, help="the start's s per epoch")
    parser.add_argument("--seconds", type=float, default=220.0, help="the search's seconds")
    parser.add_argument("--max-epochs", type=int, nargs="+", default=[10, 6])
    parser.add_argument("--grace-period", type=int, default=2)
    parser.add_argument("--searches", type=int, default=2000)
    args = parser.parse_args()
    base = RunSettings("spread", ROOT, None, grace_period=args.grace_period)
    start = start_config(base)
    print(f"start {args.start_pace:g} s an epoch, search {args.seconds:g} s, 2 slots, "
          f"{args.searches} searches each")  # fmt: skip
    print(f"{'max epochs':>10} {'rungs':>8} {'planned':>8} {'ran: 10 % / median / 90 %':>26} "
          f"{'within 20 %':>11}")  # fmt: skip
    for max_epochs in args.max_epochs:
        settings = dataclasses.replace(base, max_epochs=max_epochs)
        drawn = drawn_configs(settings, start, COST_SAMPLES)
        ratio = [elements_of(c) / elements_of(start) for c in drawn]
        planned = forecast(settings, args.start_pace, args.start_pace * statistics.fmean(ratio),
                           args.seconds)  # fmt: skip
        rng = random.Random(0)
        counts = []
        for _ in range(args.searches):
            paces = [args.start_pace] + [args.start_pace * rng.choice(ratio) for _ in range(60)]
            counts.append(one_search(settings, paces, args.seconds, rng))
        deciles = statistics.quantiles(counts, n=10)
        within = sum(abs(n / planned - 1) <= 0.2 for n in counts) / len(counts)
        print(f"{max_epochs:>10} {settings.rungs()!s:>8} {planned:>8} "
              f"{deciles[0]:>10.0f} / {statistics.median(counts):>4.0f} / {deciles[-1]:>4.0f}"
              f"{within:>12.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
