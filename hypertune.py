"""hypertune: tune a configurable CNN on Flowers (or your own images) with Ray Tune.

`search` (the default: `python hypertune.py --flags` runs it): ASHA stops weak trials early,
HyperOpt (TPE) proposes the next configuration from the finished ones (--searcher and
--scheduler choose others: random, differential evolution, BOHB; FIFO, PBT), and at the end
the best configuration is refit from scratch on train + validation into one model file, scored
once on the test split. `refit`: that last step on its own. `predict`: the model on new photos.
`grid`: two hyperparameters on a full grid, every trial trained for exactly --max-epochs (what
heatmaps need). `compare`: search methods at an equal budget of epochs. `evaluate`: a
checkpoint on held-out or new images. Two trials share each GPU (0.5 GPU per trial); CPU-only
machines run on CPUs.

    python hypertune.py --smoke-test                              # < 1 min, generated images
    python hypertune.py --data-dir ../shared/data/flowers         # search + refit, ~11 min
    python hypertune.py --preset long --data-dir ../shared/data/flowers
    python hypertune.py predict --name NAME my_photos/            # the final model on photos
    python hypertune.py grid --x dropout=0.1,0.3,0.5 --y fc_units=64,128,256 --repeats 2 \\
        --data-dir ../shared/data/flowers
    python hypertune.py --searcher bohb --data-dir ../shared/data/flowers   # BOHB (+ HyperBand)
    python hypertune.py compare --data-dir ../shared/data/flowers   # 5 methods x 3 seeds
    python -m src.analysis                                        # figures of the latest run

Results: logs/ray_results/<name>/ (Ray's trial folders, experiment_summary.csv, hypertune.json,
final_model.pt).
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from src.config import (
    BASELINE,
    CHECKPOINT_FILE,
    COMPARE_DEFAULT,
    COMPARE_METHODS,
    EXPERIMENT_INFO,
    MODEL_FILE,
    PAIRED,
    PRESETS,
    SCHEDULERS,
    SEARCH_SPACE,
    SEARCHERS,
    SUMMARY_FILE,
    Grid,
    RunSettings,
    method_problem,
)

if TYPE_CHECKING:
    from src.evaluate import Evaluation

COMMANDS = ("search", "refit", "predict", "grid", "compare", "evaluate")


def add_common_flags(p: argparse.ArgumentParser, d: RunSettings) -> None:
    p.add_argument(
        "--max-epochs", type=int, default=d.max_epochs, help="epochs of a fully trained trial"
    )
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=d.gpus_per_trial,
        help="GPU share per trial where the cluster has GPUs (ignored where it has none)",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=int,
        default=d.cpus_per_trial,
        help="CPUs per trial, also its torch thread count",
    )
    p.add_argument(
        "--image-size", type=int, default=d.image_size, help="square image side in px (>= 32)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="folder of <class>/*.jpg|png images; default: Flowers via mads_datasets",
    )
    p.add_argument("--name", help="experiment name (default: <command>-<date>-<time>)")
    p.add_argument(
        "--storage-path",
        type=Path,
        default=Path("logs/ray_results"),
        help="where experiment folders are written",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seeds HyperOpt and every trial")
    p.add_argument(
        "--address",
        help="Ray cluster to join, e.g. ray://head:10001 or auto (RAY_ADDRESS works too)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=d.max_failures,
        help="retries of a trial that raised an exception, from its last checkpoint",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted experiment --name (its own settings; other flags ignored)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="Ray's own output (trial tables, worker logs) instead of the progress line",
    )
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help=f"generated images (unless --data-dir) and {PRESETS['smoke']}: checks the "
        f"installation in < 1 minute (flags you type still win)",
    )


def build_parser() -> argparse.ArgumentParser:
    d = RunSettings(name="", storage_path=Path(), data_dir=None)  # defaults, shown in --help
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    # No abbreviated flags: what the user typed must be recognisable, so that it beats a preset.
    fmt = argparse.ArgumentDefaultsHelpFormatter
    search = commands.add_parser(
        "search",
        help="search (ASHA + HyperOpt unless --searcher/--scheduler), then refit the best "
        "(the default)",
        formatter_class=fmt,
        allow_abbrev=False,
    )
    add_common_flags(search, d)
    search.add_argument(
        "--preset",
        choices=[k for k in PRESETS if k != "smoke"],
        default="quick",
        help=f"defaults for the flags you do not type: {PRESETS}",
    )
    search.add_argument("--num-samples", type=int, default=d.num_samples, help="trials to run")
    search.add_argument(
        "--searcher",
        choices=SEARCHERS,
        default=d.searcher,
        help="proposes configurations: TPE, random, differential evolution (Nevergrad), BOHB",
    )
    search.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default=d.scheduler,
        help="stops weak trials (asha, hyperband: BOHB's), trains all fully (fifo), or lets the "
        "weak continue from the strong with mutated lr/weight decay/dropout (pbt)",
    )
    search.add_argument(
        "--grace-period", type=int, default=d.grace_period, help="epochs before ASHA may stop"
    )
    search.add_argument(
        "--reduction-factor",
        type=int,
        default=d.reduction_factor,
        help="ASHA keeps the best 1/N of trials at each rung",
    )
    search.add_argument(
        "--refit-epochs",
        type=int,
        default=d.refit_epochs,
        help="epochs of the final model on train + val after the search",
    )
    search.add_argument(
        "--refit-image-size", type=int, help="image size of the final model (default: --image-size)"
    )
    search.add_argument(
        "--no-refit", action="store_true", help="stop after the search: no final model, no test"
    )
    search.add_argument(
        "--space",
        type=Path,
        help="search space file, TOML or YAML (example: src/space_example.toml); "
        "default: SEARCH_SPACE in src/config.py",
    )
    search.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pin a hyperparameter for this search (repeatable)",
    )
    refit = commands.add_parser(
        "refit",
        help="train the best configuration on train + val into final_model.pt",
        description="Train the best configuration of experiment --name from scratch on its "
        "train + validation images, save it as <experiment>/final_model.pt and score it once on "
        "the test split. Interrupted? Run the same command again: it continues.",
        formatter_class=fmt,
        allow_abbrev=False,
    )
    refit.add_argument("--name", required=True, help="the experiment whose best configuration")
    refit.add_argument(
        "--storage-path", type=Path, default=Path("logs/ray_results"), help="where --name is"
    )
    refit.add_argument(
        "--epochs", type=int, help="training epochs (default: the experiment's --refit-epochs)"
    )
    refit.add_argument("--image-size", type=int, help="px (default: the experiment's)")
    refit.add_argument("--seed", type=int, help="seed (default: the experiment's)")
    predict = commands.add_parser(
        "predict",
        help="classify photos with a final model",
        description="Class and probability of every image (folders are walked). Sub-folders "
        "named like the model's classes count as true labels: accuracy is printed too.",
        formatter_class=fmt,
        allow_abbrev=False,
    )
    predict.add_argument("images", nargs="+", type=Path, help="image files and/or folders")
    predict.add_argument("--model", type=Path, help="a final_model.pt")
    predict.add_argument("--name", help="an experiment: its final_model.pt")
    predict.add_argument(
        "--storage-path", type=Path, default=Path("logs/ray_results"), help="where --name is"
    )
    predict.add_argument("--top-k", type=int, default=1, help="classes shown per image")
    predict.add_argument("--output", type=Path, help="also write the predictions to this CSV")
    grid = commands.add_parser(
        "grid",
        help="fixed-epoch grid over two hyperparameters",
        formatter_class=fmt,
        allow_abbrev=False,
        description="Train every combination of two hyperparameters for exactly --max-epochs "
        "(no early stopping), --repeats seeds per cell. Every other hyperparameter is fixed: "
        "BASELINE, the best trial of --from-experiment, then --set, in that order.",
    )
    add_common_flags(grid, d)
    grid.add_argument("--x", required=True, help="x-axis: NAME=V1,V2,... e.g. dropout=0.1,0.3")
    grid.add_argument("--y", required=True, help="y-axis: NAME=V1,V2,... e.g. fc_units=64,128")
    grid.add_argument("--repeats", type=int, default=2, help="seeds per cell")
    grid.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="fix a hyperparameter"
    )
    grid.add_argument(
        "--from-experiment", metavar="NAME", help="start from the best config of this experiment"
    )
    compare = commands.add_parser(
        "compare",
        help="search methods side by side at an equal budget of epochs",
        formatter_class=fmt,
        allow_abbrev=False,
        description="Run the search space under each --methods (scheduler+searcher pairs of "
        "search, and a grid), --seeds times each, every run stopped after --budget training "
        "epochs in total, and plot best val_accuracy so far against epochs spent. Interrupted? "
        "The same command with --resume keeps the runs that spent their budget.",
    )
    add_common_flags(compare, d)
    compare.add_argument("--seeds", type=int, default=3, help="repetitions of every method")
    compare.add_argument("--budget", type=int, default=40, help="training epochs per run")
    compare.add_argument(
        "--methods",
        default=",".join(COMPARE_DEFAULT),
        help=f"comma-separated, from {','.join(COMPARE_METHODS)}",
    )
    compare.add_argument(
        "--grace-period", type=int, default=2, help="ASHA's first rung; PBT's perturbation interval"
    )
    compare.add_argument("--reduction-factor", type=int, default=3, help="ASHA/HyperBand reduction")
    # The study of experiment_journal.md entry 10: a budget of 4 full trials of 10 epochs at
    # 64 px, 5 methods x 3 seeds: about 90 minutes on 2 CPUs.
    compare.set_defaults(max_epochs=10, image_size=64)
    evaluate = commands.add_parser(
        "evaluate",
        help="score a checkpoint on held-out or new images",
        formatter_class=fmt,
        allow_abbrev=False,
        description="Evaluate the best checkpoint of experiment --name (or --checkpoint) on the "
        "experiment's held-out test split, or on --data-dir (same class folders).",
    )
    evaluate.add_argument("--name", help="experiment whose best checkpoint to evaluate")
    evaluate.add_argument(
        "--storage-path", type=Path, default=Path("logs/ray_results"), help="where --name is"
    )
    evaluate.add_argument("--checkpoint", type=Path, help="a trial's checkpoint_* folder")
    evaluate.add_argument("--data-dir", type=Path, help="folder of <class>/*.jpg|png images")
    return parser


def parse_value(name: str, text: str) -> Any:
    """A value for hyperparameter `name`, typed like its BASELINE value."""
    kind = type(BASELINE[name])
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{name} takes true or false, got {text!r}")
        return text.lower() == "true"
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} takes {kind.__name__} values, got {text!r}") from None


def parse_assignment(text: str, many: bool) -> tuple[str, Any]:
    """NAME=VALUE (or NAME=V1,V2,... when `many`) for a known hyperparameter."""
    name, _, values = text.partition("=")
    if name not in BASELINE or not values:
        raise ValueError(
            f"{text!r} is not NAME=VALUE{',...' if many else ''} for a known hyperparameter; "
            f"the names are {', '.join(BASELINE)}"
        )
    parsed = [parse_value(name, v) for v in values.split(",")]
    return name, parsed if many else parsed[0]


def grid_from(args: argparse.Namespace) -> Grid:
    fixed: dict[str, Any] = {}
    if args.from_experiment:
        from src.results import best_config

        fixed |= best_config(args.storage_path / args.from_experiment)
    fixed |= dict(parse_assignment(text, many=False) for text in args.set)
    axes = dict([parse_assignment(args.x, many=True), parse_assignment(args.y, many=True)])
    if len(axes) < 2:
        raise ValueError(f"--x and --y must name two different hyperparameters, got {args.x}")
    return Grid(axes=axes, repeats=args.repeats, fixed=fixed)


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the flags, or None. Runs before Ray starts."""
    if getattr(args, "max_failures", 0) < 0:
        return f"--max-failures cannot be negative, got {args.max_failures}."
    positive = [
        "max_epochs", "cpus_per_trial", "num_samples", "grace_period", "repeats", "seeds",
        "refit_epochs",
    ]  # fmt: skip
    for flag in positive:
        if getattr(args, flag, 1) < 1:
            return f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}."
    if args.command == "compare":
        unknown = set(args.methods.split(",")) - set(COMPARE_METHODS)
        if unknown:
            names = ", ".join(COMPARE_METHODS)
            return f"Unknown method(s) {', '.join(sorted(unknown))}; choose from {names}."
        if args.budget < args.max_epochs:
            return (
                f"--budget {args.budget} epochs cannot pay for one full trial of --max-epochs "
                f"{args.max_epochs}; raise --budget or lower --max-epochs."
            )
    if args.command in ("search", "compare") and args.grace_period > args.max_epochs:
        return (
            f"--grace-period ({args.grace_period}) cannot exceed --max-epochs "
            f"({args.max_epochs}): no trial would ever reach it."
        )
    if getattr(args, "reduction_factor", 2) < 2:
        return f"--reduction-factor must be at least 2, got {args.reduction_factor}."
    if args.gpus_per_trial < 0:
        return f"--gpus-per-trial cannot be negative, got {args.gpus_per_trial}."
    for flag in ("image_size", "refit_image_size"):
        if (getattr(args, flag, None) or 32) < 32:
            return (
                f"--{flag.replace('_', '-')} must be at least 32 px (4 conv blocks halve it 4 "
                f"times), got {getattr(args, flag)}."
            )
    if not re.fullmatch(r"[\w.-]+", args.name):
        return f"--name may hold letters, digits, '_', '.' and '-' only, got {args.name!r}."
    if args.command == "compare" and args.resume:
        if not (args.storage_path / args.name).is_dir():
            return f"There is no comparison {args.name!r} in {args.storage_path} to resume."
    elif (args.storage_path / args.name).exists():
        return (
            f"An experiment named {args.name!r} already exists in {args.storage_path}. Choose "
            f"another --name, or move the old folder away."
        )
    return unwritable(args.storage_path)


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


