"""What an experiment learned, as figures: `make analyze` or `.venv/bin/python -m src.analysis`.

    .venv/bin/python hypertune.py analyze                    # latest experiment in logs/ray_results
    .venv/bin/python hypertune.py analyze logs/ray_results/NAME   # a grid: heatmap of its axes
    .venv/bin/python hypertune.py analyze logs/ray_results/NAME --metric val_loss
    .venv/bin/python hypertune.py analyze logs/ray_results/NAME --x lr --y batch_size --at-epoch 2

Heatmaps only ever hold trials trained for the same number of epochs. A fixed-epoch
grid (`.venv/bin/python hypertune.py grid ...`) gives that by construction. For an ASHA
search, whose trials stop at different epochs, a heatmap is refused unless --at-epoch K asks
to compare every trial that reached epoch K at that epoch (the title then says so).

Every experiment also gets learning curves, the best-so-far trace over wall-clock time, each
hyperparameter against the final metric, and a hyperparameter importance ranking. Everything
lands in <experiment>/figures/ (replaced as a whole, never half-written).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from src import report
from src.commands import add_analyze_arguments, hypertune_command
from src.config import (
    BASELINE,
    EVALUATION_DIR,
    EXPERIMENT_INFO,
    HYPERPARAMETERS,
    METRIC,
    METRICS,
    SEARCH_SPACE,
    SEARCHABLE,
    STATUS_COLOURS,
    SUMMARY_FILE,
    HypertuneError,
    asha_rungs,
)
from src.report import markdown_table
from src.results import read_summary, trial_folder_name, trial_id_of, trial_status, yardstick

MAX_BINS = 4  # a continuous hyperparameter is cut into at most this many quantile bins
TOP_TRIALS = 10


class AnalysisError(HypertuneError):
    """Input the analysis cannot use; the message says what to do instead."""


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


def latest_experiment(root: Path) -> Path:
    found = sorted(root.glob(f"*/{EXPERIMENT_INFO}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise AnalysisError(
            f"No experiment found under {root}. Run `{hypertune_command()}` first, or pass an "
            f"experiment folder: {hypertune_command('analyze', 'logs/ray_results/NAME')}"
        )
    return found[-1].parent


def load_trial(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    params = json.loads((folder / "params.json").read_text())
    progress = folder / "progress.csv"
    has_rows = progress.is_file() and progress.stat().st_size > 0
    history = pd.read_csv(progress) if has_rows else pd.DataFrame(columns=["epoch"])
    return params, history.assign(trial_id=trial_id_of(folder))


def load_experiment(folder: Path) -> Experiment:
    if not (folder / EXPERIMENT_INFO).is_file():
        raise AnalysisError(
            f"{folder} is not a hypertune experiment (it has no {EXPERIMENT_INFO}). Pass a "
            f"folder written by `{hypertune_command()}`, e.g. logs/ray_results/NAME."
        )
    info = json.loads((folder / EXPERIMENT_INFO).read_text())
    rows, histories = [], []
    for trial in sorted(folder.glob(f"{trial_folder_name('*')}/params.json")):
        params, history = load_trial(trial.parent)
        epochs = int(history["epoch"].max()) if len(history) else 0
        errored = (trial.parent / "error.txt").exists()
        diverged = "diverged" in history and bool(history["diverged"].iloc[-1])
        status = trial_status(errored, diverged, epochs, int(info["settings"]["max_epochs"]))
        rows.append(
            {"trial_id": trial_id_of(trial.parent), **params, "epochs": epochs, "status": status}
        )
        histories.append(history)
    if not any(len(h) for h in histories):
        raise AnalysisError(
            f"No trial of {folder} finished an epoch ({len(rows)} trial folders), so there is "
            f"nothing to analyse. Look at the trials' error.txt files, or wait for the run."
        )
    history = pd.concat([h for h in histories if len(h)], ignore_index=True)
    return Experiment(folder, info, pd.DataFrame(rows), history)


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
            value = BASELINE[name] if name in BASELINE else exp.info["settings"]["image_size"]
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


def plot_heatmap(cells: pd.DataFrame, x: str, y: str, metric: str, note: str) -> plt.Figure:
    mean = cells.pivot(index=y, columns=x, values="mean")
    labels = cells.pivot(index=y, columns=x, values="label")
    fig, ax = plt.subplots(figsize=(1.8 * mean.shape[1] + 2.5, 1.2 * mean.shape[0] + 2))
    cmap = "viridis" if METRICS[metric] == "max" else "viridis_r"  # bright = better
    sns.heatmap(mean, annot=labels, fmt="", cmap=cmap, ax=ax, cbar_kws={"label": metric})
    ax.invert_yaxis()  # small values at the bottom, like a plot
    ax.set_title(f"{metric}: {y} × {x}\n{note} (mean ± sd over seeds)")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    return fig


def rung_epochs(exp: Experiment) -> tuple[int, ...]:
    """Epochs at which ASHA compared trials (none for a grid or another scheduler)."""
    s = exp.info["settings"]
    if exp.info["kind"] != "search" or s.get("scheduler", "asha") != "asha":
        return ()
    return asha_rungs(s["max_epochs"], s["grace_period"], s["reduction_factor"])


def plot_learning_curves(exp: Experiment, metric: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(8, 5))
    status = exp.trials.set_index("trial_id")["status"]
    lines = {"completed": "-", "stopped_early": "--"}  # diverged and errored: dotted
    styles = {k: (lines.get(k, ":"), colour) for k, colour in STATUS_COLOURS.items()}
    for tid, h in exp.history.groupby("trial_id"):
        style, color = styles[status[tid]]
        ax.plot(h["epoch"], h[metric], style, color=color, alpha=0.7, marker=".")
        if status[tid] != "completed":
            ax.plot(h["epoch"].iloc[-1], h[metric].iloc[-1], "x", color=color, ms=9)
    for rung in rung_epochs(exp):
        ax.axvline(rung, color="grey", lw=0.8, ls=":")
    shown = set(status)
    handles = [
        plt.Line2D([], [], ls=s, color=c, label=k) for k, (s, c) in styles.items() if k in shown
    ]
    if rung_epochs(exp):
        handles.append(plt.Line2D([], [], ls=":", color="grey", label="ASHA rung"))
    ax.legend(handles=handles)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curves, {len(exp.trials)} trials (x = last epoch of a stopped trial)")
    return fig


def best_so_far(exp: Experiment, metric: str) -> pd.DataFrame:
    """Every epoch of every trial in the order they ended: minutes since the first trial
    started, the metric, and the best metric so far."""
    h = exp.history.sort_values("timestamp")
    minutes = (h["timestamp"] - (h["timestamp"] - h["time_this_iter_s"]).min()) / 60
    best = h[metric].cummax() if METRICS[metric] == "max" else h[metric].cummin()
    return pd.DataFrame({"minutes": minutes, "value": h[metric], "best": best})


def plot_best_so_far(exp: Experiment, metric: str) -> plt.Figure:
    b = best_so_far(exp, metric)
    minutes, best = b["minutes"], b["best"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.scatter(minutes, b["value"], s=10, color="lightgrey", label="every epoch of every trial")
    ax.step(minutes, best, where="post", color="tab:blue", label="best so far")
    ax.set_xlabel("wall-clock time since the first trial started (minutes)")
    ax.set_ylabel(metric)
    ax.set_title(f"How fast the search found its best {metric}: {best.iloc[-1]:.3f}")
    ax.legend()
    return fig


def plot_hyperparameters(exp: Experiment, metric: str) -> plt.Figure:
    final = metric_at(exp, metric, None)
    names = exp.varied()
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names, strict=True):
        colours = {"hue": "status", "palette": STATUS_COLOURS, "ax": ax}
        if final[name].nunique() <= 2 * MAX_BINS:
            sns.stripplot(final, x=name, y=metric, legend=ax is axes[0], **colours)
        else:
            sns.scatterplot(final, x=name, y=metric, legend=False, **colours)
            if name in exp.log_scale:
                ax.set_xscale("log")
    fig.suptitle(f"Each hyperparameter vs the {metric} at a trial's last epoch")
    fig.tight_layout()
    return fig


def common_epoch(exp: Experiment) -> int:
    """The last epoch every trial reached, where all can be compared. Under ASHA, a trial that
    ended before its first rung was not stopped by ASHA but cut short (by a time budget, an
    error): such trials are left out rather than pull the comparison down to their epoch."""
    trained = exp.trials.loc[exp.trials["epochs"] > 0, "epochs"]
    s = exp.info["settings"]
    if exp.info["kind"] == "search" and s.get("scheduler", "asha") == "asha":
        judged = trained[trained >= s["grace_period"]]
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


def plot_cost(exp: Experiment, metric: str) -> plt.Figure:
    table, epoch = cost_table(exp, metric), common_epoch(exp)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    sns.scatterplot(
        table, x="seconds_per_epoch", y=metric, hue="status", palette=STATUS_COLOURS, ax=ax
    )
    front = table[table["pareto"]]
    ax.step(front["seconds_per_epoch"], front[metric], where="post", color="black", lw=1,
            label="Pareto front")  # fmt: skip
    for _, row in front.iterrows():
        ax.annotate(row["trial_id"][:8], (row["seconds_per_epoch"], row[metric]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("seconds per epoch of the trial")
    ax.set_ylabel(f"{metric} at epoch {epoch}, which every trial reached")
    ax.set_title(f"Cost against {metric}: {len(front)} of {len(table)} trials on the Pareto front")
    ax.legend()
    return fig


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


def plot_importance(ranking: pd.DataFrame, metric: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(ranking) + 1.8))
    ax.barh(ranking["hyperparameter"], ranking["variance_share"], label="variance share")
    ax.scatter(ranking["chance"], ranking["hyperparameter"], color="black", marker="|", s=200,
               label="expected by chance")  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of {metric} variance explained (eta², one-way)")
    first = ranking.iloc[0]
    ax.set_title(f"Importance at epoch {first['epoch']} over {first['trials']} trials")
    ax.legend(loc="lower right")
    return fig


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


@dataclass(frozen=True)
class Request:
    x: str | None
    y: str | None
    metric: str
    at_epoch: int | None


def render(exp: Experiment, req: Request) -> tuple[dict[str, plt.Figure], dict[str, str], str]:
    """All figures and tables, in memory: nothing is written until everything succeeded."""
    figures = {
        "learning_curves.png": plot_learning_curves(exp, req.metric),
        "best_so_far.png": plot_best_so_far(exp, req.metric),
        "cost.png": plot_cost(exp, req.metric),
    }
    notes = []
    heatmap = None
    x, y = req.x, req.y
    if x is None and exp.info["kind"] == "grid":
        x, y = list(exp.info["grid"]["axes"])
    if x is not None and y is not None:
        cells, note = heatmap_cells(exp, x, y, req.metric, req.at_epoch)
        figures[f"heatmap_{req.metric}_{y}_x_{x}.png"] = plot_heatmap(cells, x, y, req.metric, note)
        heatmap = (cells, x, y, note)
        notes.append(f"Heatmap {y} × {x}: {note}.")
    else:
        notes.append(
            "No heatmap: a search's trials vary many hyperparameters at once (and under ASHA "
            "stop at different epochs). Run `hypertune.py grid --x NAME=... --y NAME=...`, or "
            "pass --x, --y and --at-epoch K to compare the trials at epoch K."
        )
    tables = {"analysis_summary.csv": top_trials(exp, req.metric).to_csv(index=False)}
    ranking = None
    if exp.varied():
        figures["hyperparameters.png"] = plot_hyperparameters(exp, req.metric)
        ranking = importance(exp, req.metric)
        figures["importance.png"] = plot_importance(ranking, req.metric)
        tables["importance.csv"] = ranking.to_csv(index=False)
        notes.append(
            "Importance: share of the variance of "
            f"{req.metric} at epoch {ranking['epoch'].iloc[0]} explained by each "
            "hyperparameter alone (eta², continuous values in quantile bins). It ignores "
            "interactions, and with few trials even an unrelated hyperparameter explains about "
            "the 'chance' share.\n\n" + markdown_table(ranking)
        )
    summary = f"# {exp.folder.name}: top trials by {req.metric}\n\n"
    summary += markdown_table(top_trials(exp, req.metric)) + "\n\n" + "\n\n".join(notes) + "\n"
    tables["analysis_summary.md"] = summary
    tables["report.html"] = report.render(report_data(exp, req.metric, heatmap, ranking))
    return figures, tables, "\n".join(notes)


def versus_start(exp: Experiment) -> tuple[pd.DataFrame, str] | None:
    """The starting configuration beside the best trial (from the summary), and what the
    difference means; None where the summary has no yardstick."""
    if not (exp.folder / SUMMARY_FILE).is_file():
        return None
    table = read_summary(exp.folder)
    if (found := yardstick(table)) is None:
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


def report_data(
    exp: Experiment,
    metric: str,
    heatmap: tuple[pd.DataFrame, str, str, str] | None,
    ranking: pd.DataFrame | None,
) -> report.ReportData:
    epoch = common_epoch(exp)
    evaluation = exp.folder / EVALUATION_DIR / "summary.json"
    described = {**exp.info["settings"], "time budget plan": exp.info.get("plan")}
    settings = {k: v if isinstance(v, int | float | str) or v is None else json.dumps(v)
                for k, v in described.items()}  # fmt: skip
    return report.ReportData(
        name=exp.folder.name,
        kind=exp.info["kind"],
        metric=metric,
        epoch=epoch,
        trials=metric_at(exp, metric, epoch),
        varied=exp.varied(),
        log_scale=exp.log_scale,
        history=exp.history.merge(exp.trials[["trial_id", "status"]], on="trial_id"),
        best_so_far=best_so_far(exp, metric),
        cost=cost_table(exp, metric),
        top=top_trials(exp, metric)[
            ["trial_id", *exp.varied(), "epochs", "status", "best_epoch", f"best_{metric}"]
        ],
        settings=settings,
        command=exp.info.get("command"),
        importance=ranking,
        heatmap=heatmap,
        versus=versus_start(exp),
        evaluation=json.loads(evaluation.read_text()) if evaluation.is_file() else None,
        notes=left_out(exp, epoch),
    )


def write_outputs(folder: Path, figures: dict[str, plt.Figure], tables: dict[str, str]) -> Path:
    """Into a fresh folder first, then swapped in: a failure never leaves half a result."""
    target, staging = folder / "figures", folder / "figures.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name, fig in figures.items():
        fig.savefig(staging / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
    for name, text in tables.items():
        (staging / name).write_text(text)
    report.copy_script(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def analyze(args: argparse.Namespace) -> list[Path]:
    """Every figure and table of the requested experiment, written together; raises
    AnalysisError (and writes nothing) when the request cannot be met."""
    if args.metric not in METRICS:
        raise AnalysisError(f"Unknown metric {args.metric!r}; choose from {', '.join(METRICS)}.")
    if (args.x is None) != (args.y is None):
        raise AnalysisError("A heatmap needs both --x and --y (or neither, for a grid).")
    folder = args.experiment or latest_experiment(args.root)
    if not folder.is_dir():
        raise AnalysisError(f"Experiment folder {folder} does not exist.")
    written, notes = analyze_folder(folder, Request(args.x, args.y, args.metric, args.at_epoch))
    print(notes)
    return written


def analyze_folder(folder: Path, request: Request) -> tuple[list[Path], str]:
    """Every figure and table of one experiment, report.html among them, written together;
    also the notes on what they show."""
    figures, tables, notes = render(load_experiment(folder), request)
    target = write_outputs(folder, figures, tables)
    return [target / name for name in [*figures, *tables]], notes


def default_request() -> Request:
    """What `analyze` draws when asked for nothing in particular."""
    return Request(None, None, METRIC, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Figures of a hypertune experiment (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_analyze_arguments(parser)
    try:
        written = analyze(parser.parse_args(argv))
    except AnalysisError as err:
        print(f"analysis: error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
