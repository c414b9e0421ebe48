"""Shared fixtures: generated images (no download, no ../shared) and a private image cache."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from src.config import DEFAULT_START, DataSpec, RunSettings
from src.images import write_synthetic_images
from src.results import SUMMARY_FILE, write_experiment_info

ROOT = Path(__file__).resolve().parents[1]


def analyze_command(args: list[str]) -> int:
    """`hypertune.py analyze ARGS` run in this process: its exit code (messages on stderr)."""
    sys.path.insert(0, str(ROOT))  # this checkout's hypertune.py
    import hypertune

    return hypertune.main(["analyze", *args])


class FakeClock:
    """A stand-in for the `time` module of the code under test, whose clock moves only when the
    test says so (`advance`, or work wrapped by `taking`): what a run decides from the time it
    sees then follows from the test, not from how fast this machine is. Everything but the
    clocks is the real module's."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def taking(self, seconds: float, work: Callable[..., Any]) -> Callable[..., Any]:
        """`work`, after which this clock shows `seconds` more."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            result = work(*args, **kwargs)
            self.advance(seconds)
            return result

        return timed

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


SMALL = {
    **DEFAULT_START,
    "num_conv_layers": 2,
    "start_filters": 16,
    "lr": 3e-3,
}  # trains in seconds


def trial_config(**values: Any) -> dict[str, Any]:
    """DEFAULT_START as a trial on the tests' small images holds it: at 32 px, seed 0."""
    return {**DEFAULT_START, "image_size": 32, "seed": 0, **values}


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep the tests' decoded-image caches out of ~/.cache, and every Ray of theirs private."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["HYPERTUNE_CACHE"] = str(cache)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # A new local Ray for every run, never the last one started on this machine: ray.init()
    # joins the cluster /tmp/ray/ray_current_cluster names, and the suite's own test of a
    # two-node cluster writes it while other tests run beside it (pytest -n).
    os.environ["RAY_ADDRESS"] = "local"
    return cache


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 20 generated 40 px images."""
    return write_synthetic_images(tmp_path_factory.mktemp("images"))


def finished_experiment(folder: Path, images: Path, best: dict, **changes: Any) -> Path:
    """What a finished search leaves that refit reads, without running one: hypertune.json and
    the summary, whose best row (highest best_val_accuracy, not the first row) holds `best`;
    `changes`: RunSettings values other than the tests' defaults."""
    settings = RunSettings(name=folder.name, storage_path=folder.parent, data_dir=images,
                           image_size=32, refit_epochs=6, **changes)  # fmt: skip
    write_experiment_info(settings, DataSpec(images), None)
    worse = {**best, "lr": 1e-4, "start_filters": 32}
    finished = {
        "seed": 0,
        "status": "completed",
        "epochs": 6,
        "best_epoch": 6,
        "compute_seconds": 12.0,
        "seconds_per_epoch": 2.0,
        "val_images": 9,
    }
    rows = [{**worse, **finished, "trial_id": "worse", "best_val_accuracy": 0.5},
            {**best, **finished, "trial_id": "best", "best_val_accuracy": 0.9}]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / SUMMARY_FILE, index=False)
    return folder