def check_evaluate(args: argparse.Namespace) -> str | None:
    if args.name is None and args.checkpoint is None:
        return "evaluate needs --name NAME (an experiment) or --checkpoint PATH."
    if args.name and not (args.storage_path / args.name).is_dir():
        return f"There is no experiment {args.name!r} in {args.storage_path}."
    if args.checkpoint and not (args.checkpoint / CHECKPOINT_FILE).is_file():
        return f"{args.checkpoint} is not a checkpoint folder (it has no {CHECKPOINT_FILE})."
    if args.name is None and args.data_dir is None:
        return "With --checkpoint alone there is no test split: give --data-dir or --name."
    return None


def check_resume(args: argparse.Namespace) -> str | None:
    if args.name is None:
        return "--resume needs the --name of the experiment to continue."
    info = args.storage_path / args.name / EXPERIMENT_INFO
    if not info.is_file():
        return f"There is no experiment {args.name!r} in {args.storage_path} to resume."
    return None


def check_refit(args: argparse.Namespace) -> str | None:
    if not (args.storage_path / args.name / SUMMARY_FILE).is_file():
        return (
            f"There is no finished experiment {args.name!r} in {args.storage_path} (no "
            f"{SUMMARY_FILE}); refit needs a search or grid that ran to the end."
        )
    if (args.epochs or 1) < 1:
        return f"--epochs must be at least 1, got {args.epochs}."
    if (args.image_size or 32) < 32:
        return f"--image-size must be at least 32 px, got {args.image_size}."
    return unwritable(args.storage_path / args.name)


