"""hypertune: tune a configurable CNN on Flowers (or your own photos) with Ray Tune.

`search` (the default) spends a time budget on a search (ASHA + HyperOpt's TPE, or others) and
on a final model trained from scratch, scored once on the test split. `refit`: that model
alone. `predict`, `evaluate`: the model on photos. `grid`: two hyperparameters, every trial
trained --max-epochs. `compare`: search methods at an equal budget. `analyze`: the figures.

    .venv/bin/python hypertune.py --smoke-test                         # < 1 min, generated images
    .venv/bin/python hypertune.py --data-dir ../shared/data/flowers    # 10 minutes in all
    .venv/bin/python hypertune.py predict --name NAME my_photos/       # the final model on photos

Results: logs/ray_results/<name>/, its figures/report.html the whole experiment on one page.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from src import flags
from src.commands import (
    add_analyze_arguments,
    continue_command,
    hypertune_command,
    save_traceback,
)
from src.config import (
    COMPARE_METHODS,
    DEFAULT_STORAGE,
    EMA_HALF_LIFE,
    FINAL_WEIGHTS,
    PRESETS,
    SCHEDULERS,
    SEARCHERS,
    Comparison,
    RunSettings,
)
from src.errors import (
    DISK_FULL,
    LOW_SPACE,
    DiskFull,
    HypertuneError,
    Interrupted,
    disk_full,
    free_bytes,
)
from src.results import ExperimentFolder

COMMANDS = ("search", "refit", "predict", "grid", "compare", "evaluate", "analyze")
Handler = Callable[[argparse.Namespace, str], None]
DEFAULTS = RunSettings(name="", storage_path=Path(), data_dir=None)  # shown in --help


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each flag's default (the preset's, where one applies), unless it has none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        unset = action.default in (None, [], argparse.SUPPRESS) or action.default is False
        return action.help if unset else super()._get_help_string(action)


def subparser(
    commands: argparse._SubParsersAction,
    name: str,
    run: Handler,
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    # No abbreviated flags: what the user typed must be recognisable, so that it beats a preset.
    p = commands.add_parser(
        name,
        help=help,
        description=description or help,
        allow_abbrev=False,
        formatter_class=HelpFormatter,
    )
    p.set_defaults(run=run)
    return p


def add_run_flags(p: argparse.ArgumentParser, d: RunSettings) -> None:
    """The flags of every command that trains trials: search, grid, compare."""
    data = p.add_argument_group("data and model")
    data.add_argument(
        "--data-dir",
        type=Path,
        help="photos: <class>/<image>, or train/ val/ "
        "[test/] of those; default: Flowers via mads_datasets",
    )
    data.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        help="square side, px, of the start and of every trial unless the space "
        "searches image_size",
    )
    data.add_argument("--max-epochs", type=int, default=d.max_epochs, help="epochs of a full trial")
    data.add_argument("--seed", type=int, default=d.seed, help="seeds the searcher, every trial")
    run = p.add_argument_group("resources and robustness")
    run.add_argument(
        "--gpus-per-trial",
        type=float,
        default=d.gpus_per_trial,
        help="GPU share per trial where the cluster has GPUs",
    )
    run.add_argument(
        "--cpus-per-trial",
        type=int,
        default=d.cpus_per_trial,
        help="CPUs per trial, also its torch thread count",
    )
    run.add_argument("--address", help="Ray cluster to join (RAY_ADDRESS works too)")
    run.add_argument(
        "--max-failures",
        type=int,
        default=d.max_failures,
        help="retries of a trial that raised, from its last checkpoint",
    )
    out = p.add_argument_group("experiment")
    out.add_argument("--name", help="experiment folder name")  # default: <command>-<date>-<time>
    out.add_argument("--storage-path", type=Path, default=DEFAULT_STORAGE, help="where it goes")
    out.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted experiment --name: search and grid with "
        "its own settings (other flags are ignored), compare with the flags typed "
        "(type the same command again)",
    )
    out.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        metavar="URI",
        help="also log it to MLflow: a tracking server (http://host:port), or "
        "without URI a local store, logs/mlflow (make mlflow-ui)",
    )
    out.add_argument("--verbose", action="store_true", help="Ray's own output instead of ours")
    out.add_argument(
        "--smoke-test",
        action="store_true",
        help=f"generated images (unless --data-dir) and {PRESETS['smoke']} "
        "(typed flags still win)",
    )


def add_search_parser(commands: argparse._SubParsersAction, d: RunSettings) -> None:
    what = "search, then refit the best configuration into a model file (the default)"
    p = subparser(commands, "search", run_search_or_grid, what)
    add_run_flags(p, d)
    how = p.add_argument_group("the search")
    how.add_argument(
        "--preset",
        choices=[k for k in PRESETS if k != "smoke"],
        default="quick",
        help="defaults for the flags you do not type: "
        f"{ {k: v for k, v in PRESETS.items() if k != 'smoke'} }",
    )
    how.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="for search + final model; 0: no limit (then --num-samples and "
        "--refit-epochs decide)",
    )
    how.add_argument(
        "--search-share",
        type=float,
        default=d.search_share,
        help="of the time budget, what the search may use; 0: no search",
    )
    how.add_argument(
        "--num-samples",
        type=int,
        help=f"trials (default: what the time budget holds; {d.num_samples} " "without one)",
    )
    how.add_argument(
        "--searcher",
        choices=SEARCHERS,
        help=f"proposes configurations (default {d.searcher}, or the partner of " "--scheduler)",
    )
    how.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        help=f"stops or changes trials (default {d.scheduler}, or the partner of " "--searcher)",
    )
    how.add_argument(
        "--grace-period",
        type=int,
        default=d.grace_period,
        help="epochs before ASHA may stop a trial; PBT's interval",
    )
    how.add_argument(
        "--reduction-factor",
        type=int,
        default=d.reduction_factor,
        help="ASHA keeps the best 1/N at each rung",
    )
    how.add_argument("--space", type=Path, help="space file, TOML or YAML: src/space_example.toml")
    how.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pin a hyperparameter for this search (repeatable)",
    )
    final = p.add_argument_group("the final model")
    final.add_argument(
        "--refit-epochs",
        type=int,
        help=f"epochs of the final model on train + val (default: what the "
        f"time budget leaves; {d.refit_epochs} without one)",
    )
    final.add_argument("--refit-image-size", type=int, help="px (default: the chosen trial's)")
    final.add_argument(
        "--final-weights",
        choices=FINAL_WEIGHTS,
        default=d.final_weights,
        help=f"what the model file holds: the weights as trained (raw) or their moving "
        f"average (ema, half-life {EMA_HALF_LIFE * 100:g} %% of its steps)",
    )
    final.add_argument(
        "--ensemble",
        type=int,
        default=d.ensemble,
        metavar="K",
        help="the model file averages the final model with the K-1 best trials as trained "
        "(no extra training; K passes per photo)",
    )
    final.add_argument("--no-refit", action="store_true", help="no final model, no test split")


def add_grid_parser(commands: argparse._SubParsersAction, d: RunSettings) -> None:
    p = subparser(
        commands,
        "grid",
        run_search_or_grid,
        "fixed-epoch grid over two hyperparameters",
        "Train every combination of two hyperparameters for exactly --max-epochs (no "
        "early stopping), --repeats seeds per cell. Every other hyperparameter is "
        "fixed: the starting configuration, then the best trial of --from-experiment, then "
        "--set.",
    )
    add_run_flags(p, d)
    p.add_argument(
        "--x",
        help="x-axis: NAME=V1,V2,... e.g. dropout=0.1,0.3 (left out with --y and "
        "--from-experiment: the two hyperparameters that mattered most there)",
    )
    p.add_argument("--y", help="y-axis: NAME=V1,V2,... e.g. fc_units=64,128")
    # Two seeds per cell on the command line, as in the journal's grids (entries 2-7); a Grid made
    # in code (compare, tests) runs one unless told.
    p.add_argument("--repeats", type=int, default=2, help="seeds per cell")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a hyperparameter (repeatable)",
    )
    p.add_argument("--from-experiment", metavar="NAME", help="start from its best configuration")


def add_compare_parser(commands: argparse._SubParsersAction, d: RunSettings) -> None:
    p = subparser(
        commands,
        "compare",
        run_compare,
        "search methods at an equal budget of epochs",
        "Each of --methods, --seeds times, every run stopped after --budget training "
        "epochs; --resume --name keeps the runs that spent their budget.",
    )
    add_run_flags(p, d)
    p.add_argument("--seeds", type=int, default=Comparison.seeds, help="runs of every method")
    p.add_argument("--budget", type=int, default=Comparison.budget, help="epochs per run")
    p.add_argument(
        "--methods",
        default=",".join(Comparison.methods),
        help=f"comma-separated, from {','.join(COMPARE_METHODS)}",
    )
    p.add_argument("--grace-period", type=int, default=2, help="ASHA's first rung; PBT interval")
    p.add_argument("--reduction-factor", type=int, default=3, help="ASHA/HyperBand reduction")
    # The study of experiment_journal.md entry 10: a budget of 4 full trials of 10 epochs.
    p.set_defaults(max_epochs=10, image_size=64)


def add_model_parsers(commands: argparse._SubParsersAction) -> None:
    """refit, predict and evaluate: they work on an experiment's folder or model file."""

    def experiment(p: argparse.ArgumentParser, required: bool, what: str) -> None:
        p.add_argument("--name", required=required, help=f"experiment: {what}")
        p.add_argument("--storage-path", type=Path, default=DEFAULT_STORAGE, help="where it is")

    p = subparser(
        commands,
        "refit",
        run_refit,
        "train the chosen configuration: final_model.pt",
        "Train experiment --name's chosen configuration on its train + val images into "
        "final_model.pt (replacing one), score it once on the test split. Interrupted? "
        "The same command continues.",
    )
    experiment(p, True, "whose best configuration")
    p.add_argument("--epochs", type=int, help="training epochs (default: its --refit-epochs)")
    p.add_argument(
        "--image-size",
        type=int,
        help="px (default: its --refit-image-size, " "else the chosen trial's)",
    )
    p.add_argument("--seed", type=int, help="seed (default: the experiment's)")
    p = subparser(
        commands,
        "predict",
        run_predict,
        "classify photos with a final model",
        "Class and probability of every image (folders walked); images in folders "
        "named like the model's classes are labelled, and scored.",
    )
    p.add_argument("images", nargs="+", type=Path, help="image files and/or folders")
    p.add_argument("--model", type=Path, help="a final_model.pt")
    experiment(p, False, "its final_model.pt")
    p.add_argument("--top-k", type=int, default=1, help="classes shown per image")
    p.add_argument("--output", type=Path, help="also write the predictions to this CSV")
    p = subparser(
        commands,
        "evaluate",
        run_evaluate,
        "score a model on held-out or new images",
        "Score --name's final model (else its best checkpoint) or --checkpoint on the "
        "experiment's test split, or on --data-dir (same class folders).",
    )
    experiment(p, False, "its final model")
    p.add_argument("--checkpoint", type=Path, help="a trial's checkpoint_* folder, or a model file")
    p.add_argument("--data-dir", type=Path, help="photos in class folders (or pre-split)")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    add_search_parser(commands, DEFAULTS)
    add_model_parsers(commands)
    add_grid_parser(commands, DEFAULTS)
    add_compare_parser(commands, DEFAULTS)
    add_analyze_arguments(subparser(commands, "analyze", run_analyze, "figures, report"))
    return parser, commands.choices


