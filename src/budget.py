"""Minutes in, trials and epochs out: how a `--time-budget` run spends its time.

Users think in minutes; trials x epochs is hypertune's business. Before the search starts,
hypertune times a few batches of the starting configuration on this machine, and of the
costliest configuration its space holds; between the two, a cost model (`CostModel`: a part per
batch, a part per element the network writes) prices the configurations the searcher will
draw. The search gets
`--search-share` of the budget (Ray Tune's `time_budget_s` ends it there) with as many trials as
fit at that price, and the final model what is left: once the search has chosen a
configuration, the refit times that one and trains as many epochs as the remaining time holds.
What happened is recorded beside the plan (src.results.record_actual) and printed with it.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import math
import random
import statistics
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from src.config import (
    SCHEDULER_TRAITS,
    SEARCHER_TRAITS,
    DataSpec,
    RunSettings,
)
from src.data import open_trial_data
from src.device import Amp, graphs_wanted, local_device
from src.model import SHAPE_KEYS, build_model, forward_elements
from src.step import WARMUP_STEPS, GraphedStep, make_step
from src.train import make_optimizer

TIMED_BATCHES = 6  # batches a round times (after one warm-up): about a second at 64 px
# Rounds of them, back to back; the fastest counts. Whatever else wakes on the cores only ever
# slows a round down: Ray's processes starting just before the plan times the start read it up
# to 53 % slow in a run (journal entry 33).
TIMING_ROUNDS = 3
EVALUATION_RESERVE_S = 15.0  # after the refit: saving the model, scoring the test split
# Ray's share of a trial besides its epochs, as hypertune.json's "actual" records it (journal
# entry 17, 2 CPU cores): 0.4-0.5 s setting a trial up plus 0.7-5.7 s its slot stands idle
# between trials; 0.02 s per epoch on the checkpoint and report (rounded up).
TRIAL_OVERHEAD_S = 2.0
EPOCH_OVERHEAD_S = 0.05
COST_SAMPLES = 200  # configurations drawn from the space to price an average trial's epoch
# A time-limited search may start this many times the trials its plan counted (unless
# --num-samples was typed): the limit, not the count, ends it, so trials that go faster than
# planned leave no slot idle (journal entry 18: a default run's 8 planned trials were done at
# 2:43 of its 4 minutes).
TRIALS_BEYOND_PLAN = 3
ASHA_SIMULATIONS = 1000  # searches played on random scores to expect the epochs ASHA allows
SIMULATED_TRIALS = 200  # trials each (0.3 s in all); the later half sets the tail
# A searcher that learns (config.SEARCHER_TRAITS) draws its first RANDOM_TRIALS trials after
# the start at random (HyperOpt: n_initial_points >= 3), then proposes trials that score like
# the best of LEARNED_DRAWS random ones. Fitted to four runs' epochs per trial (journal entries
# 17-18; benchmarks/asha_epochs.py): simulated 11.2, 11.1, 5.3, 5.1 against 11.6, 14.0, 4.75,
# 5.2 trained (long preset, 8 and 9 trials; default, 13 and 16); as random draws 9.8, 9.7,
# 4.65, 4.55. With today's start (below) and the race beside it, 10.9, 10.7, 5.1 and 5.0.
RANDOM_TRIALS = 3
LEARNED_DRAWS = 2
# The start scores like the best of START_DRAWS random draws of its space: at the first rung it
# beat 0.59 of the other trials on average in 13 runs (a best-of-two start expects about 0.58
# against three random and then learned trials, a random one about 0.4), and the trials of
# those runs are forecast 5 % short on average instead of 16 % (journal entry 28;
# benchmarks/plan_replay.py --start-draws). In the default space it beat every trial at the
# first rung with --seed 0 only: in nine default runs of entry 33, 0.96-1.00 of them with seed
# 0 and 0-0.40 with seeds 1 and 2, so a start above every trial there was seed 0's luck.
START_DRAWS = 2
# The re-plan learns from the run how many trials go on past the first rung, against how many
# the simulation expected of the same trials, as if PRIOR_TRIALS_ON more had gone on as
# expected: one trial's decision moves the forecast, it does not decide it (journal entry 31).
PRIOR_TRIALS_ON = 1.0
# The trials that start beside the start, on the other slots, race it to each rung: the first to
# report there goes on whatever it scores. Taken as even odds (the default space's draws are
# cheaper than the start about as often as not); the trial beside the start trained all 10
# epochs in 3 of the 6 default runs of entries 27-31 (all three of entry 31).
LEAD_CHANCE = 0.5


@dataclass(frozen=True)
class BudgetPlan:
    """How a time budget is spent: recorded in hypertune.json, printed at the start."""

    minutes: float
    search_seconds: float  # the search's share, from the start of the run
    epoch_seconds: float  # one epoch (train + validation) of the starting configuration, timed
    trial_epoch_seconds: float  # an average trial's epoch: the space priced by the cost model
    concurrent: int  # trials at once
    trial_epochs: float  # epochs an average trial trains under its scheduler
    trials: int  # what fits (or what --num-samples asked for)
    epochs: float  # what they train: the start every epoch, the others trial_epochs each
    refit_seconds: float  # the rest, less the evaluation at the end
    cost_model: CostModel | None = None  # what priced the space; the run's re-plan prices with it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, settings: RunSettings) -> str:
        if self.search_seconds <= 0:
            return (
                f"Plan for {self.minutes:g} min: no search (--search-share 0); the starting "
                f"configuration trains for about {self.refit_seconds / 60:.1f} min."
            )
        return (
            f"Plan for {self.minutes:g} min: search {self.search_seconds / 60:.1f} min "
            f"({self.trials} trials, about {self.trial_epochs:.1f} of at most "
            f"{settings.max_epochs} epochs each, {self.concurrent} at once, "
            f"{self.trial_epoch_seconds:.1f} s per epoch priced over the space, "
            f"{self.epoch_seconds:.1f} s measured for the start), then the final model "
            f"{self.refit_seconds / 60:.1f} min (its epochs follow from its own measured pace)."
        )


@dataclass(frozen=True)
class TrialSoFar:
    """A trial of a running search, as its reports show it."""

    epochs: int  # reported so far
    pace: float | None  # seconds per epoch, the mean of its reports (None before the first)
    priced: float  # seconds per epoch, as the plan's cost model prices its configuration
    running: bool


def expected_epochs(
    settings: RunSettings, slots: int = 1, so_far: Sequence[TrialSoFar] = ()
) -> Iterator[float]:
    """Epochs each trial after the start can expect to train under the settings' scheduler, in
    the order the trials start, `slots` at once (endless: past the simulated trials, what the
    later half of them trained on average; a single trial's figure is noisy, sums of them are
    not). Under ASHA, the trials of a running search `so_far` (the start first) say how many go
    on past the first rung, and the epochs past it scale by that against the simulation
    (went_on_share)."""
    rungs, factor = settings.rungs(), settings.reduction_factor
    if not rungs:
        return itertools.repeat(float(settings.max_epochs))
    if not SCHEDULER_TRAITS[settings.scheduler].one_bracket:  # brackets: shares of each rung
        return itertools.repeat(rung_shares(rungs, settings.max_epochs, factor))
    learns = SEARCHER_TRAITS[settings.searcher].learns
    simulated = asha_epochs(rungs, settings.max_epochs, factor, learns, START_DRAWS, slots - 1)
    share = went_on_share(rungs[0], simulated, so_far[1:])
    scaled = [min(rungs[0] + share * (e - rungs[0]), settings.max_epochs) for e, _ in simulated]
    tail = statistics.fmean(scaled[len(scaled) // 2 :])
    return itertools.chain(scaled, itertools.repeat(tail))


def went_on_share(
    rung: int, simulated: Sequence[tuple[float, float]], others: Sequence[TrialSoFar]
) -> float:
    """How many of the trials after the start went on past the first `rung`, against the
    chances the simulation gave the same trials (1: as simulated), with PRIOR_TRIALS_ON more
    going on as simulated. A trial has gone on once it trains past the rung, and stopped there
    if it ended at it; one still short of it, or cut short before it, has not been decided."""
    decided = [
        (trial.epochs > rung, chance)
        for trial, (_, chance) in zip(others, simulated, strict=False)
        if trial.epochs > rung or (trial.epochs == rung and not trial.running)
    ]
    went_on = sum(on for on, _ in decided)
    expected = sum(chance for _, chance in decided)
    return (went_on + PRIOR_TRIALS_ON) / (expected + PRIOR_TRIALS_ON)


@functools.cache
def asha_epochs(
    rungs: tuple[int, ...], max_epochs: int, factor: int, learns: bool, start_draws: int,
    beside: int = 0,
) -> tuple[tuple[float, float], ...]:  # fmt: skip
    """Epochs each of the first SIMULATED_TRIALS trials after the start can expect under ASHA,
    and its chance to go on past the first rung: Ray's rule played on random scores. At a rung
    a trial goes on if its score is no worse than the 1 - 1/factor quantile of the scores that
    reached the rung before it; the start (the best of `start_draws` random draws) always goes
    on, and reaches every rung first but for the `beside` trials that start with it, each of
    which gets there before it at LEAD_CHANCE (those that do, in the order they started). A
    trial's score is drawn once, so it ranks the same at every rung. Early trials meet few
    rivals and mostly go on, so a short search trains more epochs per trial than the shares
    1/factor^k say; a searcher that `learns` proposes better trials once past its random
    start, and more of them go on (journal entry 18)."""
    rng = random.Random(0)  # the same expectation every run: a plan, not a draw
    total, went_on = [0.0] * SIMULATED_TRIALS, [0] * SIMULATED_TRIALS
    for _ in range(ASHA_SIMULATIONS):
        start = rng.random() ** (1 / start_draws)  # the best of start_draws: P(< x) = x^draws
        leads = [rng.random() < LEAD_CHANCE for _ in range(beside)]
        reached: list[list[float]] = [[] for _ in rungs]
        for trial in arrival_order(leads):
            if trial is None:  # the start reaches the rungs: every later trial meets it there
                for scores in reached:
                    bisect.insort(scores, start)
                continue
            draws = LEARNED_DRAWS if learns and trial >= RANDOM_TRIALS else 1
            score = max(rng.random() for _ in range(draws))
            stopped = asha_trial(score, rungs, reached, factor)
            total[trial] += stopped or max_epochs
            went_on[trial] += stopped != rungs[0]
    pairs = zip(total, went_on, strict=True)
    return tuple((t / ASHA_SIMULATIONS, n / ASHA_SIMULATIONS) for t, n in pairs)


def arrival_order(leads: list[bool]) -> list[int | None]:
    """The order in which the trials after the start (their indices) and the start (None) reach
    the rungs: the trials beside the start that lead it (`leads`), the start, the rest."""
    beside = range(len(leads))
    return [
        *(t for t in beside if leads[t]),
        None,
        *(t for t in beside if not leads[t]),
        *range(len(leads), SIMULATED_TRIALS),
    ]


def asha_trial(
    score: float, rungs: tuple[int, ...], reached: list[list[float]], factor: int
) -> int | None:
    """The epoch at which ASHA stops a trial of `score` (None: it trains to the end), given the
    sorted scores that `reached` each rung before it; records the trial where it gets to."""
    for rung, scores in zip(rungs, reached, strict=True):
        if stops_at_rung(score, scores, factor):
            return rung
    return None


def stops_at_rung(score: float, scores: list[float], factor: int) -> bool:
    """Ray's ASHA rule at one rung: whether a trial of `score` stops there, given the sorted
    `scores` that reached the rung before it (the first to reach it goes on); records its score
    among them."""
    stops = bool(scores) and score < quantile(scores, 1 - 1 / factor)
    bisect.insort(scores, score)
    return stops


def quantile(ordered: list[float], q: float) -> float:
    """The q quantile of sorted values, interpolated as numpy's (and so Ray's) percentile."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rung_shares(rungs: tuple[int, ...], max_epochs: int, factor: int) -> float:
    """Epochs an average trial trains where a 1/factor share of trials goes on past each rung
    (HyperBand's brackets, and ASHA in the long run)."""
    edges = [*rungs, max_epochs]
    later = sum((b - a) / factor ** (i + 1) for i, (a, b) in enumerate(pairwise(edges)))
    return edges[0] + later


