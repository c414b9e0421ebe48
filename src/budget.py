"""Minutes in, trials and epochs out: how a `--time-budget` run spends its time.

Users think in minutes; trials x epochs is hypertune's business. Before the search starts,
hypertune times a few batches of the starting configuration on this machine, gives the search
`--search-share` of the budget (Ray Tune's `time_budget_s` ends it there) with as many trials as
fit at that pace, and gives the final model what is left: once the search has chosen a
configuration, the refit times that one and trains as many epochs as the remaining time holds.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from typing import Any

import torch

from src.config import DataSpec, RunSettings, asha_rungs
from src.data import open_trial_data
from src.device import Amp, local_device
from src.model import build_model
from src.train import make_optimizer

TIMED_BATCHES = 6  # batches timed (after one warm-up) to estimate an epoch: about a second
EVALUATION_RESERVE_S = 15.0  # after the refit: saving the model, scoring the test split
# Ray's share of a trial besides its epochs (starting or reusing a worker, a checkpoint and a
# report per epoch), estimated: it decides the plan where epochs take well under a second.
TRIAL_OVERHEAD_S = 1.0
EPOCH_OVERHEAD_S = 0.2


@dataclass(frozen=True)
class BudgetPlan:
    """How a time budget is spent: recorded in hypertune.json, printed at the start."""

    minutes: float
    search_seconds: float  # the search's share, from the start of the run
    epoch_seconds: float  # one epoch (train + validation) of the starting configuration, timed
    concurrent: int  # trials at once
    trial_epochs: float  # epochs an average trial trains under its scheduler
    trials: int  # what fits (or what --num-samples asked for)
    refit_seconds: float  # the rest, less the evaluation at the end

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
            f"{self.epoch_seconds:.1f} s per epoch measured), then the final model "
            f"{self.refit_seconds / 60:.1f} min (its epochs follow from its own measured pace)."
        )


def expected_trial_epochs(settings: RunSettings) -> float:
    """Epochs an average trial trains: under ASHA a 1/reduction_factor share of trials goes on
    past each rung; every other scheduler trains trials for max_epochs."""
    if settings.scheduler not in ("asha", "hyperband"):
        return float(settings.max_epochs)
    grace = 1 if settings.scheduler == "hyperband" else settings.grace_period  # its first rung
    rungs = asha_rungs(settings.max_epochs, grace, settings.reduction_factor)
    edges = [*rungs, settings.max_epochs]
    later = sum(
        (b - a) / settings.reduction_factor ** (i + 1) for i, (a, b) in enumerate(pairwise(edges))
    )
    return edges[0] + later


def size_factor(settings: RunSettings, start_size: int) -> float:
    """What an average trial's epoch costs, relative to the starting configuration's: about its
    pixels, with a searched image size drawn evenly from its choices (1 when not searched)."""
    sizes = settings.searched_sizes() or [start_size]
    return sum((size / start_size) ** 2 for size in sizes) / len(sizes)


def trials_that_fit(settings: RunSettings, epochs_affordable: float) -> int:
    """Trials within `epochs_affordable`: the starting configuration trains every epoch (it is
    the yardstick; ASHA never stops it), the others as many as an average trial."""
    others = (epochs_affordable - settings.max_epochs) / expected_trial_epochs(settings)
    return 1 + max(0, math.floor(others))


def epoch_seconds(
    config: dict[str, Any],
    spec: DataSpec,
    threads: int,
    fit_on: tuple[str, ...] = ("train",),
    device: torch.device | None = None,
) -> float:
    """Seconds one epoch of `config` takes on `device` (default: this process's) with `threads`
    torch threads, from a few timed batches: training on the `fit_on` splits, then validation
    where "val" is not trained on."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        device = device or local_device()
        data = open_trial_data(
            spec, config["batch_size"], config["seed"], device, config["jitter"], fit_on
        )
        model = build_model(config, len(data.class_names), device)
        optimizer, _ = make_optimizer(model, config, 1, len(data.train))
        amp = Amp.for_device(device)
        per_batch = time_batches(model, data.train, optimizer, amp)
        seconds = per_batch * len(data.train)
        if data.val is not None:
            # A validation batch is a forward pass: about a third of a training step.
            seconds += per_batch / 3 * len(data.val)
        return seconds
    finally:
        torch.set_num_threads(previous)


def time_batches(model: torch.nn.Module, stream: Any, optimizer: Any, amp: Amp) -> float:
    """Seconds per training batch, over up to TIMED_BATCHES batches after a warm-up batch."""
    model.train()
    start, timed = time.perf_counter(), 1
    for i, (x, y) in enumerate(itertools.islice(stream, TIMED_BATCHES + 1)):
        if i == 1:  # the first batch warms up (allocations, kernel choice)
            synchronize(x.device)
            start = time.perf_counter()
        with amp.autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        amp.backward_step(loss, optimizer)
        timed = max(i, 1)
    synchronize(stream.images.device)
    return (time.perf_counter() - start) / timed


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock reading means it is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plan_budget(
    settings: RunSettings,
    start: dict[str, Any],
    spec: DataSpec,
    trials_on: tuple[torch.device, int] | None,
    spent: float,
) -> BudgetPlan:
    """The plan of a run with settings.time_budget, `spent` seconds into it: the search's trials
    at the pace of `start` (the starting configuration) on the trials' device, so many at once
    (`trials_on`; None: no search), and the refit's share."""
    assert settings.time_budget is not None
    total = settings.time_budget * 60
    search = (settings.search_share if settings.refit else 1.0) * total if trials_on else 0.0
    refit = max(total - search - EVALUATION_RESERVE_S, 0) if settings.refit else 0.0
    if trials_on is None:
        return BudgetPlan(settings.time_budget, 0.0, math.nan, 0, 0.0, 0, refit)
    device, concurrent = trials_on
    config = {**start, "seed": settings.seed}
    at_size = replace(spec, image_size=start["image_size"])
    pace = epoch_seconds(config, at_size, settings.cpus_per_trial, device=device)
    per_trial = TRIAL_OVERHEAD_S / expected_trial_epochs(settings)  # spread over its epochs
    trial_pace = pace * size_factor(settings, start["image_size"])
    affordable = max(search - spent, 0) * concurrent / (trial_pace + EPOCH_OVERHEAD_S + per_trial)
    trials = settings.num_samples or trials_that_fit(settings, affordable)
    return BudgetPlan(
        settings.time_budget, search, pace, concurrent, expected_trial_epochs(settings), trials,
        refit,
    )  # fmt: skip


def epochs_that_fit(config: dict[str, Any], spec: DataSpec, threads: int, seconds: float) -> int:
    """Epochs of the final model that fit in `seconds`, at the pace of `config` measured in this
    process on the train + validation images (at least one)."""
    pace = epoch_seconds(config, spec, threads, fit_on=("train", "val"))
    return max(1, math.floor(seconds / pace))
