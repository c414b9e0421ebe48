"""Which search method for which budget? Search methods, one search space, an equal budget.

    .venv/bin/python hypertune.py compare --seeds 3 --budget 60 --data-dir ../shared/data/flowers

The budget is total training epochs (every epoch of every trial counts, early-stopped or
not), the cost that dominates on any hardware. Each method runs --seeds times; once its
trials have trained --budget epochs the run is stopped (trials in flight may finish the epoch
they are in; the curves are cut at the budget exactly). The result is an anytime curve per
method, best val_accuracy found so far against epochs spent (mean and min-max over seeds),
and a table of the final best and the budget needed to reach a target accuracy.

Methods are scheduler+searcher pairs of `search` (src/search.py says what each one is), a grid,
and the yardstick every method is measured against:
- start: no search; the starting configuration trained for the whole budget as one trial
  (its learning-rate schedule over all `budget` epochs)
- asha+hyperopt: what `hypertune.py search` does by default
- asha+random, asha+de: ASHA early stopping; random or differential-evolution proposals
- hyperband+bohb: BOHB (HyperBand brackets feeding a kernel-density model)
- pbt+random: population-based training from a random first population
- fifo+random: random configurations, every trial trained --max-epochs
- grid: COMPARE_GRID (lr x num_conv_layers, 3 x 3, the rest at DEFAULT_START), every trial trained
  --max-epochs, in grid order
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from loguru import logger
from ray import tune

from src.config import METRIC, Comparison, DataSpec, Grid, RunSettings, start_config
from src.errors import HypertuneError
from src.report import markdown_table
from src.results import (
    ExperimentFolder,
    trial_folders,
    trial_history,
    write_atomically,
    write_experiment_info,
)
from src.search import Plan, SearchError, build_tuner, cluster_resources, fit, search_plan

COMPARE_GRID: dict[str, list[Any]] = {
    "lr": [3e-4, 1e-3, 3e-3],
    "num_conv_layers": [2, 3, 4],
}  # 9 cells


class EpochBudget(tune.Stopper):
    """Stops the whole experiment once its trials have trained `budget` epochs in total."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.epochs: set[tuple[str, int]] = set()  # Tune may pass a result twice (final 'done')

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.epochs.add((trial_id, result["training_iteration"]))
        return False

    def stop_all(self) -> bool:
        return len(self.epochs) >= self.budget


def method_settings(method: str, settings: RunSettings, seed: int, budget: int) -> RunSettings:
    """One run's settings: its own folder <storage>/<name>/<method>-seed<k>/, its searcher and
    scheduler (the grid's trials run as FIFO), and more trials than the budget can pay for, so
    that the budget is what ends every method. `start` is one trial of `budget` epochs of
    the starting configuration (an empty space: every hyperparameter at DEFAULT_START)."""
    scheduler, searcher = method.split("+") if "+" in method else ("fifo", "random")
    run = replace(
        settings,
        name=f"{method}-seed{seed}",
        storage_path=ExperimentFolder.of(settings).path,
        seed=seed,
        scheduler=scheduler,
        searcher=searcher,
        num_samples=budget,
        time_budget=None,
    )
    if method == "start":
        return replace(run, num_samples=1, max_epochs=budget, space={})
    return run


def method_plan(method: str, run: RunSettings, concurrent: int) -> Plan:
    """The search space and Tune settings of one method."""
    if method == "grid":
        space = {**start_config(run), **{k: tune.grid_search(v) for k, v in COMPARE_GRID.items()}}
        return {**space, "seed": run.seed}, tune.TuneConfig(max_concurrent_trials=concurrent)
    return search_plan(run, concurrent)


def anytime(folder: Path, budget: int) -> np.ndarray:
    """Best METRIC found after each of the first `budget` epochs spent, in the order the
    trials reported them (empty where nothing was reported)."""
    reports = [h for h in map(trial_history, trial_folders(folder)) if len(h)]
    if not reports:
        return np.array([])
    epochs = pd.concat(reports).sort_values(["timestamp", "time_total_s"])
    return np.maximum.accumulate(epochs[METRIC].to_numpy()[:budget])


def adopt_older_name(folder: Path) -> None:
    """A comparison begun before the yardstick was named `start` (`baseline`) keeps its runs
    when resumed: baseline-seedK becomes start-seedK."""
    older = folder.with_name(folder.name.replace("start-", "baseline-", 1))
    if folder.name.startswith("start-") and older.is_dir() and not folder.exists():
        older.rename(folder)


