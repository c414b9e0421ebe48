"""Command lines: the ones hypertune prints for you to copy, and the flags of `analyze`. Light
on purpose: the command line imports it before anything heavy."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import traceback
from pathlib import Path

from src.config import DEFAULT_STORAGE, METRICS


def short(path: Path) -> str:
    """`path` relative to the working folder where it is inside it: shorter to read and copy."""
    return os.path.relpath(path) if path.absolute().is_relative_to(Path.cwd()) else str(path)


def hypertune_command(*args: str | Path) -> str:
    """A hypertune command line to copy: this interpreter (.venv/bin/python after make install:
    a bare `python` may lack the packages) and this hypertune.py."""
    script = Path(__file__).resolve().parents[1] / "hypertune.py"
    words = [short(a) if isinstance(a, Path) else a for a in (Path(sys.executable), script, *args)]
    return shlex.join(words)


def experiment_flags(folder: Path) -> list[str | Path]:
    """--name, and --storage-path where it is not the default: what finds `folder` again."""
    if folder.parent == DEFAULT_STORAGE.resolve():
        return ["--name", folder.name]
    return ["--name", folder.name, "--storage-path", folder.parent]


def resume_command(folder: Path) -> str:
    return hypertune_command("--resume", *experiment_flags(folder))


def continue_command(args: argparse.Namespace, command: str) -> str:
    """What continues an interrupted `command`: --resume for a search or grid whose experiment
    began (its folder holds hypertune.json), else the command itself again."""
    from src.results import ExperimentFolder  # here: the command line starts without pandas

    if args.command in ("search", "grid"):
        folder = ExperimentFolder.at(args.storage_path.resolve(), str(args.name))
        if folder.info.is_file():
            return resume_command(folder.path)
    return command


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `hypertune.py analyze`."""
    p.add_argument("experiment", nargs="?", type=Path, help="experiment folder (default: latest)")
    p.add_argument("--root", type=Path, default=DEFAULT_STORAGE, help="where to look")
    p.add_argument("--x", help="heatmap x-axis hyperparameter (default: a grid's first axis)")
    p.add_argument("--y", help="heatmap y-axis hyperparameter (default: a grid's second axis)")
    p.add_argument("--metric", default="val_accuracy", help=f"one of {', '.join(METRICS)}")
    p.add_argument("--at-epoch", type=int, help="compare trials at this epoch (ASHA searches)")


def save_traceback(error: BaseException, args: argparse.Namespace) -> Path | None:
    """The full traceback of an unexpected error, for a bug report: in the experiment's folder
    where the command has one, else in a temporary file. None where it cannot be written."""
    from src.results import ExperimentFolder

    text = "".join(traceback.format_exception(error))
    name, storage = getattr(args, "name", None), getattr(args, "storage_path", None)
    folder = ExperimentFolder.at(storage, name) if name and storage else None
    try:
        if folder is not None and folder.path.is_dir():
            folder.error_log.write_text(text)
            return folder.error_log
        with tempfile.NamedTemporaryFile(
            "w", prefix="hypertune-error-", suffix=".log", delete=False
        ) as file:
            file.write(text)
        return Path(file.name)
    except OSError:
        return None
