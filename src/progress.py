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

from loguru import logger
from ray import tune
from ray.tune.experiment import Trial

from src.budget import BudgetPlan, TrialSoFar, next_rung, replanned_trials
from src.config import METRIC, RunSettings, start_config
from src.console import Ticker, clock


def trained(trial: Trial) -> int:
    """Epochs a trial has reported so far."""
    return int((trial.last_result or {}).get("training_iteration", 0))


class PlanFollower(tune.Callback):
    """The time plan following its run: after every report, the trials the search will have
    started by its end, re-planned from the pace its trials report against the plan's price of
    them (src.budget.replanned_trials), for the seconds left of `time_limit`. Each new count is
    kept with the second it came (`history`: recorded in hypertune.json, shown by the progress
    line and the summary)."""

    def __init__(self, settings: RunSettings, plan: BudgetPlan, time_limit: float) -> None:
        assert plan.cost_model is not None  # a plan with a search priced it
        self.settings, self.cost_model = settings, plan.cost_model
        self.priced_trial, self.slots = plan.trial_epoch_seconds, plan.concurrent
        self.time_limit = time_limit
        self.history: list[tuple[float, int]] = []  # (seconds into the search, trials)
        self.searched = 0.0  # seconds into the search at the last re-plan (kept by --resume)
        self.setup()

    def setup(self, **info: Any) -> None:  # type: ignore[override]  # only keyword arguments
        """Called when the search starts, and again when it is resumed (Tune restores this
        callback with the experiment): the seconds searched before count on."""
        self.start = time.monotonic() - self.searched
        self.paces: dict[str, list[float]] = {}  # trial id -> its epochs' seconds, this session
        self.epochs: dict[str, int] = {}  # trial id -> epochs reported (Tune's Trial lags)
        self.ended: set[str] = set()  # trial ids ended (Tune's status lags too)
        self.failed = False

    @property
    def trials(self) -> int | None:
        """The latest re-planned count; None before the first report."""
        return self.history[-1][1] if self.history else None

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        seconds = result.get("epoch_seconds", result.get("time_this_iter_s"))
        if seconds is not None:
            self.paces.setdefault(trial.trial_id, []).append(float(seconds))
        self.epochs[trial.trial_id] = int(result.get("training_iteration", trained(trial)))
        self.follow(trials)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.ended.add(trial.trial_id)
        self.follow(trials)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.on_trial_complete(iteration, trials, trial)

    def follow(self, trials: list[Trial]) -> None:
        """Re-plan from what `trials` have reported. A forecast is never worth a search: should
        it fail, the run goes on with the plan's count and a line that says why."""
        if self.failed:
            return
        try:
            self.replan(trials)
        except Exception as err:  # any error: the search matters more than its forecast
            self.failed = True
            logger.warning(f"The trial count is no longer re-planned ({type(err).__name__}: "
                           f"{err}); the search goes on.")  # fmt: skip

    def replan(self, trials: list[Trial]) -> None:
        start = start_config(self.settings)
        so_far = [
            TrialSoFar(
                self.epochs.get(t.trial_id, trained(t)), self.pace_of(t),
                self.cost_model.epoch_seconds({**start, **t.config}),
                running=t.status in ("RUNNING", "PAUSED") and t.trial_id not in self.ended,
            )
            for t in trials
            if t.status != "PENDING"
        ]  # fmt: skip
        elapsed = self.searched = time.monotonic() - self.start
        left = max(self.time_limit - elapsed, 0.0)
        count = replanned_trials(self.settings, self.priced_trial, so_far, self.slots, left)
        if count is not None and count != self.trials:
            self.history.append((round(elapsed, 1), count))

    def pace_of(self, trial: Trial) -> float | None:
        seconds = self.paces.get(trial.trial_id)
        return sum(seconds) / len(seconds) if seconds else None


class ProgressLine(tune.Callback):
    """A Tune callback that keeps one line of progress up to date. `trials` is how many the
    experiment will run (None where a budget ends it instead); `epoch_budget` is the total of
    training epochs that ends it (compare), if any; `rungs` are the epochs below max_epochs at
    which the scheduler may stop a trial (ASHA's milestones; none for FIFO); `time_limit`: the
    seconds after which a time budget ends the search. Under a time limit the trial count
    follows the run (`follower`), marked "(re-planned)"."""

    follower: PlanFollower | None = None  # a line pickled before it had one (--resume)

    def __init__(
        self,
        label: str,
        trials: int | None,
        max_epochs: int,
        epoch_budget: int | None = None,
        rungs: tuple[int, ...] = (),
        time_limit: float | None = None,
        follower: PlanFollower | None = None,
    ) -> None:
        self.label, self.trials, self.max_epochs = label, trials, max_epochs
        self.epoch_budget, self.rungs, self.time_limit = epoch_budget, rungs, time_limit
        self.follower = follower
        self.best: tuple[float, str, int] | None = None  # (value, trial id, epoch)
        self.setup()

    def setup(self, **info: Any) -> None:  # type: ignore[override]  # only keyword arguments
        """Called when the experiment starts, and again when it is resumed (Tune restores this
        callback with the experiment): the clock restarts, the best so far stays."""
        self.ticker = Ticker()
        self.start, self.trial_ended = time.monotonic(), False
        self.epochs_at_start: int | None = None  # a resumed experiment brings epochs along

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        value = result.get(METRIC)
        if value is not None and (self.best is None or value > self.best[0]):
            self.best = (float(value), trial.trial_id, int(result.get("epoch", 0)))

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.trial_ended = True  # shown at the end of this step, once Tune updated its status

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.trial_ended = True

    def planned_trials(self, trials: list[Trial]) -> tuple[int | None, bool]:
        """How many trials the search will run, and whether that is a re-plan (never fewer
        than have started)."""
        replanned = self.follower.trials if self.follower and self.trials else None
        if replanned is None:
            return self.trials, False
        return max(replanned, sum(t.status != "PENDING" for t in trials)), True

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
        planned, replanned = self.planned_trials(trials)
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
            not_started = max((self.planned_trials(trials)[0] or started) - started, 0)
            stops = [next_rung(self.rungs, self.max_epochs, trained(t)) for t in running]
            in_flight = sum(
                max(per_trial, stop) - trained(t) for t, stop in zip(running, stops, strict=True)
            )
            to_come = not_started * per_trial + in_flight
        left = to_come * elapsed / this_session
        if self.time_limit is not None:  # a time budget ends the search at the latest
            left = min(left, max(self.time_limit - elapsed, 0.0))
        return f", ~{clock(left)} left" if to_come else ""
