"""Ray Tune wiring: resources, ASHA + HyperOpt, the Tuner, and what is printed at the end."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from loguru import logger

from src.config import BASELINE, METRIC, MODE, SEARCH_SPACE, Grid, RunSettings
from src.data import DataSpec
from src.results import EXPERIMENT_INFO, HYPERPARAMETERS, summarize, write_summary
from src.train import train_cnn

# Without this Ray >= 2.5x writes an auth token under ~/.ray on first start.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Short trials checkpoint every few seconds by design; Tune would warn about it on every epoch.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.hyperopt import HyperOptSearch


class SearchError(Exception):
    """The search ran but produced nothing usable; the message says where to look."""


@dataclass(frozen=True)
class TrialResources:
    cpu: int
    gpu: float
    concurrent: int  # how many trials fit on the cluster at once


def start_ray(address: str | None) -> None:
    """Connect to `address` (or RAY_ADDRESS) if given, else start a local Ray."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True)


def trial_resources(settings: RunSettings, cluster: dict[str, float]) -> TrialResources:
    """0.5 GPU per trial where the cluster has GPUs; CPUs only where it has none
    (asking for a GPU that does not exist makes Ray wait forever)."""
    cpus, gpus = int(cluster.get("CPU", 0)), cluster.get("GPU", 0.0)
    by_cpu = cpus // settings.cpus_per_trial
    if gpus > 0 and settings.gpus_per_trial > 0:
        fits = min(by_cpu, math.floor(gpus / settings.gpus_per_trial + 1e-9))
        resources = TrialResources(settings.cpus_per_trial, settings.gpus_per_trial, fits)
    else:
        resources = TrialResources(settings.cpus_per_trial, 0.0, by_cpu)
    if resources.concurrent < 1:
        raise ValueError(
            f"A trial asks for {settings.cpus_per_trial} CPU(s) and {resources.gpu} GPU, but the "
            f"Ray cluster has {cpus} CPU(s) and {gpus} GPU(s). Lower --cpus-per-trial or "
            f"--gpus-per-trial."
        )
    return resources


def to_tune_space(space: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """`SEARCH_SPACE` (plain data) as Ray Tune distributions."""
    samplers = {"uniform": tune.uniform, "loguniform": tune.loguniform}
    return {
        name: tune.choice(args) if kind == "choice" else samplers[kind](*args)
        for name, (kind, args) in space.items()
    }


def make_trainable(
    settings: RunSettings, data_spec: DataSpec, resources: TrialResources
) -> type[tune.Trainable]:
    return tune.with_resources(
        tune.with_parameters(train_cnn, data_spec=data_spec, max_epochs=settings.max_epochs),
        {"cpu": resources.cpu, "gpu": resources.gpu},
    )


def search_plan(settings: RunSettings, concurrent: int) -> tuple[dict[str, Any], tune.TuneConfig]:
    """ASHA + HyperOpt over SEARCH_SPACE; the other hyperparameters stay at BASELINE."""
    # TPE learns only from finished trials: limiting concurrency to what runs at once keeps it
    # from proposing every trial up front (which would make it random search).
    searcher = ConcurrencyLimiter(
        HyperOptSearch(
            points_to_evaluate=[{k: BASELINE[k] for k in SEARCH_SPACE}],
            random_state_seed=settings.seed,
        ),
        max_concurrent=concurrent,
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=settings.max_epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
    )
    space = {**BASELINE, **to_tune_space(SEARCH_SPACE), "seed": settings.seed}
    config = tune.TuneConfig(
        search_alg=searcher, scheduler=scheduler, num_samples=settings.num_samples
    )
    return space, config


def grid_plan(
    grid: Grid, settings: RunSettings, concurrent: int
) -> tuple[dict[str, Any], tune.TuneConfig]:
    """Every (x, y, seed) cell trained for exactly max_epochs: FIFO, nobody stopped early."""
    seeds = [settings.seed + i for i in range(grid.repeats)]
    space = {
        **BASELINE,
        **grid.fixed,
        **{name: tune.grid_search(values) for name, values in grid.axes.items()},
        "seed": tune.grid_search(seeds),
    }
    return space, tune.TuneConfig(max_concurrent_trials=concurrent)


def build_tuner(
    settings: RunSettings,
    data_spec: DataSpec,
    grid: Grid | None = None,
    callbacks: list[tune.Callback] | None = None,
) -> tune.Tuner:
    resources = trial_resources(settings, ray.cluster_resources())
    logger.info(
        f"{resources.cpu} CPU + {resources.gpu} GPU per trial, {resources.concurrent} at once; "
        f"results in {settings.storage_path / settings.name}"
    )
    if grid is None:
        space, tune_config = search_plan(settings, resources.concurrent)
    else:
        space, tune_config = grid_plan(grid, settings, resources.concurrent)
    tune_config.metric, tune_config.mode = METRIC, MODE
    tune_config.trial_dirname_creator = lambda trial: f"trial_{trial.trial_id}"
    return tune.Tuner(
        make_trainable(settings, data_spec, resources),
        param_space=space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=str(settings.storage_path),
            # Keep the best checkpoint (for evaluation) and always the latest (for resuming).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE
            ),
            callbacks=callbacks,
        ),
    )


def write_experiment_info(settings: RunSettings, grid: Grid | None) -> None:
    """What kind of experiment this is, for `src.analysis` (grid: fixed epochs; search: ASHA)."""
    folder = settings.storage_path / settings.name
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "kind": "search" if grid is None else "grid",
        "settings": settings.as_dict(),
        "grid": None if grid is None else asdict(grid),
    }
    (folder / EXPERIMENT_INFO).write_text(json.dumps(info, indent=1, default=str))


def run_experiment(
    settings: RunSettings,
    data_spec: DataSpec,
    grid: Grid | None = None,
    callbacks: list[tune.Callback] | None = None,
) -> pd.DataFrame:
    """A search (grid=None) or a fixed-epoch grid; writes experiment_summary.csv, prints the
    best trial and returns the summary."""
    start_ray(settings.address)
    tuner = build_tuner(settings, data_spec, grid, callbacks)
    write_experiment_info(settings, grid)
    table = summarize(tuner.fit(), settings.max_epochs)
    path = write_summary(table, settings.storage_path / settings.name)
    if table["best_val_accuracy"].isna().all():
        raise SearchError(
            f"No trial finished an epoch. Each trial's error.txt under "
            f"{settings.storage_path / settings.name} says why; the summary is at {path}."
        )
    report_best(table)
    logger.info(f"Per-trial summary ({len(table)} trials): {path}")
    return table


def report_best(table: pd.DataFrame) -> None:
    best = table.iloc[0]
    config = ", ".join(
        f"{name}={best[name]:.4g}" if isinstance(best[name], float) else f"{name}={best[name]}"
        for name in HYPERPARAMETERS
    )
    logger.info(
        f"Best trial {best['trial_id']}: best val_accuracy {best['best_val_accuracy']:.4f} "
        f"at epoch {best['best_epoch']:.0f} of {best['epochs']} ({best['status']}); {config}"
    )