def check_predict(args: argparse.Namespace) -> str | None:
    if (args.model is None) == (args.name is None):
        return "predict needs either --model PATH (a final_model.pt) or --name NAME."
    if args.top_k < 1:
        return f"--top-k must be at least 1, got {args.top_k}."
    if args.output is not None:
        if args.output.is_dir():
            return f"--output {args.output} is a folder; give a file name such as preds.csv."
        return unwritable(args.output.parent)
    return None


def typed_flags(argv: list[str]) -> set[str]:
    """The destinations of the --flags on the command line (no abbreviations are allowed)."""
    return {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}


def apply_preset(args: argparse.Namespace, typed: set[str]) -> None:
    """The preset's value for every flag the user did not type: typed flags always win."""
    preset = "smoke" if args.smoke_test else getattr(args, "preset", "quick")
    for key, value in PRESETS[preset].items():
        if key in vars(args) and key not in typed:
            setattr(args, key, value)
    for flag, other in (("searcher", "scheduler"), ("scheduler", "searcher")):
        chosen = getattr(args, flag, None)
        if flag in typed and other not in typed and chosen in PAIRED:
            setattr(args, other, PAIRED[chosen][0])  # --searcher bohb alone: hyperband


def settings_from(args: argparse.Namespace) -> RunSettings:
    search_only = (
        "num_samples", "grace_period", "reduction_factor", "refit_image_size", "searcher",
        "scheduler",
    )  # fmt: skip
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
        space=getattr(args, "search_space", SEARCH_SPACE),
        fixed=getattr(args, "fixed", {}),
        refit_epochs=0 if getattr(args, "no_refit", True) else args.refit_epochs,
        **{k: getattr(args, k) for k in search_only if hasattr(args, k)},
    )


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Grid | None]:
    parser = build_parser()
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["search", *argv]  # `search` is the default command
    args = parser.parse_args(argv)
    checks = {"evaluate": check_evaluate, "refit": check_refit, "predict": check_predict}
    if args.command in checks or (args.resume and args.command != "compare"):
        problem = check_resume(args) if args.command not in checks else checks[args.command](args)
        if problem:
            parser.error(problem)
        return args, None
    apply_preset(args, typed_flags(argv))
    prefix = "smoke" if args.smoke_test else args.command
    args.name = args.name or f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    problem = check_args(args)
    grid = None
    try:
        if args.command == "grid":
            grid = grid_from(args)
        if args.command == "search":
            search_space_from(args)
            problem = problem or method_problem(args.searcher, args.scheduler, args.search_space)
    except ValueError as err:
        problem = problem or str(err)
    problem = problem or config_problem(args, grid)
    if problem:
        parser.error(problem)
    return args, grid


