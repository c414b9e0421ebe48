"""The time plan of finished runs replayed with today's code (src/budget.py): for each experiment
folder under the given folders, the trials its plan recorded, the forecast from the same measured
paces and the seconds its search had (search_forecast), the re-plan from the trials' own reports
as the run would have made it a given number of seconds into the search (replanned_trials, from
each trial's result.json), and what ran (hypertune.json's plan and actual.search); then over all
runs, the counts' geometric mean against what ran and the runs within 20 %, and how many of
the other trials the starting configuration beat at the first rung (what START_DRAWS models;
`--start-draws` replays with another value). Each run's row ends with where its plan went
wrong, as ratios of planned to trained: the start's timed pace, the cost model's price of the
other trials' own configurations (geometric mean), and their epochs each. No training; prints
in a few seconds.

    .venv/bin/python benchmarks/plan_replay.py logs/ray_results/e20/equal_time-10min --at 30 60
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import src.budget  # noqa: E402
from src.budget import (  # noqa: E402
    COST_SAMPLES,
    CostModel,
    TrialSoFar,
    batches_per_epoch,
    drawn_configs,
    elements_of,
    new_search_trials,
    replanned_trials,
    search_forecast,
)
from src.config import RunSettings, start_config  # noqa: E402
from src.results import plan_and_actual, read_experiment_info, read_summary  # noqa: E402


def forecast(settings: RunSettings, plan: dict[str, Any], seconds: float) -> int:
    """Today's forecast from the paces the plan measured and priced."""
    slots = plan["concurrent"]
    trials = new_search_trials(settings, plan["epoch_seconds"], plan["trial_epoch_seconds"], slots)
    return search_forecast(seconds, [0.0] * slots, trials)[0]


def cost_model(settings: RunSettings, plan: dict[str, Any], val: int) -> CostModel:
    """The plan's cost model; for a plan from before it was recorded, the one through the two
    figures it did record (the start's pace, and the mean over the configurations drawn as
    src.budget.price_space draws them: two equations, two parts). Training images: the
    validation split's, at 70 / 15."""
    if plan.get("cost_model"):
        return CostModel(**plan["cost_model"])
    train = round(val * 70 / 15)
    start = {**start_config(settings), "seed": settings.seed}
    drawn = drawn_configs(settings, start, COST_SAMPLES)

    def parts(config: dict[str, Any]) -> tuple[float, float]:
        batches = batches_per_epoch(train, val, config["batch_size"])
        return batches, batches * config["batch_size"] * elements_of(config)

    (b0, w0), mean = parts(start), np.mean([parts(c) for c in drawn], axis=0)
    per_batch, per_element = np.linalg.solve(
        [[b0, w0], mean], [plan["epoch_seconds"], plan["trial_epoch_seconds"]]
    )
    return CostModel(float(per_batch), float(per_element), train, val)


def reports(folder: Path) -> list[tuple[float, dict[str, Any], list[tuple[float, float]]]]:
    """Each trial as (when it started, its configuration, its reports: when each came and the
    epoch's seconds), times in seconds since the search began; the starting configuration
    first, then in the order the trials started."""
    table = read_summary(folder)
    trials = [results_of(folder, str(row.trial_id)) for row in table.itertuples()]
    trials = [t for t in trials if t[2]]
    zero = min(began for began, _, _ in trials)
    starts = [not row.is_start for row in table.itertuples() if row.epochs]
    ordered = sorted(zip(starts, trials, strict=True), key=lambda t: (t[0], t[1][0]))
    return [(began - zero, config, [(w - zero, s) for w, s in rows])
            for _, (began, config, rows) in ordered]  # fmt: skip


