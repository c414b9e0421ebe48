"""What a person watching a search sees: one progress line instead of Ray's tables.

On a terminal the line is rewritten in place about once a second; in a log file or CI it is
printed as a new line whenever a trial ends, and at least every 30 s (src/console.py):

    search 6/10 trials done (4 stopped early, 0 errors), 2 running | 41 epochs | 5:12
    elapsed, ~3 min left | best val_accuracy 0.739 (trial 1a2b3c4d, epoch 9)

`--verbose` brings Ray's own output back instead.
"""

from __future__ import annotations

import time
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

from src.budget import trials_in_reach
from src.config import METRIC
from src.console import Ticker, clock


def trained(trial: Trial) -> int:
    """Epochs a trial has reported so far."""
    return int((trial.last_result or {}).get("training_iteration", 0))


class ProgressLine(tune.Callback):
    """A Tune callback that keeps one line of progress up to date. `trials` is how many the
    experiment will run (None where a budget ends it instead); `epoch_budget` is the total of
    training epochs that ends it (compare), if any; `rungs` are the epochs below max_epochs at
    which the scheduler may stop a trial (ASHA's milestones; none for FIFO); `time_limit`: the
    seconds after which a time budget ends the search, on `slots` trials at once. Under a time
    limit the trial count follows the run: once two trials have ended, it is the trials started
    and as many more as the time left holds at their pace (src.budget.trials_in_reach), marked
    "(re-planned)"."""

    slots = 1  # for a line pickled with an experiment from before it had them (--resume)

    def __init__(
        self,
        label: str,
        trials: int | None,
        max_epochs: int,
        epoch_budget: int | None = None,
        rungs: tuple[int, ...] = (),
        time_limit: float | None = None,
        slots: int = 1,
    ) -> None:
        self.label, self.trials, self.max_epochs = label, trials, max_epochs
        self.epoch_budget, self.rungs, self.time_limit = epoch_budget, rungs, time_limit
        self.slots = slots
        self.best: tuple[float, str, int] | None = None  # (value, trial id, epoch)
        self.setup()

    def setup(self, **info: Any) -> None:  # type: ignore[override]  # only keyword arguments
        """Called when the experiment starts, and again when it is resumed (Tune restores this
        callback with the experiment): the clock restarts, the best so far stays."""
        self.ticker = Ticker()
        self.start, self.trial_ended = time.monotonic(), False
        self.epochs_at_start: int | None = None  # a resumed experiment brings epochs along
        self.started: dict[str, float] = {}  # trial id -> when it started, this session
        self.held: dict[str, float] = {}  # trial id -> seconds it held its slot, once ended

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.started[trial.trial_id] = time.monotonic()

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        value = result.get(METRIC)
        if value is not None and (self.best is None or value > self.best[0]):
            self.best = (float(value), trial.trial_id, int(result.get("epoch", 0)))

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.ended(trial)  # shown at the end of this step, once Tune updated its status

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.ended(trial)

    def ended(self, trial: Trial) -> None:
        self.trial_ended = True
        if trial.trial_id in self.started:
            self.held[trial.trial_id] = time.monotonic() - self.started[trial.trial_id]

    def planned_trials(self, trials: list[Trial], elapsed: float) -> tuple[int | None, bool]:
        """How many trials the search will run, and whether that is a re-plan: those started
        so far and as many more as the time left holds at the pace the ended ones showed."""
        if self.time_limit is None or not self.trials:
            return self.trials, False
        now = time.monotonic()
        running = [now - self.started[t.trial_id] for t in trials
                   if t.status == "RUNNING" and t.trial_id in self.started]  # fmt: skip
        left = max(self.time_limit - elapsed, 0.0)
        more = trials_in_reach(list(self.held.values()), running, self.slots, left)
        started = sum(t.status != "PENDING" for t in trials)
        return (self.trials, False) if more is None else (started + more, True)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        # In a log file, every ended trial gets a line; on a terminal the line just updates.
        self.show(trials, force=self.trial_ended and not self.ticker.tty)
        self.trial_ended = False

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.show(trials, force=True)
        self.ticker.close()

    def show(self, trials: list[Trial], force: bool = False) -> None:
        if self.ticker.due(force):
            self.ticker.show(self.describe(trials, time.monotonic() - self.start), force)

    def describe(self, trials: list[Trial], elapsed: float) -> str:
        epochs = sum(map(trained, trials))
        if self.epochs_at_start is None:
            self.epochs_at_start = epochs
        status = [t.status for t in trials]
        ended = [t for t in trials if t.status == "TERMINATED"]
        stopped = sum(trained(t) < self.max_epochs for t in ended)
        done, errors = len(ended) + status.count("ERROR"), status.count("ERROR")
        planned, replanned = self.planned_trials(trials, elapsed)
        of = f"/{planned}" + (" (re-planned)" if replanned else "") if planned else ""
        parts = [
            f"{self.label} {done}{of} trials done ({stopped} stopped early, {errors} errors), "
            f"{status.count('RUNNING')} running",
            f"{epochs} epochs" + (f" of {self.epoch_budget}" if self.epoch_budget else ""),
            f"{clock(elapsed)} elapsed" + self.time_left(trials, epochs, elapsed),
        ]
        if self.best:
            value, trial_id, epoch = self.best
            parts.append(f"best {METRIC} {value:.3f} (trial {trial_id}, epoch {epoch})")
        return " | ".join(parts)

    def next_stop(self, epochs: int) -> int:
        """The earliest epoch at which a trial that has trained `epochs` and still runs can end:
        its next rung, or max_epochs."""
        return min([rung for rung in self.rungs if rung > epochs] + [self.max_epochs])

    def time_left(self, trials: list[Trial], epochs: int, elapsed: float) -> str:
        """Epochs still to come, at the pace of this session. A trial not yet started is assumed
        to cost what the ended ones cost on average (ASHA stops most trials early); a running
        one trains at least to its next rung: the survivors of a late rung are the long trials,
        and counting them at the average made the estimate too short late in a search."""
        this_session = epochs - (self.epochs_at_start or 0)
        if this_session < 1:
            return ""
        if self.epoch_budget:
            to_come = float(max(self.epoch_budget - epochs, 0))
        else:
            ended = [t for t in trials if t.status in ("TERMINATED", "ERROR")]
            per_trial = sum(map(trained, ended)) / len(ended) if ended else self.max_epochs
            running = [t for t in trials if t.status in ("RUNNING", "PENDING", "PAUSED")]
            started = len(ended) + len(running)
            not_started = max((self.planned_trials(trials, elapsed)[0] or started) - started, 0)
            in_flight = sum(
                max(per_trial, self.next_stop(trained(t))) - trained(t) for t in running
            )
            to_come = not_started * per_trial + in_flight
        left = to_come * elapsed / this_session
        if self.time_limit is not None:  # a time budget ends the search at the latest
            left = min(left, max(self.time_limit - elapsed, 0.0))
        return f", ~{clock(left)} left" if to_come else ""
