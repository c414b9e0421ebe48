"""From parsed command-line flags to checked settings: the command line's side of the checks.

Ranges and how values combine are the settings' own business (`RunSettings.problems()`,
`Grid.problems()` in src/config.py); what is left here needs the file system (is the name
taken, can the folder be written, does the experiment exist) or the flags themselves.
Everything runs before any heavy import, so a bad command fails in well under a second (with
--mlflow, the tracker is asked whether it answers: that imports MLflow).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from src.config import (
    PRESETS,
    SEARCH_SPACE,
    Comparison,
    Grid,
    RunSettings,
    at_least,
    first_problem,
    image_size_problem,
    name_taken,
    parse_assignment,
    resolve_method,
    tracking_uri,
)
from src.errors import HypertuneError
from src.results import CHECKPOINT_FILE, SUMMARY_FILE, ExperimentFolder, read_experiment_info


def preset_defaults(first: argparse.Namespace) -> dict:
    """The defaults that the flags of a first parsing pass call for: the preset's (the smoke
    test's with --smoke-test), without trial and epoch counts where minutes were typed (they
    follow from them), and a new experiment's name from the command and the time."""
    smoke = getattr(first, "smoke_test", False)
    defaults = dict(PRESETS["smoke" if smoke else getattr(first, "preset", "quick")])
    if getattr(first, "time_budget", None):
        defaults = {k: v for k, v in defaults.items() if k not in ("num_samples", "refit_epochs")}
    if first.command in ("search", "grid", "compare") and not first.resume:
        defaults["name"] = f"{'smoke' if smoke else first.command}-{time.strftime('%Y%m%d-%H%M%S')}"
    return defaults


def pinned(args: argparse.Namespace) -> dict:
    """The hyperparameters pinned with --set NAME=VALUE."""
    return dict(parse_assignment(text, many=False) for text in args.set)


def settings_from(args: argparse.Namespace) -> RunSettings:
    """The settings of a search, grid or comparison. Raises ValueError on a bad --set or
    --space (src.space.SpaceError names the file and line)."""
    search = args.command == "search"
    space, fixed = SEARCH_SPACE, pinned(args) if search else {}
    if search and args.space:
        from src.space import load_space

        space = load_space(args.space)
    searcher, scheduler = RunSettings.searcher, RunSettings.scheduler
    if search:
        searcher, scheduler = resolve_method(args.searcher, args.scheduler)
    only = {k: getattr(args, k) for k in ("grace_period", "reduction_factor", "refit_image_size",
            "search_share", "final_weights", "ensemble") if hasattr(args, k)}  # fmt: skip
    budget = getattr(args, "time_budget", None) or None  # 0: no limit
    for name in ("num_samples", "refit_epochs"):  # a time budget plans them unless typed
        typed = getattr(args, name, None)
        only[name] = typed if typed is not None or budget else getattr(RunSettings, name)
    return RunSettings(
        name=args.name,
        storage_path=args.storage_path.resolve(),
        data_dir=args.data_dir.resolve() if args.data_dir else None,  # trials run elsewhere
        image_size=args.image_size,
        max_epochs=args.max_epochs,
        gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        seed=args.seed,
        address=args.address,
        max_failures=args.max_failures,
        verbose=args.verbose,
        mlflow=None if args.mlflow is None else tracking_uri(args.mlflow),
        searcher=searcher,
        scheduler=scheduler,
        space={k: v for k, v in space.items() if k not in fixed},
        fixed=fixed,
        refit=search and not args.no_refit,
        time_budget=budget,
        **only,
    )


def new_run_settings(args: argparse.Namespace) -> RunSettings:
    """The settings of a new run (checked at parse time), on generated images for a smoke test
    without data."""
    settings = settings_from(args)
    if args.smoke_test and args.data_dir is None:
        from src.images import smoke_images

        settings = replace(settings, data_dir=smoke_images())
    return settings


def grid_from(args: argparse.Namespace) -> Grid:
    """The grid of `hypertune.py grid`: its two axes and what is fixed around them."""
    fixed: dict = {}
    if args.from_experiment:
        from src.results import best_config

        fixed |= best_config(ExperimentFolder.at(args.storage_path, args.from_experiment).path)
    fixed |= pinned(args)
    if args.x is None and args.y is None and args.from_experiment:
        axes, why = chosen_axes(args, fixed)
        return Grid(axes=axes, repeats=args.repeats, fixed=fixed, chosen=why)
    if args.x is None or args.y is None:
        raise HypertuneError(
            "grid needs --x and --y, or --from-experiment NAME alone to choose both from what "
            "mattered in that experiment."
        )
    axes = dict([parse_assignment(args.x, many=True), parse_assignment(args.y, many=True)])
    return Grid(axes=axes, repeats=args.repeats, fixed=fixed)