def search_forecast(
    seconds: float, free_at: list[float], trials: Iterable[tuple[float, float]]
) -> tuple[int, float]:
    """Trials a search starts in the next `seconds`, and the epochs they train: `trials` in the
    order they start, each taking the slot that frees first, as Tune's loop hands them out;
    `free_at` says when each slot is next free (a new search: all at 0, and its first trial is
    the starting configuration, the yardstick that ASHA never stops). Each trial is (epochs,
    seconds it holds its slot). A trial that starts before the end counts, as the run counts
    it, with the epochs it has time for (journal entry 22: the trials the time limit cuts short
    are most of what a plan that counted only trials that fit whole missed)."""
    free = list(free_at)  # when each slot is next free: a heap
    heapq.heapify(free)
    started, epochs = 0, 0.0
    for trial_epochs, cost in trials:
        begins = heapq.heappop(free)
        if not begins < seconds:
            break
        trained = min(
            1.0, max(seconds - begins - TRIAL_OVERHEAD_S, 0.0) / (cost - TRIAL_OVERHEAD_S)
        )
        started, epochs = started + 1, epochs + trial_epochs * trained
        heapq.heappush(free, begins + cost)
    return started, epochs


def replanned_trials(
    settings: RunSettings,
    priced_trial: float,
    so_far: list[TrialSoFar],
    slots: int,
    seconds_left: float,
) -> int | None:
    """The trials a search will have started by its end, re-planned from what its trials
    report (`so_far`: those started, in the order they started, the start first): the plan's
    forecast again, with the price of a trial to come (`priced_trial`: an average trial's
    seconds per epoch over the space) scaled by how the reported paces compare with the
    prices of the same configurations; the running trials holding their slots, at their own
    pace, for the epochs they can still expect (to their next rung at least); the trials to
    come expecting what ASHA lets trials in their place train, as many going on past the first
    rung as have so far against the simulation (expected_epochs). None before any trial has
    reported an epoch. Issue 40: the plan's timing of a few batches read up to a quarter slow
    inside runs (journal entry 27); a few trials' own paces would not do for the trials to
    come, as the first draws of a space whose costs span 4x may all be cheap ones (entry 23)."""
    reported = [(t.pace * t.epochs, t.priced * t.epochs) for t in so_far if t.pace is not None]
    priced = sum(price for _, price in reported)
    if priced <= 0:  # nothing reported yet
        return None
    speed = sum(paced for paced, _ in reported) / priced
    trial_pace = speed * priced_trial
    expected, rungs = expected_epochs(settings, slots, so_far), settings.rungs()
    busy = []
    for i, trial in enumerate(so_far):
        due = float(settings.max_epochs) if i == 0 else next(expected)
        if trial.running:
            stop = next_rung(rungs, settings.max_epochs, trial.epochs)
            pace = speed * trial.priced if trial.pace is None else trial.pace
            busy.append(max(max(due, stop) - trial.epochs, 0.0) * (pace + EPOCH_OVERHEAD_S))
    busy += [0.0] * max(slots - len(busy), 0)
    to_come = ((epochs, trial_seconds(epochs, trial_pace)) for epochs in expected)
    return len(so_far) + search_forecast(seconds_left, busy, to_come)[0]