def run_comparison(
    settings: RunSettings, data_spec: DataSpec, comparison: Comparison, resume: bool = False
) -> dict[str, list[np.ndarray]]:
    """Every method `seeds` times. With `resume`, a run that already spent its budget is kept;
    any other run folder is trained again from scratch."""
    budget = comparison.budget
    curves: dict[str, list[np.ndarray]] = {m: [] for m in comparison.methods}
    for seed in range(settings.seed, settings.seed + comparison.seeds):
        for method in comparison.methods:
            run = method_settings(method, settings, seed, budget)
            if problem := run.problems():
                raise HypertuneError(f"{method}: {problem}")
            folder = ExperimentFolder.of(run).path
            if resume:
                adopt_older_name(folder)
            curve = anytime(folder, budget)
            if not (resume and len(curve) == budget):
                shutil.rmtree(folder, ignore_errors=True)
                resources = cluster_resources(run)
                plan = method_plan(method, run, resources.concurrent)
                grid = Grid(dict(COMPARE_GRID)) if method == "grid" else None
                write_experiment_info(run, data_spec, grid)  # so that `analyze` reads the run
                stop = EpochBudget(budget)
                fit(build_tuner(run, data_spec, resources, plan, stop=stop, epoch_budget=budget))
                curve = anytime(folder, budget)
            if not len(curve):
                raise SearchError(
                    f"{method}, seed {seed}: no trial reported an epoch; each trial's error.txt "
                    f"under {folder} says why."
                )
            curves[method].append(curve)
            logger.info(f"{method}, seed {seed}: best {METRIC} {curve[-1]:.4f} ({folder})")
    return curves


def comparison_table(curves: dict[str, list[np.ndarray]], target: float) -> pd.DataFrame:
    rows = []
    for method, runs in curves.items():
        finals = np.array([run[-1] for run in runs])
        reached = [int(np.argmax(run >= target)) + 1 for run in runs if run[-1] >= target]
        rows.append(
            {
                "method": method,
                f"final best {METRIC} (mean)": finals.mean(),
                "sd": finals.std(ddof=1) if len(finals) > 1 else 0.0,
                "min": finals.min(),
                "max": finals.max(),
                f"epochs to reach {target:.3f} (median)": np.median(reached) if reached else None,
                "runs that reached it": f"{len(reached)}/{len(runs)}",
                # A grid can run out of cells before the budget runs out.
                "epochs used (min)": min(len(run) for run in runs),
            }
        )
    # Three seeds give no trustworthy p-value; a difference counts as beyond the seed-to-seed
    # noise only where the method's best seed stays below the leader's worst seed.
    leader = max(rows, key=lambda row: row[f"final best {METRIC} (mean)"])
    for row in rows:
        beyond = "yes" if row["max"] < leader["min"] else "no"
        row["below the leader beyond noise"] = "(leader)" if row is leader else beyond
    table = pd.DataFrame(rows)
    if "start" in curves:  # the yardstick: what searching added, in points
        mean = f"final best {METRIC} (mean)"
        start = table.loc[table["method"] == "start", mean].iloc[0]
        table["vs start (points)"] = 100 * (table[mean] - start)
    return table


def plot_anytime(curves: dict[str, list[np.ndarray]], budget: int) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 5))
    for method, runs in curves.items():
        length = min(len(run) for run in runs)
        stack = np.stack([run[:length] for run in runs])
        x = np.arange(1, length + 1)
        style: dict[str, Any] = {"color": "black", "ls": "--"} if method == "start" else {}
        ax.plot(x, stack.mean(0), label=f"{method} (n={len(runs)})", **style)
        ax.fill_between(x, stack.min(0), stack.max(0), alpha=0.2)
    ax.set_xlabel("training epochs spent (all trials)")
    ax.set_ylabel(f"best {METRIC} so far")
    ax.set_title(f"Search methods at an equal budget of {budget} epochs (mean, min-max over seeds)")
    ax.legend()
    return fig


def write_comparison(
    curves: dict[str, list[np.ndarray]], budget: int, folder: Path
) -> tuple[pd.DataFrame, list[Path]]:
    """The plot and the table; the target is 95% of the best value any run reached."""
    target = 0.95 * max(run[-1] for runs in curves.values() for run in runs)
    table = comparison_table(curves, target)
    out = ExperimentFolder(folder).comparison
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_anytime(curves, budget)
    paths = [out / "anytime.png", out / "comparison.csv", out / "comparison.md"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_atomically(paths[1], table.to_csv(index=False))
    write_atomically(paths[2], markdown_table(table) + "\n")
    return table, paths


def compare(
    settings: RunSettings, data_spec: DataSpec, comparison: Comparison, resume: bool = False
) -> pd.DataFrame:
    curves = run_comparison(settings, data_spec, comparison, resume)
    folder = ExperimentFolder.of(settings).path
    table, paths = write_comparison(curves, comparison.budget, folder)
    logger.info(f"\n{table.round(4).to_string(index=False)}\nwritten: {', '.join(map(str, paths))}")
    return table