def chosen_axes(args: argparse.Namespace, best: dict) -> tuple[dict[str, list], str]:
    """The axes src.stats.grid_axes picks from --from-experiment, around its best values."""
    from src.analysis import load_experiment
    from src.results import read_experiment_info
    from src.stats import grid_axes

    folder = ExperimentFolder.at(args.storage_path, args.from_experiment).path
    settings, _, _ = read_experiment_info(folder)
    return grid_axes(load_experiment(folder), best, settings.space)


def comparison_from(args: argparse.Namespace) -> Comparison:
    """--methods as names: `baseline`, the starting configuration's name before 2026-12-07,
    is `start`."""
    methods = ("start" if m == "baseline" else m for m in args.methods.split(","))
    return Comparison(tuple(dict.fromkeys(methods)), args.seeds, args.budget)  # each once


def unwritable(folder: Path) -> str | None:
    """Why files cannot be written into `folder` (created if missing), or None. Tried for
    real, before any work starts: permissions alone do not tell (root, read-only mounts)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return (
            f"Cannot write into {folder} ({err.strerror or err}). Choose a folder you can "
            f"write to (--storage-path for experiments, --output for predictions)."
        )
    return None


def new_run_problem(args: argparse.Namespace) -> str | None:
    """A new search, grid or comparison: its settings, and a name that is free."""
    settings = settings_from(args)
    grid = grid_from(args) if args.command == "grid" else None
    problem = first_problem(
        comparison_from(args).problems(args.max_epochs) if args.command == "compare" else None,
        grid.problems() if grid else None,
        settings.problems(grid),
    )
    if problem:
        return problem
    folder = ExperimentFolder.at(args.storage_path, args.name).path
    if args.command == "compare" and args.resume:
        if not folder.is_dir():
            return f"There is no comparison {args.name!r} in {args.storage_path} to resume."
    elif folder.exists():
        return name_taken(args.name, args.storage_path)
    return unwritable(args.storage_path) or tracker_problem(settings.mlflow)


def tracker_problem(uri: str | None) -> str | None:
    """Why the run's MLflow tracker cannot be used, asked before anything trains (None: no
    tracker, or one that answers)."""
    if uri is None:
        return None
    from src.tracking import unreachable

    return unreachable(uri)


def resume_problem(args: argparse.Namespace) -> str | None:
    if args.name is None:
        return f"--resume needs the --name of the {args.command} to continue."
    if args.command == "compare":
        return new_run_problem(args)
    folder = ExperimentFolder.at(args.storage_path, args.name).path
    if not ExperimentFolder(folder).info.is_file():
        return f"There is no experiment {args.name!r} in {args.storage_path} to resume."
    return tracker_problem(read_experiment_info(folder)[0].mlflow)


def refit_problem(args: argparse.Namespace) -> str | None:
    if not ExperimentFolder.at(args.storage_path, args.name).summary.is_file():
        return (
            f"There is no finished experiment {args.name!r} in {args.storage_path} (no "
            f"{SUMMARY_FILE}); refit needs a search or grid that ran to the end."
        )
    return first_problem(
        at_least("epochs", 1 if args.epochs is None else args.epochs),
        image_size_problem("image-size", args.image_size),
        unwritable(ExperimentFolder.at(args.storage_path, args.name).path),
    )


def predict_problem(args: argparse.Namespace) -> str | None:
    if (args.model is None) == (args.name is None):
        return "predict needs either --model PATH (a final_model.pt) or --name NAME."
    if args.output is not None and args.output.is_dir():
        return f"--output {args.output} is a folder; give a file name such as preds.csv."
    return first_problem(
        at_least("top-k", args.top_k),
        unwritable(args.output.parent) if args.output is not None else None,
    )


def evaluate_problem(args: argparse.Namespace) -> str | None:
    if args.name is None and args.checkpoint is None:
        return "evaluate needs --name NAME (an experiment) or --checkpoint PATH."
    if args.name and not ExperimentFolder.at(args.storage_path, args.name).path.is_dir():
        return f"There is no experiment {args.name!r} in {args.storage_path}."
    checkpoint = args.checkpoint
    if checkpoint and not (checkpoint.is_file() or (checkpoint / CHECKPOINT_FILE).is_file()):
        return f"{checkpoint} is not a checkpoint folder (it has no {CHECKPOINT_FILE})."
    if args.name is None and args.data_dir is None:
        return "With --checkpoint alone there is no test split: give --data-dir or --name."
    return None


def problem(args: argparse.Namespace) -> str | None:
    """The first problem with the parsed flags of any command, or None."""
    try:
        if args.command in ("refit", "predict", "evaluate"):
            checks = {"refit": refit_problem, "predict": predict_problem}
            return checks.get(args.command, evaluate_problem)(args)
        if args.command == "analyze":
            return None  # the analysis checks its own request, before writing anything
        return resume_problem(args) if args.resume else new_run_problem(args)
    except HypertuneError as err:  # a bad --set, --x, --y, --space or --from-experiment
        return str(err)
