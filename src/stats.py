"""What an experiment learned, as numbers: the statistics behind every figure and the report
page, computed from the trials' tables (src.analysis loads them, draws both kinds of figure
from these same tables, and writes them). No plotting, no file reading here.

Heatmaps only ever hold trials trained for the same number of epochs (`heatmap_cells`); every
other comparison is made at the epoch every trial reached (`common_epoch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.commands import hypertune_command
from src.config import (
    DEFAULT_START,
    HYPERPARAMETERS,
    METRIC,
    METRICS,
    SCHEDULER_TRAITS,
    SEARCH_SPACE,
    SEARCHABLE,
    scheduler_rungs,
)
from src.errors import AnalysisError
from src.results import best_versus_start

MIN_TRIALS_TO_RANK = 6  # fewer, and importance ranks noise (its chance share is over 1/5)
MAX_BINS = 4  # a continuous hyperparameter is cut into at most this many quantile bins
TOP_TRIALS = 10


@dataclass(frozen=True)
class Experiment:
    folder: Path
    info: dict[str, Any]  # hypertune.json: kind ("search" | "grid"), settings, grid
    trials: pd.DataFrame  # one row per trial: trial_id, hyperparameters, epochs, status
    history: pd.DataFrame  # one row per trial and epoch: trial_id, epoch, metrics, timestamp

    @property
    def max_epochs(self) -> int:
        return int(self.info["settings"]["max_epochs"])

    @property
    def log_scale(self) -> set[str]:
        """Hyperparameters the experiment's space sampled log-uniformly (the space recorded in
        hypertune.json, a --space file's included): plotted and binned on a log axis."""
        space = self.info["settings"].get("space", SEARCH_SPACE)
        return {name for name, (kind, _) in space.items() if kind == "loguniform"}

    def varied(self) -> list[str]:
        """Hyperparameters (seed excluded) that take more than one value."""
        names = [h for h in SEARCHABLE if h in self.trials]
        return [h for h in names if self.trials[h].nunique() > 1]


def metric_at(exp: Experiment, metric: str, epoch: int | None) -> pd.DataFrame:
    """One row per trial with `metric` at `epoch` (its last epoch when None); trials that did
    not reach `epoch` are left out."""
    h = exp.history
    rows = h[h["epoch"] == epoch] if epoch else h.loc[h.groupby("trial_id")["epoch"].idxmax()]
    values = rows[["trial_id", metric]]
    return exp.trials.merge(values, on="trial_id")


def bins(values: pd.Series, log: bool) -> pd.Series:
    """Categories for a heatmap axis or an importance group: the values themselves when there
    are few, else quantile bins labelled by their range."""
    if values.nunique() <= 2 * MAX_BINS:
        return values
    cut = np.log10(values) if log else values
    codes = pd.qcut(cut, MAX_BINS, duplicates="drop")
    return codes.map(lambda iv: f"{_fmt(iv.left, log)}–{_fmt(iv.right, log)}")


def _fmt(edge: float, log: bool) -> str:
    return f"{10**edge:.1e}" if log else f"{edge:.2f}"


def check_axis(exp: Experiment, name: str) -> None:
    if name not in SEARCHABLE:
        raise AnalysisError(
            f"{name!r} is not a hyperparameter; choose from {', '.join(SEARCHABLE)}."
        )
    if name not in exp.varied():
        if name in exp.trials:
            value = exp.trials[name].iloc[0]
        else:  # image_size in an experiment from before it was a hyperparameter: the run's
            value = (
                DEFAULT_START[name] if name in DEFAULT_START else exp.info["settings"]["image_size"]
            )
        raise AnalysisError(
            f"{name} was not varied in {exp.folder.name} (every trial has {name}={value}), so a "
            f"heatmap over it shows nothing. Varied: {', '.join(exp.varied()) or 'none'}."
        )


