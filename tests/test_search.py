"""End to end: real (small) Ray Tune searches on generated images, on CPU."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray
import torch
from ray import tune

import src.search
from src.config import (
    DEFAULT_START,
    HYPERPARAMETERS,
    SEARCH_SPACE,
    DataSpec,
    Grid,
    RunSettings,
    asha_rungs,
)
from src.errors import HypertuneError
from src.images import write_synthetic_images
from src.pipeline import prepared_data
from src.results import CHECKPOINT_FILE, SUMMARY_FILE
from src.search import ConcurrencyMonitor, run_experiment, trial_resources
from src.trainable import train_cnn


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Noisy enough that trials differ, so ASHA has someone to stop.
    return write_synthetic_images(tmp_path_factory.mktemp("images"), 4, 30, 32, seed=3)


def settings(tmp_path: Path, **changes: Any) -> RunSettings:
    defaults: dict[str, Any] = dict(
        name="exp", storage_path=tmp_path, data_dir=None, image_size=32, num_samples=6,
        max_epochs=4, grace_period=1, reduction_factor=2, seed=0,
    )  # fmt: skip
    return RunSettings(**{**defaults, **changes})


@pytest.fixture
def ray_with_one_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A logical GPU: Ray schedules 0.5-GPU trials on it; they train on the CPU, as told by
    # HYPERTUNE_DEVICE (a trial given a GPU that torch cannot use would fail, as it should).
    monkeypatch.setenv("HYPERTUNE_DEVICE", "cpu")  # before ray.init: the workers inherit it
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture
def ray_cpu_only() -> Iterator[None]:
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    yield
    ray.shutdown()


def started_together(trials: int, barrier: Path) -> Callable[..., None]:
    """train_cnn behind a start barrier: no trial trains before `trials` trials have started
    (each one RUNNING in Tune's view by then), so that they provably ran at once, however slow
    a worker is to start. Made here, not imported, so that Ray ships it to the workers by
    value; the barrier is a folder, one file per trial arrived."""

    def train_after_the_others_started(
        config: dict[str, Any], data_spec: DataSpec, max_epochs: int, start: dict[str, Any]
    ) -> None:
        barrier.mkdir(exist_ok=True)
        (barrier / tune.get_context().get_trial_id()).touch()
        deadline = time.monotonic() + 120  # only ends a run that hangs
        while len(list(barrier.iterdir())) < trials:
            assert time.monotonic() < deadline, "the other trials never started"
            time.sleep(0.01)
        train_cnn(config, data_spec, max_epochs, start)

    return train_after_the_others_started


def check_summary(table: pd.DataFrame, folder: Path, run: RunSettings) -> pd.DataFrame:
    on_disk = pd.read_csv(folder / SUMMARY_FILE)
    assert len(on_disk) == len(table) == run.num_samples
    assert on_disk["trial_id"].is_unique
    assert set(HYPERPARAMETERS) <= set(on_disk.columns)
    assert set(on_disk["status"]) <= {"completed", "stopped_early"}
    assert (on_disk["epochs"] <= run.max_epochs).all()
    assert (on_disk.loc[on_disk["status"] == "completed", "epochs"] == run.max_epochs).all()
    assert on_disk["best_val_accuracy"].between(0, 1).all()
    assert (on_disk["best_val_accuracy"] >= on_disk["final_val_accuracy"]).all()
    return on_disk


def test_two_trials_share_a_gpu_and_asha_stops_only_at_its_rungs(
    ray_with_one_gpu: None, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = settings(tmp_path)
    monkeypatch.setattr(src.search, "train_cnn", started_together(2, tmp_path / "barrier"))
    probe = ConcurrencyMonitor()
    table = run_experiment(run, DataSpec(images), monitor=probe)
    # 4 CPUs would allow 4 trials; the single GPU at 0.5 per trial allows exactly 2.
    assert probe.max_running == 2
    assert len(list((tmp_path / "barrier").iterdir())) == run.num_samples  # all went through
    assert probe.resources == {(("CPU", 1.0), ("GPU", 0.5))}
    summary = check_summary(table, tmp_path / "exp", run)
    # Which trials ASHA stops depends on the order their results arrive; that it stops the weak
    # (never the start) is tested on fixed results: test_schedulers. Here: it stops a trial only
    # at a rung (grace period 1, reduction factor 2: epochs 1 and 2 of 4).
    stopped = summary.loc[summary["status"] == "stopped_early", "epochs"]
    assert set(stopped) <= set(asha_rungs(run.max_epochs, run.grace_period, run.reduction_factor))
    # HyperOpt evaluates the starting configuration first.
    start = summary[summary["lr"].round(12) == DEFAULT_START["lr"]]
    assert len(start) == 1
    assert all(start.iloc[0][k] == DEFAULT_START[k] for k in SEARCH_SPACE)


def test_without_gpus_trials_run_on_cpus(
    ray_cpu_only: None, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = settings(tmp_path, num_samples=3, max_epochs=2)
    monkeypatch.setattr(src.search, "train_cnn", started_together(2, tmp_path / "barrier"))
    probe = ConcurrencyMonitor()
    table = run_experiment(run, DataSpec(images), monitor=probe)
    assert probe.resources == {(("CPU", 1.0),)}
    assert probe.max_running == 2
    assert len(list((tmp_path / "barrier").iterdir())) == run.num_samples  # all went through
    check_summary(table, tmp_path / "exp", run)


def test_image_size_is_a_hyperparameter_each_trial_trains_at_its_own(
    ray_cpu_only: None, images: Path, tmp_path: Path
) -> None:
    run = settings(tmp_path, max_epochs=1)
    grid = Grid(axes={"image_size": [32, 48], "lr": [3e-3]})
    data = prepared_data(images, run.image_size, run.image_sizes(grid))  # caches 32 and 48 px
    summary = run_experiment(run, data, grid)
    assert sorted(summary["image_size"]) == [32, 48]
    for row in summary.to_dict("records"):
        checkpoint = next(Path(row["path"]).glob(f"checkpoint_*/{CHECKPOINT_FILE}"))
        state = torch.load(checkpoint, weights_only=True)
        assert state["image_size"] == state["config"]["image_size"] == row["image_size"]


@pytest.mark.parametrize(
    "cluster, cpus, gpu, concurrent",
    [
        ({"CPU": 16, "GPU": 1}, 1, 0.5, 2),
        ({"CPU": 16, "GPU": 2}, 2, 0.5, 4),
        ({"CPU": 3, "GPU": 4}, 1, 0.5, 3),  # CPUs are the limit
        ({"CPU": 2}, 1, 0.0, 2),
    ],
)
def test_trial_resources_follow_the_cluster(
    cluster: dict[str, float], cpus: int, gpu: float, concurrent: int
) -> None:
    fit = trial_resources(settings(Path("."), cpus_per_trial=cpus), cluster)
    assert (fit.cpu, fit.gpu, fit.concurrent) == (cpus, gpu, concurrent)


def test_trial_larger_than_cluster_is_refused() -> None:
    with pytest.raises(HypertuneError, match="--cpus-per-trial"):
        trial_resources(settings(Path("."), cpus_per_trial=4), {"CPU": 2})
