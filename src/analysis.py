"""What an experiment learned, as figures: `make analyze` or `hypertune.py analyze`.

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
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from src import report
from src.commands import hypertune_command
from src.config import (
    METRIC,
    METRICS,
)
from src.errors import AnalysisError, DiskFull, space_for
from src.report import STATUS_COLOURS, markdown_table
from src.results import (
    REPORT_PAGE,
    ExperimentFolder,
    read_evaluation,
    read_info,
    read_summary,
    trial_config,
    trial_errored,
    trial_folders,
    trial_history,
    trial_id_of,
    trial_status,
)
from src.stats import (
    MAX_BINS,
    Experiment,
    best_so_far,
    common_epoch,
    cost_table,
    heatmap_cells,
    importance,
    left_out,
    metric_at,
    rung_epochs,
    top_trials,
    versus_start,
)


def latest_experiment(root: Path) -> Path:
    infos = (ExperimentFolder(p).info for p in root.iterdir()) if root.is_dir() else ()
    found = sorted((i for i in infos if i.is_file()), key=lambda p: p.stat().st_mtime)
    if not found:
        raise AnalysisError(
            f"No experiment found under {root}. Run `{hypertune_command()}` first, or pass an "
            f"experiment folder: {hypertune_command('analyze', 'logs/ray_results/NAME')}"
        )
    return found[-1].parent


def load_experiment(folder: Path) -> Experiment:
    if not (info_file := ExperimentFolder(folder).info).is_file():
        raise AnalysisError(
            f"{folder} is not a hypertune experiment (it has no {info_file.name}). Pass a "
            f"folder written by `{hypertune_command()}`, e.g. logs/ray_results/NAME."
        )
    info = read_info(folder)
    rows, histories = [], []
    for trial in trial_folders(folder):
        history = trial_history(trial).assign(trial_id=trial_id_of(trial))
        epochs = int(history["epoch"].max()) if len(history) else 0
        diverged = "diverged" in history and bool(history["diverged"].iloc[-1])
        max_epochs = int(info["settings"]["max_epochs"])
        status = trial_status(trial_errored(trial), diverged, epochs, max_epochs)
        config = trial_config(trial)
        rows.append({"trial_id": trial_id_of(trial), **config, "epochs": epochs, "status": status})
        histories.append(history)
    if not any(len(h) for h in histories):
        raise AnalysisError(
            f"No trial of {folder} finished an epoch ({len(rows)} trial folders), so there is "
            f"nothing to analyse. Look at the trials' error.txt files, or wait for the run."
        )
    history = pd.concat([h for h in histories if len(h)], ignore_index=True)
    return Experiment(folder, info, pd.DataFrame(rows), history)


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
    tables[REPORT_PAGE] = report.render(report_data(exp, req.metric, heatmap, ranking))
    return figures, tables, "\n".join(notes)


def report_data(
    exp: Experiment,
    metric: str,
    heatmap: tuple[pd.DataFrame, str, str, str] | None,
    ranking: pd.DataFrame | None,
) -> report.ReportData:
    epoch = common_epoch(exp)
    files = ExperimentFolder(exp.folder)
    evaluation = read_evaluation(files.evaluation)
    summary = read_summary(exp.folder) if files.summary.is_file() else None
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
        versus=versus_start(exp, summary),
        evaluation=evaluation,
        notes=left_out(exp, epoch),
    )


def write_figures(folder: Path, figures: dict[str, plt.Figure], tables: dict[str, str]) -> None:
    folder.mkdir()
    for name, fig in figures.items():
        fig.savefig(folder / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
    for name, text in tables.items():
        (folder / name).write_text(text)
    report.copy_script(folder)


def write_outputs(folder: Path, figures: dict[str, plt.Figure], tables: dict[str, str]) -> Path:
    """Into a fresh folder first, then swapped in: a failure never leaves half a result."""
    target = ExperimentFolder(folder).figures
    staging = target.with_name(f"{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with space_for(staging, "the figures and the report page"):
            write_figures(staging, figures, tables)
    except DiskFull:
        shutil.rmtree(staging, ignore_errors=True)  # what it took, back to the disk
        raise
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
