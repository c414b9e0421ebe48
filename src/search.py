"""Ray Tune wiring: resources, searchers and schedulers, the Tuner, and what it leaves behind.

Searchers (--searcher) propose configurations: hyperopt (TPE, the default), random, de
(Nevergrad's differential evolution), bohb (TuneBOHB). Schedulers (--scheduler) decide how long
each trial trains: asha (the default; stops the weak at rungs), fifo (every trial runs
max_epochs), pbt (population-based training: the weak continue from the strong with perturbed
lr / weight decay / dropout), hyperband (HyperBandForBOHB, BOHB's own).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
from loguru import logger
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import ConcurrencyLimiter, SearchAlgorithm, Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.stopper import TimeoutStopper

from src.budget import BudgetPlan
from src.commands import resume_command
from src.config import (
    METRIC,
    MODE,
    PBT_MUTABLE,
    SCHEDULER_TRAITS,
    DataSpec,
    Grid,
    RunSettings,
    is_start_point,
    start_config,
    start_point,
)
from src.device import forced_cpu, gpu_problem
from src.errors import HypertuneError, Interrupted
from src.progress import PlanFollower, ProgressLine
from src.results import (
    ExperimentFolder,
    record_actual,
    summarize,
    trial_folder_name,
    write_experiment_info,
    write_summary,
)
from src.trainable import train_cnn

# A new trial reuses a finished trial's worker process instead of starting (and importing torch
# in) a new one: seconds per trial, which short trials feel (benchmarks/OPTIMISATIONS.md).
REUSE_ACTORS = True


class SearchError(HypertuneError):
    """The search ran but produced nothing usable; the message says where to look."""


class ConcurrencyMonitor(tune.Callback):
    """Watches the Tune loop: how many trials ran at once, what each held, and how long each
    held its slot, from the moment Tune started it to its last report (a worker started or
    reused, data and model set up, every epoch with its checkpoint and report)."""

    def __init__(self) -> None:
        self.max_running = 0
        self.resources: set[tuple[tuple[str, float], ...]] = set()
        self.started: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        running = [t for t in trials if t.status == "RUNNING"]
        self.max_running = max(self.max_running, len(running))
        for trial in running:
            required = trial.placement_group_factory.required_resources
            self.resources.add(tuple(sorted(required.items())))

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.monotonic())

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any
    ) -> None:
        self.last_seen[trial.trial_id] = time.monotonic()

    def slot_seconds(self) -> float:
        """Seconds the trials of this session held their slots, all together."""
        ids = self.started.keys() & self.last_seen.keys()
        return sum(self.last_seen[i] - self.started[i] for i in ids)


@dataclass(frozen=True)
class TrialResources:
    cpu: int
    gpu: float
    concurrent: int  # how many trials fit on the cluster at once


# Tune saves the experiment state (which checkpoint each trial resumes from, which trials the
# searcher made) at most every 10 s by default, while trials delete superseded checkpoints at
# once: after a kill -9 a trial could point at a checkpoint that is gone. Saving every second
# (a few kB here) narrows that window to about a second; keeping two checkpoints closes most of
# what is left.
EXPERIMENT_STATE_SECONDS = 1
CHECKPOINTS_KEPT = 2


def start_ray(address: str | None, verbose: bool = True) -> None:
    """Connect to `address` (or RAY_ADDRESS) if given, else start a local Ray. The `src`
    package travels with the job, so workers on every node import the same code. Unless
    `verbose`, Ray keeps its info lines and the workers' output to itself: a trial's errors
    still reach the user through its error.txt and the summary."""
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = str(EXPERIMENT_STATE_SECONDS)  # read by fit()
    if not ray.is_initialized():
        package = Path(__file__).resolve().parent
        ray.init(
            address=address,
            include_dashboard=False,
            runtime_env={"py_modules": [package]},
            logging_level=logging.INFO if verbose else logging.WARNING,
            log_to_driver=verbose,
        )
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (kill, a batch scheduler, a shutdown) stops a run the way Ctrl-C does:
            # Tune saves the experiment one last time, and --resume continues it. Ray's own
            # handler, set by ray.init, would exit on the spot.
            signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))


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
        raise HypertuneError(
            f"A trial asks for {settings.cpus_per_trial} CPU(s) and {resources.gpu} GPU, but the "
            f"Ray cluster has {cpus} CPU(s) and {gpus} GPU(s). Lower --cpus-per-trial or "
            f"--gpus-per-trial."
        )
    return resources


def to_tune_space(space: dict[str, Any]) -> dict[str, Any]:
    """A search space as plain data (SEARCH_SPACE, or a --space file) as Ray Tune
    distributions. `int` bounds are inclusive."""
    samplers = {
        "choice": lambda *values: tune.choice(list(values)),
        "uniform": tune.uniform,
        "loguniform": tune.loguniform,
        "int": lambda low, high: tune.randint(low, high + 1),
    }
    return {name: samplers[kind](*args) for name, (kind, args) in space.items()}


def starting_points(settings: RunSettings) -> list[dict[str, Any]]:
    """The starting configuration as every searcher's first trial, where the space holds it."""
    point = start_point(settings)
    return [] if point is None else [point]