def first_pass(
    parser: argparse.ArgumentParser, subparsers: dict[str, argparse.ArgumentParser], argv: list[str]
) -> argparse.Namespace:
    """The command, preset and budget typed, without --help, and with required arguments
    waived for this pass only: `predict --help` must answer before any photo is named."""
    required = [a for p in subparsers.values() for a in p._actions if a.required]
    for action in required:
        action.required = False
    try:
        return parser.parse_known_args([a for a in argv if a not in ("-h", "--help")])[0]
    finally:
        for action in required:
            action.required = True


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse twice, as timm's train.py does with --config: the first pass finds the preset,
    whose values become the defaults of the second, so a flag the user typed always wins."""
    parser, subparsers = build_parser()
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["search", *argv]  # `search` is the default command
    first = first_pass(parser, subparsers, argv)
    command = subparsers.get(first.command, parser)  # none for hypertune.py --help
    known = {action.dest for action in command._actions}
    command.set_defaults(**{k: v for k, v in flags.preset_defaults(first).items() if k in known})
    args = parser.parse_args(argv)
    if problem := flags.problem(args):
        parser.error(problem)
    return args


def run_search_or_grid(args: argparse.Namespace, command: str) -> None:
    """search and grid: a new experiment, or the interrupted one --name continued."""
    from src import pipeline

    if args.resume:
        pipeline.resume(ExperimentFolder.at(args.storage_path.resolve(), args.name).path, command)
        return
    grid = flags.grid_from(args) if args.command == "grid" else None
    if grid is not None and grid.chosen:
        logger.info(f"Grid {' x '.join(f'{k}={v}' for k, v in grid.axes.items())}: {grid.chosen}.")
    pipeline.run(flags.new_run_settings(args), grid, command)


def run_compare(args: argparse.Namespace, command: str) -> None:
    from src import pipeline

    pipeline.compare(flags.new_run_settings(args), flags.comparison_from(args), args.resume)


def run_refit(args: argparse.Namespace, command: str) -> None:
    from src.pipeline import refit_experiment

    folder = ExperimentFolder.at(args.storage_path.resolve(), args.name).path
    refit_experiment(folder, command, args.epochs, args.image_size, args.seed)


def run_predict(args: argparse.Namespace, command: str) -> None:
    from src.predict import predict_and_report

    model = args.model or ExperimentFolder.at(args.storage_path, args.name).model
    predict_and_report(model, args.images, args.top_k, args.output)


def run_evaluate(args: argparse.Namespace, command: str) -> None:
    from src.evaluate import evaluate_and_report

    experiment = (
        ExperimentFolder.at(args.storage_path.resolve(), args.name).path if args.name else None
    )
    evaluate_and_report(experiment, args.checkpoint, args.data_dir)


def run_analyze(args: argparse.Namespace, command: str) -> None:
    from src.analysis import analyze

    for path in analyze(args):
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = hypertune_command(*argv)  # recorded in the model file
    logger.remove()  # one short line per message: time and text
    logger.add(sys.stderr, format="<green>{time:HH:mm:ss}</green> {message}", level="INFO")
    try:
        args.run(args, command)
        return 0
    except Interrupted as stop:
        print(f"hypertune: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ray handles Ctrl-C during a search; this is the rest (refit)
        again = continue_command(args, command)
        print(f"hypertune: interrupted. Continue with: {again}", file=sys.stderr)
        return 130
    except HypertuneError as err:  # something the user can fix: the message says how
        print(user_error(err, args, command), file=sys.stderr)
        return 2
    except Exception as bug:  # hypertune's fault (or a library's), not the user's
        if (full := full_disk(bug, args)) is not None:  # met inside Ray, not at a write of ours
            print(user_error(full, args, command), file=sys.stderr)
            return 2
        print(bug_message(bug, save_traceback(bug, args)), file=sys.stderr)
        return 1


def user_error(err: HypertuneError, args: argparse.Namespace, command: str) -> str:
    """One paragraph; after a full disk, with the command that continues the run."""
    again = (
        f" Continue with: {continue_command(args, command)}" if isinstance(err, DiskFull) else ""
    )
    return f"hypertune: error: {err}{again}"


def full_disk(error: Exception, args: argparse.Namespace) -> DiskFull | None:
    """The full disk behind an unexpected error: one that says so (ENOSPC, EDQUOT), or any error
    while the experiments' disk has next to no space left (Ray then fails in its own ways)."""
    storage = getattr(args, "storage_path", None) or DEFAULT_STORAGE
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        where = error.filename if isinstance(error.filename, str) else storage
        return disk_full(Path(where), "results")
    if free_bytes(storage.resolve()) < LOW_SPACE:
        return disk_full(storage.resolve(), "results")
    return None


def bug_message(bug: Exception, saved: Path | None) -> str:
    where = f"The full traceback is in {saved}" if saved else "The traceback could not be saved"
    return (
        f"hypertune: unexpected error (a bug in hypertune or a library it uses, not in what you "
        f"typed): {type(bug).__name__}: {bug}. {where}; please report it with that file."
    )


if __name__ == "__main__":
    sys.exit(main())