def heatmap_cells(
    exp: Experiment, x: str, y: str, metric: str, at_epoch: int | None
) -> tuple[pd.DataFrame, str]:
    """Mean, sd and n of `metric` per (x, y) cell, over trials with equal epochs, and a note
    for the title that says which epoch the cells compare."""
    check_axis(exp, x)
    check_axis(exp, y)
    if at_epoch is None:
        short = exp.trials[exp.trials["epochs"] < exp.max_epochs]
        if len(short):
            stopped = int((short["status"] == "stopped_early").sum())
            raise AnalysisError(
                f"{len(short)} of {len(exp.trials)} trials of {exp.folder.name} did not train "
                f"all {exp.max_epochs} epochs ({stopped} stopped early, "
                f"{len(short) - stopped} errored). A heatmap of their final values would mix "
                f"runs of different lengths. Run a fixed-epoch grid instead, e.g. `"
                f"{hypertune_command('grid', '--x', f'{x}=A,B,C', '--y', f'{y}=D,E,F')} "
                f"--max-epochs {exp.max_epochs}`, or pass --at-epoch K to compare every trial "
                f"that reached epoch K at that epoch (all reached epoch "
                f"{int(exp.trials['epochs'].min())})."
            )
        epoch, note = (
            exp.max_epochs,
            f"all {len(exp.trials)} trials trained {exp.max_epochs} epochs",
        )
    else:
        if at_epoch < 1 or at_epoch > exp.trials["epochs"].max():
            raise AnalysisError(
                f"--at-epoch {at_epoch} is outside 1..{exp.trials['epochs'].max()}, the epochs "
                f"trials of {exp.folder.name} reached."
            )
        epoch = at_epoch
        reached = int((exp.trials["epochs"] >= epoch).sum())
        note = f"{reached} of {len(exp.trials)} trials compared at epoch {epoch}"
    table = metric_at(exp, metric, epoch)
    log = exp.log_scale
    table = table.assign(**{x: bins(table[x], x in log), y: bins(table[y], y in log)})
    cells = table.groupby([y, x], observed=True)[metric].agg(["mean", "std", "count"])
    cells["label"] = [  # what a cell shows, in every figure of it
        f"{m:.3f} ± {0 if np.isnan(s) else s:.3f}\nn={n}"
        for m, s, n in zip(cells["mean"], cells["std"], cells["count"], strict=True)
    ]
    return cells.reset_index(), note


def rung_epochs(exp: Experiment) -> tuple[int, ...]:
    """Epochs at which every trial was judged (ASHA's rungs; none for a grid, or a scheduler
    that judges in brackets or not at all)."""
    s = exp.info["settings"]  # hypertune.json's, which src.results.read_info completed
    if exp.info["kind"] != "search" or not SCHEDULER_TRAITS[s["scheduler"]].one_bracket:
        return ()
    return scheduler_rungs(
        s["scheduler"], s["max_epochs"], s["grace_period"], s["reduction_factor"]
    )


def best_so_far(exp: Experiment, metric: str) -> pd.DataFrame:
    """Every epoch of every trial in the order they ended: minutes since the first trial
    started, the metric, and the best metric so far."""
    h = exp.history.sort_values("timestamp")
    minutes = (h["timestamp"] - (h["timestamp"] - h["time_this_iter_s"]).min()) / 60
    best = h[metric].cummax() if METRICS[metric] == "max" else h[metric].cummin()
    return pd.DataFrame({"minutes": minutes, "value": h[metric], "best": best})


def common_epoch(exp: Experiment) -> int:
    """The last epoch every trial reached, where all can be compared. Under ASHA, a trial that
    ended before its first rung was not stopped by ASHA but cut short (by a time budget, an
    error): such trials are left out rather than pull the comparison down to their epoch."""
    trained = exp.trials.loc[exp.trials["epochs"] > 0, "epochs"]
    if rungs := rung_epochs(exp):
        judged = trained[trained >= rungs[0]]
        trained = judged if len(judged) else trained
    return int(trained.min())


def cost_table(exp: Experiment, metric: str) -> pd.DataFrame:
    """Per trial: the seconds one of its epochs took (its cost, whatever its length), `metric`
    at the epoch every trial reached, its status, and whether it is on the Pareto front (no
    other trial is both cheaper per epoch and at least as good). A trial stopped early is
    judged at the same epoch as the rest, so it never looks cheap for having been stopped."""
    maximise = METRICS[metric] == "max"
    at_epoch = metric_at(exp, metric, common_epoch(exp)).set_index("trial_id")
    table = at_epoch[[metric, "status"]].join(
        exp.history.groupby("trial_id")["time_this_iter_s"].mean().rename("seconds_per_epoch")
    )
    table = table.sort_values(["seconds_per_epoch", metric], ascending=[True, not maximise])
    sign = 1 if maximise else -1
    record = (sign * table[metric]).cummax()
    table["pareto"] = (sign * table[metric] >= record) & ~record.duplicated()
    return table.reset_index()


def importance(exp: Experiment, metric: str) -> pd.DataFrame:
    """Share of the metric's variance explained by each hyperparameter alone (eta squared of a
    one-way grouping, continuous values in quantile bins), at the epoch every trial reached.
    `chance` is what an unrelated grouping explains on average, (groups - 1) / (trials - 1)."""
    epoch = common_epoch(exp)
    table = metric_at(exp, metric, epoch)
    y = table[metric]
    total = ((y - y.mean()) ** 2).sum()
    rows = []
    for name in exp.varied():
        groups = y.groupby(bins(table[name], name in exp.log_scale), observed=True)
        between = (groups.count() * (groups.mean() - y.mean()) ** 2).sum()
        rows.append(
            {
                "hyperparameter": name,
                "variance_share": between / total if total > 0 else 0.0,
                "chance": (groups.ngroups - 1) / max(len(y) - 1, 1),
                "groups": groups.ngroups,
                "epoch": epoch,
                "trials": len(y),
            }
        )
    return pd.DataFrame(rows).sort_values("variance_share", ascending=False)