def next_rung(rungs: tuple[int, ...], max_epochs: int, epochs: int) -> int:
    """The earliest epoch at which a trial that has trained `epochs` and still runs can end:
    its scheduler's next rung, or max_epochs."""
    return min([rung for rung in rungs if rung > epochs] + [max_epochs])


@dataclass(frozen=True)
class CostModel:
    """Seconds per training batch of any configuration, from one or two timed ones: a part per
    batch (kernel launches, the optimiser's update, Python) and a part per element its images'
    forward passes write (src.model.forward_elements: memory traffic, which predicted CPU epoch
    times better than FLOPs: benchmarks/cost_fit.py). A validation batch costs a third of a
    training batch."""

    per_batch: float
    per_element: float
    train_images: int
    val_images: int

    @classmethod
    def fit(cls, timed: list[tuple[dict[str, Any], float]], train: int, val: int) -> CostModel:
        """Through (config, seconds per batch) points: with two, both parts; with one, or
        where two would give a part below zero (timing noise, or time growing faster than the
        elements), time in proportion to the elements, through the first point (the start:
        it trains every epoch of the search)."""
        work = [config["batch_size"] * elements_of(config) for config, _ in timed]
        seconds = [second for _, second in timed]
        proportional = cls(0.0, seconds[0] / work[0], train, val)
        if len(timed) == 1 or work[1] == work[0]:
            return proportional
        per_element = (seconds[1] - seconds[0]) / (work[1] - work[0])
        per_batch = seconds[0] - per_element * work[0]
        if per_element < 0 or per_batch < 0:
            return proportional
        return cls(per_batch, per_element, train, val)

    def batch_seconds(self, config: dict[str, Any]) -> float:
        return self.per_batch + self.per_element * config["batch_size"] * elements_of(config)

    def epoch_seconds(self, config: dict[str, Any]) -> float:
        batches = batches_per_epoch(self.train_images, self.val_images, config["batch_size"])
        return self.batch_seconds(config) * batches