def make_trainable(
    settings: RunSettings, data_spec: DataSpec, resources: TrialResources
) -> type[tune.Trainable]:
    return tune.with_resources(
        tune.with_parameters(
            train_cnn,
            data_spec=data_spec,
            max_epochs=settings.max_epochs,
            start=start_config(settings),
        ),
        {"cpu": resources.cpu, "gpu": resources.gpu},
    )


Plan = tuple[dict[str, Any], tune.TuneConfig]  # param_space and how to search it


class SearchTimeLimit(TimeoutStopper):
    """Tune's time limit (time_budget_s), except that it never ends a search before one of its
    trials has reported an epoch: on a busy machine, starting the first workers can take longer
    than a small budget's search share, and a search with no result has nothing to refit.
    Resumable as Tune's is: the time left is saved with the experiment."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.reported = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.reported = True
        return False

    def stop_all(self) -> bool:
        return bool(super().stop_all()) and self.reported


class ASHAKeepingStart(ASHAScheduler):
    """ASHA that never stops the starting configuration: it is the yardstick every other trial
    is measured against at the same epoch, so it trains every epoch. Its results still count
    at the rungs, so the other trials are judged as before."""

    def __init__(self, start: dict[str, Any] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start, self.start_trial = start, None  # the first trial with its values

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        if self.start_trial is None and is_start_point(trial.config, self.start):
            self.start_trial = trial.trial_id

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and trial.trial_id == self.start_trial:
            return TrialScheduler.CONTINUE  # at its last epoch the trainable ends by itself
        return str(decision)


def asha(settings: RunSettings) -> ASHAScheduler:
    return ASHAKeepingStart(
        start_point(settings),
        time_attr="training_iteration",
        max_t=settings.max_epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
    )


def hyperopt(settings: RunSettings, concurrent: int) -> ConcurrencyLimiter:
    """TPE, starting from DEFAULT_START. It learns only from finished trials: limiting concurrency
    to what runs at once keeps it from proposing every trial up front (random search)."""
    searcher = HyperOptSearch(
        points_to_evaluate=starting_points(settings),
        random_state_seed=settings.seed,
        # HyperOpt's default of 20 random trials before TPE starts would make a 10-trial search
        # pure random search; a third of the trials (the start included) are random here.
        n_initial_points=max(3, expected_trials(settings, None) // 3),
    )
    return ConcurrencyLimiter(searcher, max_concurrent=concurrent)


def differential_evolution(settings: RunSettings, concurrent: int) -> ConcurrencyLimiter:
    """Nevergrad's two-points DE, starting from DEFAULT_START. It gets the space itself (not through
    the Tuner) so that its random state can be seeded."""
    import nevergrad as ng
    from ray.tune.search.nevergrad import NevergradSearch

    space: Any = NevergradSearch.convert_search_space(to_tune_space(settings.space))
    space.random_state = np.random.RandomState(settings.seed)
    searcher = NevergradSearch(
        optimizer=ng.optimizers.TwoPointsDE,
        space=space,
        metric=METRIC,
        mode=MODE,
        points_to_evaluate=starting_points(settings),
    )
    return ConcurrencyLimiter(searcher, max_concurrent=concurrent)


def bohb(settings: RunSettings, concurrent: int) -> ConcurrencyLimiter:
    """BOHB's kernel-density model, fed by HyperBand's brackets (its paired scheduler)."""
    from src.bohb import ResumableBOHB

    searcher = ResumableBOHB(points_to_evaluate=starting_points(settings), seed=settings.seed)
    return ConcurrencyLimiter(searcher, max_concurrent=concurrent)


def random_search(settings: RunSettings, concurrent: int) -> BasicVariantGenerator:
    return BasicVariantGenerator(
        points_to_evaluate=starting_points(settings),
        random_state=settings.seed,
        max_concurrent=concurrent,
    )


SEARCHER_FACTORIES: dict[str, Callable[[RunSettings, int], SearchAlgorithm | Searcher]] = {
    "hyperopt": hyperopt,
    "random": random_search,
    "de": differential_evolution,
    "bohb": bohb,
}


class PBTWithinMaxEpochs(PopulationBasedTraining):
    """PBT that leaves a trial alone at its last epoch. Stock PBT also exploits there: the
    trial restarts from the donor's checkpoint with nothing left to train, so it ends as a
    copy of the donor, its last result the donor's (trial id included), at the cost of a
    worker restart. The donor pool is unchanged: PBT never clones a finished trial. Time is
    counted in epochs (training iterations)."""

    def __init__(self, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(time_attr="training_iteration", **kwargs)
        self.max_epochs = max_epochs

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if result.get("training_iteration", 0) >= self.max_epochs:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


def pbt(settings: RunSettings) -> PopulationBasedTraining:
    """Every grace_period epochs, a trial in the bottom quarter continues from a top-quarter
    trial's checkpoint (its architecture and image size included) with lr, weight decay and
    dropout perturbed or resampled from the space."""
    space = to_tune_space(settings.space)
    return PBTWithinMaxEpochs(
        settings.max_epochs,
        perturbation_interval=settings.grace_period,
        hyperparam_mutations={k: space[k] for k in PBT_MUTABLE if k in space},
    )


def hyperband(settings: RunSettings) -> TrialScheduler:
    from src.bohb import ResumableHyperBand

    return ResumableHyperBand(
        time_attr="training_iteration",
        max_t=settings.max_epochs,
        reduction_factor=settings.reduction_factor,
    )


# Each of config.SCHEDULERS built for the settings; None is Tune's FIFO (every trial runs
# max_epochs).
SCHEDULER_FACTORIES: dict[str, Callable[[RunSettings], TrialScheduler | None]] = {
    "asha": asha,
    "fifo": lambda settings: None,
    "pbt": pbt,
    "hyperband": hyperband,
}


def scheduler(settings: RunSettings) -> TrialScheduler | None:
    return SCHEDULER_FACTORIES[settings.scheduler](settings)


def search_space(settings: RunSettings) -> dict[str, Any]:
    """The settings' space as Tune distributions; every other hyperparameter pinned by --set or
    at DEFAULT_START. DE holds its space itself: the Tuner gets only the constants."""
    searched = {} if settings.searcher == "de" else to_tune_space(settings.space)
    return {**start_config(settings), **searched, "seed": settings.seed}


def search_plan(settings: RunSettings, concurrent: int, trial_ceiling: int | None = None) -> Plan:
    """The settings' searcher and scheduler (default ASHA + HyperOpt) over their space; Tune
    starts settings.num_samples trials, or `trial_ceiling` where that is a plan's forecast."""
    config = tune.TuneConfig(
        search_alg=SEARCHER_FACTORIES[settings.searcher](settings, concurrent),
        scheduler=scheduler(settings),
        num_samples=trial_ceiling or expected_trials(settings, None),
    )
    return search_space(settings), config