def search_space_from(args: argparse.Namespace) -> None:
    """args.search_space (the --space file, else SEARCH_SPACE, less what --set pins) and
    args.fixed (the pinned values). Raises ValueError (SpaceError) on a bad file or --set."""
    from src.space import load_space, pin

    args.fixed = dict(parse_assignment(text, many=False) for text in args.set)
    space = load_space(args.space) if args.space else SEARCH_SPACE
    args.search_space = pin(space, args.fixed)


def config_problem(args: argparse.Namespace, grid: Grid | None) -> str | None:
    """The first trial configuration the model cannot train, or None: every cell of a grid;
    for a search, the pinned values with each choice and each range bound of the space."""
    from src.model import config_problem as problem_of

    if grid is None:
        space = getattr(args, "search_space", SEARCH_SPACE)
        values = [(k, v) for k, (_, options) in space.items() for v in options]
        configs = [{**BASELINE, **getattr(args, "fixed", {}), k: v} for k, v in values]
    else:
        cells = itertools.product(*grid.axes.values())
        configs = [
            {**BASELINE, **grid.fixed, **dict(zip(grid.axes, c, strict=True))} for c in cells
        ]
    return next(filter(None, (problem_of(c, args.image_size) for c in configs)), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, grid = parse_args(argv)
    command = shlex.join(["python", "hypertune.py", *argv])  # recorded in the model file
    logger.remove()  # one short line per message: time and text
    logger.add(sys.stderr, format="<green>{time:HH:mm:ss}</green> {message}", level="INFO")

    try:
        return run_command(args, grid, command)
    except KeyboardInterrupt:  # Ray handles Ctrl-C during a search; this is the rest (refit)
        again = command
        if args.command == "search":
            again = f"python hypertune.py --resume --name {args.name} --storage-path " + str(
                args.storage_path
            )
        print(f"hypertune: interrupted. Continue with: {again}", file=sys.stderr)
        return 130


def run_command(args: argparse.Namespace, grid: Grid | None, command: str) -> int:
    # Heavy imports (torch, Ray, pandas) only after the flags are known to be good.
    import pandas as pd

    from src.data import DataError, DataSpec, image_folder, prepare_cache, write_synthetic_images
    from src.evaluate import evaluate_and_report
    from src.progress import summary_block
    from src.search import (
        Interrupted,
        SearchError,
        read_experiment_info,
        resume_experiment,
        run_experiment,
    )

    try:
        if args.command == "evaluate":
            experiment = args.storage_path.resolve() / args.name if args.name else None
            evaluate_and_report(experiment, args.checkpoint, args.data_dir)
            return 0
        if args.command == "predict":
            return predict(args)
        if args.command == "refit":
            folder = args.storage_path.resolve() / args.name
            settings, _, _ = read_experiment_info(folder)
            refit_best(folder, settings, command, args.epochs, args.image_size, args.seed)
            return 0
        if args.resume and args.command != "compare":  # compare resumes run by run
            folder = args.storage_path.resolve() / args.name
            settings, data_spec, grid = read_experiment_info(folder)
            if (folder / SUMMARY_FILE).is_file():
                table = pd.read_csv(folder / SUMMARY_FILE)
            else:
                prepare_cache(image_folder(data_spec.root), data_spec.image_size)
                table = resume_experiment(settings, data_spec, grid)
            if grid is None and settings.refit_epochs and not (folder / MODEL_FILE).is_file():
                evaluation = refit_best(folder, settings, command)  # continues a refit
                print(summary_block(folder, table, evaluation.accuracy))
            else:
                print(f"Experiment {args.name!r} is complete; its summary: {folder / SUMMARY_FILE}")
            return 0
        if args.smoke_test and args.data_dir is None:
            args.data_dir = write_synthetic_images(Path(tempfile.mkdtemp(prefix="hypertune-")))
        settings = settings_from(args)
        images = image_folder(settings.data_dir)
        prepare_cache(images, settings.image_size)  # decode once, before any trial starts
        data_spec = DataSpec(images.root, settings.image_size)
        if args.command == "compare":
            from src.compare import compare

            methods = args.methods.split(",")
            compare(settings, data_spec, methods, args.seeds, args.budget, args.resume)
            return 0
        table = run_experiment(settings, data_spec, grid)
        folder = settings.storage_path / settings.name
        test: float | None = None
        if grid is None and settings.refit_epochs:
            test = refit_best(folder, settings, command).accuracy
        print(summary_block(folder, table, test))
    except Interrupted as stop:
        print(f"hypertune: {stop}", file=sys.stderr)
        return 130
    except (DataError, SearchError, ValueError) as err:
        print(f"hypertune: error: {err}", file=sys.stderr)
        return 2
    return 0


def refit_best(
    folder: Path,
    settings: RunSettings,
    command: str,
    epochs: int | None = None,
    image_size: int | None = None,
    seed: int | None = None,
) -> Evaluation:
    """The final model of an experiment and its test evaluation; unset values come from the
    experiment's settings."""
    from src.refit import plan_refit, refit

    plan = plan_refit(
        folder,
        epochs or settings.refit_epochs or RunSettings.refit_epochs,
        image_size or settings.refit_image_size,
        settings.seed if seed is None else seed,
    )
    return refit(plan, command)


def predict(args: argparse.Namespace) -> int:
    from src.predict import accuracy_note, run_predict

    model = args.model or args.storage_path / args.name / MODEL_FILE
    table = run_predict(model, args.images, args.top_k)
    shown = table.drop(columns=[c for c in ("true_class", "error") if not table[c].any()])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    unreadable = int((table["error"] != "").sum())
    if unreadable:
        print(f"{unreadable} of {len(table)} files were not readable images (error rows).")
    if note := accuracy_note(table):
        print(note)
    if args.output:
        table.to_csv(args.output, index=False)
        print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