def top_trials(exp: Experiment, metric: str) -> pd.DataFrame:
    h, maximise = exp.history.dropna(subset=[metric]), METRICS[metric] == "max"
    by_trial = h.groupby("trial_id")[metric]  # a diverged trial's NaN loss is no best
    pick = by_trial.idxmax() if maximise else by_trial.idxmin()
    best = h.loc[pick, ["trial_id", "epoch", metric]].rename(
        columns={"epoch": "best_epoch", metric: f"best_{metric}"}
    )
    columns = ["trial_id", *[n for n in HYPERPARAMETERS if n in exp.trials], "epochs", "status"]
    table = exp.trials[columns].merge(best, on="trial_id")
    return table.sort_values(f"best_{metric}", ascending=not maximise).head(TOP_TRIALS)


def versus_start(exp: Experiment, table: pd.DataFrame | None) -> tuple[pd.DataFrame, str] | None:
    """The starting configuration beside the best trial (from the summary `table`, None before
    the experiment wrote one), and what the difference means; None without a yardstick."""
    if table is None or (found := best_versus_start(table)) is None:
        return None
    rows = table.set_index("trial_id")
    start, best = rows.loc[found.start_id], rows.loc[found.best_id]
    names = exp.varied()
    frame = pd.DataFrame(
        {
            "": [*names, f"{METRIC} at epoch {found.epoch}", "trial"],
            "starting configuration": [*start[names], round(found.start, 4), found.start_id],
            "best trial": [*best[names], round(found.best, 4), found.best_id],
        }
    )
    return frame, f"The best trial: {found.verdict()}."


def left_out(exp: Experiment, epoch: int) -> list[str]:
    """Notes on trials that the comparisons at `epoch` leave out."""
    short = exp.trials[(exp.trials["epochs"] > 0) & (exp.trials["epochs"] < epoch)]
    if short.empty:
        return []
    return [
        f"{len(short)} trial(s) ended before epoch {epoch} ({', '.join(short['trial_id'])}: cut "
        f"short by the time budget or an error) and are left out of the comparisons at it."
    ]


def grid_axes(
    exp: Experiment, best: dict[str, Any], space: dict[str, tuple[str, Any]]
) -> tuple[dict[str, list[Any]], str]:
    """The two hyperparameters that mattered most in `exp` (importance at the epoch every
    trial reached) with values around `best`, its best configuration: the categories it tried,
    or the best value and its neighbours on the space's scale; and why, in words."""
    ranking = importance(exp, METRIC) if exp.varied() else pd.DataFrame()
    trials = int(ranking["trials"].iloc[0]) if len(ranking) else len(exp.trials)
    if len(ranking) < 2 or trials < MIN_TRIALS_TO_RANK:
        raise AnalysisError(
            f"{exp.folder.name} has {trials} trial(s) at a common epoch varying "
            f"{len(ranking)} hyperparameter(s): too few to rank what mattered (at least "
            f"{MIN_TRIALS_TO_RANK} trials and 2 hyperparameters). Name the axes: --x NAME=V1,V2 "
            f"--y NAME=V1,V2."
        )
    top = ranking.head(2)
    axes = {n: values_around(best[n], space.get(n), exp.trials[n]) for n in top["hyperparameter"]}
    shares = ", ".join(f"{row.hyperparameter} {row.variance_share:.0%}" for row in top.itertuples())
    why = (
        f"the two hyperparameters that explained most of {METRIC} at epoch "
        f"{int(top['epoch'].iloc[0])} over {trials} trials of {exp.folder.name} ({shares}), "
        f"around its best trial"
    )
    return axes, why


def values_around(best: Any, entry: tuple[str, Any] | None, tried: pd.Series) -> list[Any]:
    """A grid axis around `best`: a category's every value tried; a number's best value and
    its neighbours a quarter of its range away (a factor of 3 on a log scale), in range."""
    if entry is None or entry[0] == "choice":
        return sorted(tried.dropna().unique().tolist())
    kind, (low, high) = entry
    if kind == "loguniform":
        values = [best / 3, best, best * 3]
    else:
        step = (high - low) / 4 if kind == "uniform" else max(1, (high - low) // 4)
        values = [best - step, best, best + step]
    inside = [min(max(v, low), high) for v in values]
    return sorted({int(v) if kind == "int" else float(f"{v:.3g}") for v in inside})