def grid_plan(grid: Grid, settings: RunSettings, concurrent: int) -> Plan:
    """Every (x, y, seed) cell trained for exactly max_epochs: FIFO, nobody stopped early."""
    seeds = [settings.seed + i for i in range(grid.repeats)]
    space = {
        **grid.base(settings.image_size),
        **{name: tune.grid_search(values) for name, values in grid.axes.items()},
        "seed": tune.grid_search(seeds),
    }
    return space, tune.TuneConfig(max_concurrent_trials=concurrent)


def progress_line(
    settings: RunSettings,
    asha_run: bool,
    trials: int | None,
    epoch_budget: int | None,
    time_limit: float | None,
    follower: PlanFollower | None = None,
) -> ProgressLine:
    """The progress line of one experiment; it counts an ASHA trial to its next rung, and
    under a time limit the trials its `follower` re-plans."""
    rungs: tuple[int, ...] = ()
    if asha_run:
        rungs = settings.rungs()
    return ProgressLine(
        settings.name, trials, settings.max_epochs, epoch_budget, rungs, time_limit, follower
    )


def build_tuner(
    settings: RunSettings,
    data_spec: DataSpec,
    resources: TrialResources,
    plan: Plan,
    callbacks: list[tune.Callback] | None = None,
    stop: tune.Stopper | None = None,
    trials: int | None = None,
    epoch_budget: int | None = None,
    time_limit: float | None = None,
    follower: PlanFollower | None = None,
) -> tune.Tuner:
    """The Tuner of one experiment; unless verbose, with hypertune's progress line for its
    `trials` (or its `epoch_budget`) in place of Ray's console output. `time_limit` (seconds):
    the search ends there, its running trials stopped (Tune's time_budget_s); a time plan's
    `follower` re-plans its trials as they report."""
    space, tune_config = plan
    if time_limit is not None:
        stop = SearchTimeLimit(time_limit)
    if settings.mlflow is not None:
        from src.tracking import TrialRuns

        folder = ExperimentFolder.of(settings).path
        callbacks = [*(callbacks or []), TrialRuns(folder, settings.mlflow, settings.max_epochs)]
    if not settings.verbose:
        asha_run = isinstance(tune_config.scheduler, ASHAScheduler)
        line = progress_line(settings, asha_run, trials, epoch_budget, time_limit, follower)
        callbacks = [*(callbacks or []), line]
    if follower is not None:
        callbacks = [*(callbacks or []), follower]
    # Tune's newer console output prints a config box and paths even at verbose=0; its classic
    # one, at verbose=0, prints nothing. Read when fit() starts; set both ways, as the
    # environment outlives this call (and reaches child processes).
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if settings.verbose else "0"
    tune_config.metric, tune_config.mode = METRIC, MODE
    tune_config.trial_dirname_creator = lambda trial: trial_folder_name(trial.trial_id)
    tune_config.reuse_actors = REUSE_ACTORS
    return tune.Tuner(
        make_trainable(settings, data_spec, resources),
        param_space=space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=str(settings.storage_path),
            # Keep the best checkpoints (for evaluation) and always the latest (for resuming);
            # under PBT all: a trial may clone one that its donor has since moved past.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=(
                    None if SCHEDULER_TRAITS[settings.scheduler].clones else CHECKPOINTS_KEPT
                ),
                checkpoint_score_attribute=METRIC,
                checkpoint_score_order=MODE,
            ),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            callbacks=callbacks,
            stop=stop,
            verbose=2 if settings.verbose else 0,
        ),
    )