def result_rows(folder: Path, trial_id: str) -> list[dict[str, Any]]:
    """A trial's reports, as its result.json holds them."""
    lines = (folder / f"trial_{trial_id}" / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def results_of(folder: Path, trial_id: str) -> tuple[float, dict[str, Any], list]:
    rows = result_rows(folder, trial_id)
    if not rows:
        return 0.0, {}, []
    first = rows[0]  # a trial began its first epoch's seconds and its set-up before it
    began = first["timestamp"] - first["time_this_iter_s"] - first.get("setup_seconds", 0)
    return began, first["config"], [(r["timestamp"], r["epoch_seconds"]) for r in rows]


def start_beats(folder: Path, settings: RunSettings) -> float:
    """The share of the other trials whose validation accuracy at the first rung the starting
    configuration beat (ties count half): how much better than a random draw the start is
    (src/budget.py START_DRAWS)."""
    rung = (settings.rungs() or (1,))[0]
    scores = {}
    for row in read_summary(folder).itertuples():
        rows = result_rows(folder, str(row.trial_id))
        at_rung = [r for r in rows if r["training_iteration"] == rung]
        if at_rung:
            scores[row.trial_id] = (at_rung[0]["val_accuracy"], bool(row.is_start))
    start = next(score for score, is_start in scores.values() if is_start)
    others = [score for score, is_start in scores.values() if not is_start]
    return sum((o < start) + 0.5 * (o == start) for o in others) / len(others)


def plan_errors(folder: Path, plan: dict[str, Any], model: CostModel) -> tuple[float, ...]:
    """Planned against trained: the start's seconds per epoch, the other trials' (each priced by
    the cost model; geometric mean) and their epochs each."""
    table = read_summary(folder)
    table = table[table["epochs"] > 0]
    start, others = table[table["is_start"]].iloc[0], table[~table["is_start"]]
    configs: list[dict[str, Any]] = others.to_dict("records")  # type: ignore[assignment]
    priced = [model.epoch_seconds(c) / c["seconds_per_epoch"] for c in configs]
    return (
        plan["epoch_seconds"] / start["seconds_per_epoch"],
        math.exp(float(np.mean(np.log(priced)))),
        plan["trial_epochs"] / others["epochs"].mean(),
    )


def replay_at(
    settings: RunSettings, plan: dict[str, Any], model: CostModel, trials: list, at: float,
    seconds: float,
) -> int | None:  # fmt: skip
    """The re-plan the run would have shown `at` seconds into its search."""
    so_far = []
    for began, config, rows in trials:
        if began > at:
            continue
        seen = [s for when, s in rows if when <= at]
        running = any(when > at for when, _ in rows)
        pace = sum(seen) / len(seen) if seen else None
        so_far.append(TrialSoFar(len(seen), pace, model.epoch_seconds(config), running))
    left = max(seconds - at, 0)
    return replanned_trials(settings, plan["trial_epoch_seconds"], so_far, plan["concurrent"], left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="experiments, or folders of them")
    parser.add_argument("--at", nargs="+", type=float, default=[30.0, 60.0],
                        help="seconds into the search to replay the re-plan at")  # fmt: skip
    parser.add_argument(
        "--start-draws",
        type=int,
        default=None,
        help="how strong the simulation takes the start to be, in any space (src/budget.py)",
    )
    args = parser.parse_args()
    if args.start_draws is not None:
        src.budget.START_DRAWS = args.start_draws
    src.budget.asha_epochs.cache_clear()
    found = [f.parent for root in args.folders for f in sorted(root.glob("**/hypertune.json"))]
    heads = " ".join(f"{f'at {a:g} s':>8}" for a in args.at)
    print(f"{'experiment':24} {'recorded':>8} {'forecast':>8} {heads} {'ran':>4}  start beats"
          f"  timed  priced  epochs")  # fmt: skip
    columns: list[list[tuple[int | None, int]]] = [[] for _ in range(2 + len(args.at))]
    beats: list[float] = []
    for folder in found:
        plan, actual = plan_and_actual(folder)
        if not plan or "search" not in actual or not plan.get("concurrent"):
            continue
        settings, _, _ = read_experiment_info(folder)
        seconds, ran = actual["search"]["seconds"], actual["search"]["trials"]
        trials = reports(folder)
        model = cost_model(settings, plan, int(read_summary(folder)["val_images"].max()))
        replans = [replay_at(settings, plan, model, trials, a, seconds) for a in args.at]
        counts = [plan["trials"], forecast(settings, plan, seconds), *replans]
        for column, count in zip(columns, counts, strict=True):
            column.append((count, ran))
        cells = " ".join(f"{'-' if n is None else n:>8}" for n in counts)
        beats.append(start_beats(folder, settings))
        errors = " ".join(f"{e:6.2f}x" for e in plan_errors(folder, plan, model))
        print(f"{folder.name:24} {cells} {ran:4d}  {beats[-1]:11.2f} {errors}")
    print(f"{'planned / ran, geo. mean':24} " + " ".join(f"{geo_mean(c):8.2f}" for c in columns))
    print(f"{'runs within 20 %':24} " + " ".join(f"{within(c):>8}" for c in columns))
    print(f"the start beat {sum(beats) / len(beats):.2f} of the other trials at the first rung")


def geo_mean(pairs: list[tuple[int | None, int]]) -> float:
    logs = [math.log(n / ran) for n, ran in pairs if n]
    return math.exp(sum(logs) / len(logs)) if logs else math.nan


def within(pairs: list[tuple[int | None, int]]) -> str:
    """Runs whose trials ran within 20 % of the count (as issue 40 reads it), of those with one."""
    counted = [(n, ran) for n, ran in pairs if n]
    return f"{sum(abs(ran / n - 1) <= 0.2 for n, ran in counted)}/{len(counted)}"


if __name__ == "__main__":
    main()
