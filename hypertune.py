"""hypertune: tune a configurable CNN on Flowers (or your own images) with Ray Tune.

ASHA stops weak trials early, HyperOpt (TPE) proposes the next configuration from the finished
ones, and two trials share each GPU (0.5 GPU per trial; CPU-only machines run on CPUs).

    python hypertune.py --smoke-test                              # < 2 min, generated images
    python hypertune.py --data-dir ../shared/data/flowers         # the default search
    python hypertune.py --data-dir my_images/ --num-samples 30 --max-epochs 20 --image-size 96

Results: logs/ray_results/<name>/ (Ray's trial folders + experiment_summary.csv).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

from src.config import RunSettings

SMOKE = {"num_samples": 4, "max_epochs": 3, "grace_period": 1, "image_size": 32}


def build_parser() -> argparse.ArgumentParser:
    d = RunSettings(name="", storage_path=Path(), data_dir=None)  # defaults, shown in --help
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--num-samples", type=int, default=d.num_samples, help="trials to run")
    p.add_argument(
        "--max-epochs", type=int, default=d.max_epochs, help="epochs of a trial ASHA never stops"
    )
    p.add_argument(
        "--grace-period", type=int, default=d.grace_period, help="epochs before ASHA may stop"
    )
    p.add_argument(
        "--reduction-factor",
        type=int,
        default=d.reduction_factor,
        help="ASHA keeps the best 1/N of trials at each rung",
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
    p.add_argument("--name", help="experiment name (default: search-<date>-<time>)")
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
        "--smoke-test",
        action="store_true",
        help=f"tiny generated dataset and {SMOKE}: checks the installation in < 2 minutes",
    )
    return p


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the flags, or None. Runs before Ray starts."""
    positive = ["num_samples", "max_epochs", "grace_period", "cpus_per_trial"]
    for flag in positive:
        if getattr(args, flag) < 1:
            return f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}."
    if args.grace_period > args.max_epochs:
        return (
            f"--grace-period ({args.grace_period}) cannot exceed --max-epochs "
            f"({args.max_epochs}): no trial would ever reach it."
        )
    if args.reduction_factor < 2:
        return f"--reduction-factor must be at least 2, got {args.reduction_factor}."
    if args.gpus_per_trial < 0:
        return f"--gpus-per-trial cannot be negative, got {args.gpus_per_trial}."
    if args.image_size < 32:
        return (
            f"--image-size must be at least 32 px (4 conv blocks halve it 4 times), "
            f"got {args.image_size}."
        )
    if args.name is not None and not re.fullmatch(r"[\w.-]+", args.name):
        return f"--name may hold letters, digits, '_', '.' and '-' only, got {args.name!r}."
    if (args.storage_path / args.name).exists():
        return (
            f"An experiment named {args.name!r} already exists in {args.storage_path}. Choose "
            f"another --name, or move the old folder away."
        )
    return None


def settings_from(args: argparse.Namespace) -> RunSettings:
    return RunSettings(
        name=args.name,
        storage_path=args.storage_path.resolve(),
        data_dir=args.data_dir.resolve() if args.data_dir else None,  # trials run elsewhere
        image_size=args.image_size,
        num_samples=args.num_samples,
        max_epochs=args.max_epochs,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        gpus_per_trial=args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial,
        seed=args.seed,
        address=args.address,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoke_test:
        vars(args).update(SMOKE)
    prefix = "smoke" if args.smoke_test else "search"
    args.name = args.name or f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    problem = check_args(args)
    if problem:
        parser.error(problem)

    # Heavy imports (torch, Ray) only after the flags are known to be good.
    from src.data import DataError, DataSpec, image_folder, prepare_cache, write_synthetic_images
    from src.search import SearchError, run_search

    if args.smoke_test:
        args.data_dir = write_synthetic_images(Path(tempfile.mkdtemp(prefix="hypertune-smoke-")))
    settings = settings_from(args)
    try:
        folder = image_folder(settings.data_dir)
        prepare_cache(folder, settings.image_size)  # decode once, before any trial starts
        run_search(settings, DataSpec(folder.root, settings.image_size))
    except (DataError, SearchError, ValueError) as err:
        print(f"hypertune: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