def cluster_resources(settings: RunSettings) -> TrialResources:
    """Start or join Ray, and fit the trials to what it has. GPUs that torch cannot use here
    (a local cluster) are left out, with a line that says why."""
    start_ray(settings.address, settings.verbose)
    cluster = ray.cluster_resources()
    local_gpus = cluster.get("GPU") and settings.gpus_per_trial > 0 and settings.address is None
    if local_gpus and not forced_cpu() and (problem := gpu_problem()):
        logger.warning(f"Ray sees {cluster['GPU']:g} GPU(s), but {problem} Trials run on CPUs.")
        cluster = {**cluster, "GPU": 0.0}
    resources = trial_resources(settings, cluster)
    logger.info(
        f"{resources.cpu} CPU + {resources.gpu} GPU per trial, {resources.concurrent} at once; "
        f"results in {ExperimentFolder.of(settings).path}"
    )
    return resources


def run_experiment(
    settings: RunSettings,
    data_spec: DataSpec,
    grid: Grid | None = None,
    monitor: ConcurrencyMonitor | None = None,
    callbacks: list[tune.Callback] | None = None,
    resources: TrialResources | None = None,
    time_limit: float | None = None,
    budget: BudgetPlan | None = None,
    command: str | None = None,
    trial_ceiling: int | None = None,
) -> pd.DataFrame:
    """A search (grid=None) or a fixed-epoch grid; writes experiment_summary.csv, prints the
    best trial and returns the summary. A search with a `time_limit` (seconds) ends there;
    `budget` is its plan (src/budget.py) and `command` its command line, both recorded with
    the experiment. `trial_ceiling`: the most trials Tune may start, where settings.num_samples
    is a time plan's forecast (the searcher and the progress line plan with the forecast)."""
    resources = resources or cluster_resources(settings)
    if grid is None:
        plan = search_plan(settings, resources.concurrent, trial_ceiling)
    else:
        plan = grid_plan(grid, settings, resources.concurrent)
    monitor = monitor or ConcurrencyMonitor()
    follower = None
    if budget is not None and budget.cost_model is not None and time_limit is not None:
        follower = PlanFollower(settings, budget, time_limit)
    tuner = build_tuner(
        settings, data_spec, resources, plan, [monitor, *(callbacks or [])],
        trials=expected_trials(settings, grid), time_limit=time_limit, follower=follower,
    )  # fmt: skip
    plan_figures = None if budget is None else budget.as_dict()
    write_experiment_info(settings, data_spec, grid, plan_figures, command)
    started = time.monotonic()
    results = fit(tuner)
    seconds = time.monotonic() - started
    logger.info(f"At most {monitor.max_running} trials ran at once.")
    table = finish(results, settings, grid)
    figures = search_figures(table, monitor, resources.concurrent, seconds)
    if follower is not None:  # the trials re-planned from the run's pace: [second, trials]
        figures["replanned"] = [list(step) for step in follower.history]
    record_actual(ExperimentFolder.of(settings).path, "search", figures)
    return table