def batches_per_epoch(train: int, val: int, batch_size: int) -> float:
    """Training batches of an epoch, and its validation batches at a third of one each (a
    forward pass)."""
    return math.ceil(train / batch_size) + math.ceil(val / batch_size) / 3


def elements_of(config: dict[str, Any]) -> float:
    return forward_elements(config, config["image_size"])


def costlier(config: dict[str, Any], name: str, value: Any) -> tuple[float, float]:
    """What orders `value`s of `name` by cost: the elements written, then the number itself
    (a larger kernel writes as much, but computes more)."""
    number = value if isinstance(value, int | float) else 0
    return elements_of({**config, name: value}), float(number)


def costliest(settings: RunSettings, start: dict[str, Any]) -> dict[str, Any]:
    """The start with every shape hyperparameter and the image size at the value its space
    allows that makes the network write the most (the largest number; the costliest block
    type): the second point of the cost model. The batch size stays the start's."""
    config = dict(start)
    for name in (*SHAPE_KEYS, "image_size"):
        kind, args = settings.space.get(name, ("", None))
        options = args if kind == "choice" else [args[1]] if kind == "int" else []
        if options:
            config[name] = max(options, key=lambda value: costlier(config, name, value))
    return config


def drawn_configs(settings: RunSettings, start: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """`n` configurations drawn from the space as a random searcher draws them (HyperOpt's
    first third of trials; TPE later drifts towards what did well), with the run's seed."""
    rng = np.random.default_rng(settings.seed)
    draw = {
        "choice": lambda values: values[rng.integers(len(values))],
        "int": lambda bounds: int(rng.integers(bounds[0], bounds[1] + 1)),
        "uniform": lambda bounds: float(rng.uniform(*bounds)),
        "loguniform": lambda bounds: float(np.exp(rng.uniform(*np.log(bounds)))),
    }
    space = settings.space.items()
    return [{**start, **{name: draw[kind](args) for name, (kind, args) in space}} for _ in range(n)]


def price_space(
    settings: RunSettings,
    start: dict[str, Any],
    spec: DataSpec,
    trials_on: tuple[torch.device, int],
) -> tuple[float, float, CostModel]:
    """Seconds per epoch of the starting configuration (timed) and of an average drawn trial
    (the cost model through the start and the costliest configuration, both timed), each
    timed as the trials will run: on their device, so many at once (`trials_on`); and the
    cost model."""
    device, together = trials_on
    heaviest = costliest(settings, start)
    timed, train, val = [], 0, 0
    for config in [start] if heaviest == start else [start, heaviest]:
        threads = settings.cpus_per_trial
        per_batch, train, val = batch_seconds(config, spec, threads, device=device,
                                              together=together)  # fmt: skip
        timed.append((config, per_batch))
    model = CostModel.fit(timed, train, val)
    drawn = drawn_configs(settings, start, COST_SAMPLES)
    average = statistics.fmean(map(model.epoch_seconds, drawn))
    return model.epoch_seconds(start), average, model


def epoch_seconds(
    config: dict[str, Any],
    spec: DataSpec,
    threads: int,
    fit_on: tuple[str, ...] = ("train",),
    device: torch.device | None = None,
) -> float:
    """Seconds one epoch of `config` takes on `device` (default: this process's) with `threads`
    torch threads, from a few timed batches: training on the `fit_on` splits, then validation
    (a third of a training batch each) where "val" is not trained on."""
    per_batch, train, val = batch_seconds(config, spec, threads, fit_on, device)
    return per_batch * batches_per_epoch(train, val, config["batch_size"])


def batch_seconds(
    config: dict[str, Any],
    spec: DataSpec,
    threads: int,
    fit_on: tuple[str, ...] = ("train",),
    device: torch.device | None = None,
    together: int = 1,
) -> tuple[float, int, int]:
    """Seconds per training batch of `config`, timed as epoch_seconds says, and the images of
    its training and validation splits (0: "val" is trained on). `together`: timed in that many
    threads at once, each with its own model and batches, as the trials that share this
    machine's cores or its GPU will run (one beside another runs slower than alone): the mean
    of theirs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # for every thread of this process: as in one trial
    try:
        device = device or local_device()
        data = open_trial_data(spec, config, device, fit_on, graphs_wanted(device))
        start_line = threading.Barrier(together)
        timed: list[float] = []

        def time_one() -> None:
            model = build_model(config, len(data.class_names), device)
            optimizer, _ = make_optimizer(model, config, 1, len(data.train))
            timed.append(time_batches(model, data.train, optimizer, Amp.for_device(device),
                                      start_line))  # fmt: skip

        workers = [threading.Thread(target=time_one) for _ in range(together - 1)]
        for worker in workers:
            worker.start()
        time_one()
        for worker in workers:
            worker.join()
        val = data.val.num_images if data.val is not None else 0
        return statistics.fmean(timed), data.train.num_images, val
    finally:
        torch.set_num_threads(previous)


def time_batches(
    model: torch.nn.Module,
    stream: Any,
    optimizer: Any,
    amp: Amp,
    start_line: threading.Barrier | None = None,
) -> float:
    """Seconds per training batch: the fastest of TIMING_ROUNDS rounds of up to TIMED_BATCHES
    batches each, after warming up (the first batch: allocations, kernel choice; a CUDA graph's
    warm-up and capture: src/step.py), with the step a trial will use; where others are timed
    beside it, all start the timed batches together (`start_line`)."""
    model.train()
    step = make_step(model, optimizer, amp, 0.0)
    warm = 1 + (WARMUP_STEPS + 1 if isinstance(step, GraphedStep) else 0)
    warm = min(warm, len(stream) - 1)  # a tiny data set: time what there is
    batches = iter(stream)
    for x, y in itertools.islice(batches, warm):
        step(x, y)
    synchronize(stream.images.device)
    if start_line is not None:
        start_line.wait()
    rounds = []
    for _ in range(TIMING_ROUNDS):
        start, timed = time.perf_counter(), 0
        for x, y in itertools.islice(batches, TIMED_BATCHES):
            step(x, y)  # the batch's augmentation, made as the loop asks for it, is timed too
            timed += 1
        synchronize(stream.images.device)
        if timed:
            rounds.append((time.perf_counter() - start) / timed)
    return min(rounds)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock reading means it is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trial_seconds(epochs: float, pace: float) -> float:
    """How long a trial of `epochs` epochs at `pace` seconds each holds its slot."""
    return epochs * (pace + EPOCH_OVERHEAD_S) + TRIAL_OVERHEAD_S


def new_search_trials(
    settings: RunSettings, pace: float, trial_pace: float, slots: int
) -> Iterator[tuple[float, float]]:
    """A new search's trials in the order they start, as search_forecast takes them: the start,
    trained every epoch at its own `pace`, then the others at `trial_pace` (an average trial's
    seconds per epoch), each for the epochs ASHA lets it expect on `slots` slots."""
    start = (settings.max_epochs, trial_seconds(settings.max_epochs, pace))
    others = ((epochs, trial_seconds(epochs, trial_pace))
              for epochs in expected_epochs(settings, slots))  # fmt: skip
    return itertools.chain([start], others)


def plan_budget(
    settings: RunSettings,
    start: dict[str, Any],
    spec: DataSpec,
    trials_on: tuple[torch.device, int] | None,
    spent: float,
) -> BudgetPlan:
    """The plan of a run with settings.time_budget, `spent` seconds into it: the search's trials
    priced over the space (`start`, the starting configuration, and the costliest timed on the
    trials' device), so many at once (`trials_on`; None: no search), and the refit's share."""
    assert settings.time_budget is not None
    total = settings.budget_seconds
    search = (settings.search_share if settings.refit else 1.0) * total if trials_on else 0.0
    refit = max(total - search - EVALUATION_RESERVE_S, 0) if settings.refit else 0.0
    if trials_on is None:
        return BudgetPlan(settings.time_budget, 0.0, math.nan, math.nan, 0, 0.0, 0, 0.0, refit)
    concurrent = trials_on[1]
    start = {**start, "seed": settings.seed}
    pace, trial_pace, cost_model = price_space(settings, start, spec, trials_on)
    to_start = new_search_trials(settings, pace, trial_pace, concurrent)
    if settings.num_samples:  # a typed count: no time limit decides it
        to_start = itertools.islice(to_start, settings.num_samples)
    trials, planned_epochs = search_forecast(max(search - spent, 0), [0.0] * concurrent, to_start)
    trials = settings.num_samples or max(trials, 1)  # the start, at the least
    expected = list(itertools.islice(expected_epochs(settings, concurrent), max(trials - 1, 1)))
    epochs = statistics.fmean(expected)  # an average trial's, for the plan's line
    return BudgetPlan(
        settings.time_budget, search, pace, trial_pace, concurrent, epochs, trials,
        planned_epochs, refit, cost_model,
    )  # fmt: skip


def epochs_that_fit(config: dict[str, Any], spec: DataSpec, threads: int, seconds: float) -> int:
    """Epochs of the final model that fit in `seconds`, at the pace of `config` measured in this
    process on the train + validation images (at least one)."""
    pace = epoch_seconds(config, spec, threads, fit_on=("train", "val"))
    return max(1, math.floor(seconds / pace))
