"""What a person sees of a run outside Ray's loop: a progress line that rewrites itself, the
closing summary, and commands to copy. No Ray at import time (refit uses it too)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from src.commands import experiment_flags, hypertune_command
from src.config import HYPERPARAMETERS, METRIC
from src.results import (
    Evaluation,
    ExperimentFolder,
    best_trial,
    best_versus_start,
    cheapest_close_to_best,
    plan_and_actual,
)

PLAIN_EVERY_S = 30.0  # without a terminal: a line at least this often
TTY_EVERY_S = 1.0  # on a terminal: redraw at most this often


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class Ticker:
    """One line of progress on stderr: rewritten in place on a terminal (at most every
    TTY_EVERY_S), else printed as a new line at most every PLAIN_EVERY_S unless forced."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.shown_at, self.last = -float("inf"), ""

    def due(self, force: bool = False) -> bool:
        wait = TTY_EVERY_S if self.tty else PLAIN_EVERY_S
        return force or time.monotonic() - self.shown_at >= wait

    def show(self, line: str, force: bool = False) -> None:
        if not self.due(force) or (line == self.last and not self.tty):
            return
        self.shown_at, self.last = time.monotonic(), line
        sys.stderr.write(f"\r\033[K{line}" if self.tty else f"{line}\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Leave the in-place line behind, so that what follows starts on a new line."""
        if self.tty and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def describe_config(row: pd.Series) -> str:
    """NAME=VALUE of every hyperparameter the row holds (summaries written before image_size
    was one have no such column)."""
    names = [name for name in HYPERPARAMETERS if pd.notna(row.get(name))]
    return ", ".join(
        f"{name}={row[name]:.3g}" if isinstance(row[name], float) else f"{name}={row[name]}"
        for name in names
    )


def search_lines(table: pd.DataFrame) -> list[str]:
    """The search in a few lines: the best trial, how it compares with the starting
    configuration, and the cheapest trial nearly as good."""
    best, stopped = best_trial(table), int((table["status"] == "stopped_early").sum())
    lines = [
        f"{len(table)} trials ({stopped} stopped early)",
        f"best trial     {best['trial_id']}: {METRIC} {best['best_val_accuracy']:.4f} at epoch "
        f"{best['best_epoch']:.0f} of {best['epochs']}, {best['compute_seconds']:.0f} s",
        f"               {describe_config(best)}",
    ]
    if versus := best_versus_start(table):
        lines.append(
            f"vs the start   trial {versus.start_id} (the starting configuration): {METRIC} "
            f"{versus.start:.4f} at epoch {versus.epoch}; {versus.verdict()}"
        )
    cheap = cheapest_close_to_best(table)
    if cheap is not None and cheap["trial_id"] != best["trial_id"]:
        lines.append(
            f"within 1 point {cheap['trial_id']}: {METRIC} {cheap['best_val_accuracy']:.4f} at "
            f"{cheap['seconds_per_epoch']:.1f} s per epoch (best: {best['seconds_per_epoch']:.1f})"
            f": {describe_config(cheap)}"
        )
    return lines


def plan_lines(folder: Path) -> list[str]:
    """The time budget's plan beside what happened (src/budget.py, src.results.record_actual):
    trials, epochs and minutes of the search and of the final model."""
    plan, actual = plan_and_actual(folder)
    search, final = actual.get("search"), actual.get("final_model")
    lines = []
    if plan.get("trials") and search:
        lines.append(
            f"search: {plan['trials']} trials planned{replanned(search)}, {search['trials']} ran; "
            f"~{plan['epochs']:.0f} epochs planned, {search['epochs']} trained; "
            f"{plan['search_seconds'] / 60:.1f} min planned, {search['seconds'] / 60:.1f} ran"
        )
        if search.get("idle_per_trial_s") is not None:
            lines.append(
                f"{search['mean_running']:.1f} of {search['slots']} slots busy on average: a "
                f"slot stood idle {search['idle_per_trial_s']:.1f} s per trial (workers "
                f"starting, suggestions, the search's end); a trial spent "
                f"{search.get('setup_per_trial_s') or 0:.1f} s setting up and "
                f"{search.get('report_per_epoch_s') or 0:.2f} s per epoch on its checkpoint"
            )
    if final and final.get("planned_seconds"):
        lines.append(
            f"final model: {final['planned_epochs']} epochs planned, "
            f"{final['epochs']} trained; {final['planned_seconds'] / 60:.1f} min planned, "
            f"{final['seconds'] / 60:.1f} ran"
        )
    return [f"{'plan vs run' if i == 0 else '':<15}{line}" for i, line in enumerate(lines)]


def replanned(search: dict) -> str:
    """The trials re-planned from the run's own pace (src.progress.PlanFollower): the first
    count and the last, with the second each came."""
    steps = search.get("replanned") or []
    if not steps:
        return ""
    ends = steps[:1] + steps[1:][-1:]
    counts = ", then ".join(f"{trials} at {clock(seconds)}" for seconds, trials in ends)
    return f" (re-planned from the trials' pace: {counts})"


def ensemble_line(folder: Path, test: Evaluation) -> str | None:
    """What --ensemble gave, where it asked for more than one network: how many the model file
    averages (fewer than asked where the search kept fewer checkpoints) and its cost per photo."""
    final = plan_and_actual(folder)[1].get("final_model") or {}
    asked = final.get("members_asked", 1)
    if asked == 1:
        return None
    short = "" if test.members == asked else f" (--ensemble {asked}: the search kept no more)"
    cost = (test.seconds_per_image or 0) * 1000
    return (
        f"ensemble       {test.members} networks averaged{short}: the final model and the best "
        f"{test.members - 1} trial(s) as trained; {cost:.2f} ms per photo on this machine"
    )


def summary_block(
    folder: Path, table: pd.DataFrame, test: Evaluation | None, chosen: str = ""
) -> str:
    """The end of a run in a few lines: the search, the final model (`chosen`: what it trained)
    and its `test` scores, where everything is, and what to run next."""
    again = experiment_flags(folder)
    searched = search_lines(table) if len(table) else ["no search: the starting configuration"]
    lines = ["=" * 78, f"{folder.name}: {searched[0]}", *searched[1:], *plan_lines(folder)]
    if test is not None:
        flipped = "" if test.flip_accuracy is None else f", {test.flip_accuracy:.4f} with flip TTA"
        lines.append(
            f"final model    {chosen}; {ExperimentFolder(folder).model}: test accuracy "
            f"{test.accuracy:.4f}{flipped} (scored once; details in "
            f"{ExperimentFolder(folder).evaluation})"
        )
        if line := ensemble_line(folder, test):
            lines.append(line)
        lines.append(f"next           {hypertune_command('predict', *again)} PHOTOS...")
    else:
        lines.append(f"next           {hypertune_command('refit', *again)}")
    if (page := ExperimentFolder(folder).report_page).is_file():
        lines.append(f"see            {page} (open it in a browser)")
    lines += [
        f"results        {folder} (experiment_summary.csv, hypertune.json, final_model.pt)",
        "=" * 78,
    ]
    return "\n".join(lines)