def mean_of(table: pd.DataFrame, column: str) -> float | None:
    values = pd.to_numeric(table.get(column, pd.Series(dtype=float)), errors="coerce").dropna()
    return round(float(values.mean()), 3) if len(values) else None


def search_figures(
    table: pd.DataFrame, monitor: ConcurrencyMonitor, concurrent: int, seconds: float
) -> dict[str, Any]:
    """What the search did, to set beside its plan: trials, epochs and seconds, and where the
    slots' time went: trials training (their own clocks: setting up, epochs, checkpoints and
    reports), or slots standing idle (a worker starting, the searcher's next suggestion, the
    driver handling results, the search's end)."""
    trials, compute = len(table), float(table["compute_seconds"].sum())
    held = monitor.slot_seconds()
    idle = concurrent * seconds - held
    return {
        "trials": trials,
        "epochs": int(table["epochs"].sum()),
        "seconds": round(seconds, 1),
        "compute_seconds": round(compute, 1),  # the trials' own clocks, summed
        "slot_seconds": round(held, 1),  # from each trial's start to its last report, summed
        "idle_per_trial_s": round(idle / trials, 2) if trials and held else None,
        "setup_per_trial_s": mean_of(table, "setup_seconds"),  # data, model, restore
        "report_per_epoch_s": mean_of(table, "report_seconds"),  # checkpoint and report
        "slots": concurrent,
        "mean_running": round(held / seconds, 2) if seconds else None,
        "max_running": monitor.max_running,
    }


def resume_experiment(
    settings: RunSettings, data_spec: DataSpec, grid: Grid | None
) -> pd.DataFrame:
    """Continue an interrupted experiment: finished trials stay as they are, unfinished ones
    continue from their last checkpoint, and the searcher's state is restored with them."""
    resources = cluster_resources(settings)
    tuner = tune.Tuner.restore(
        str(ExperimentFolder.of(settings).path),
        trainable=make_trainable(settings, data_spec, resources),
        resume_unfinished=True,
        resume_errored=False,  # errored trials already had their --max-failures retries
    )
    return finish(fit(tuner), settings, grid)


def fit(tuner: tune.Tuner) -> tune.ResultGrid:
    """tuner.fit(), then the signal handlers as they were before it: Tune installs its own for
    SIGINT and leaves it behind, which would turn the first Ctrl-C of the refit that follows
    into a message ("ending Ray Tune run") instead of a stop."""
    main = threading.current_thread() is threading.main_thread()
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGUSR1)} if main else {}
    try:
        return tuner.fit()
    finally:
        for sig, handler in kept.items():
            signal.signal(sig, handler)


def expected_trials(settings: RunSettings, grid: Grid | None) -> int:
    if grid is None:
        assert settings.num_samples is not None  # a time budget's plan sets it
        return settings.num_samples
    return math.prod(len(values) for values in grid.axes.values()) * grid.repeats


def all_trials_ended(results: tune.ResultGrid, folder: Path) -> bool:
    """Whether every trial ended (completed, stopped by its scheduler, or errored) before Tune
    stopped. Memory and the saved state must both say so: after a Ctrl-C, Tune's clean-up marks
    the running trials terminated in memory, while the state it saved just before says pending."""
    saved = tune.ExperimentAnalysis(str(folder)).trials
    cut_short = any(trial.status in ("RUNNING", "PENDING") for trial in saved)
    return results.num_terminated + results.num_errors == len(results) and not cut_short


def finish(results: tune.ResultGrid, settings: RunSettings, grid: Grid | None) -> pd.DataFrame:
    """Summary and best trial of a finished experiment; an interrupted one gets no summary,
    so that --resume can tell the two apart."""
    ended = all_trials_ended(results, ExperimentFolder.of(settings).path)
    # A time budget ends the search with fewer trials than planned; only Ctrl-C interrupts it.
    if not ended or (len(results) < expected_trials(settings, grid) and not settings.time_budget):
        raise Interrupted(
            f"The experiment stopped before all its trials finished. Continue it with: "
            f"{resume_command(ExperimentFolder.of(settings).path)}"
        )
    start = None if grid else start_point(settings)
    table = summarize(results, settings.max_epochs, start)
    table = table[(table["epochs"] > 0) | (table["status"] == "error")]  # drop never started
    path = write_summary(table, ExperimentFolder.of(settings).path)
    if table["best_val_accuracy"].isna().all():
        raise SearchError(
            f"No trial finished an epoch. Each trial's error.txt under "
            f"{ExperimentFolder.of(settings).path} says why; the summary is at {path}."
        )
    for _, row in table[table["status"] == "error"].iterrows():  # Ray's own output is quiet
        logger.warning(f"Trial {row['trial_id']} failed: {row['error']} ({row['path']}/error.txt)")
    logger.info(f"Per-trial summary ({len(table)} trials): {path}")
    return table
