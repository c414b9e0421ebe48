"""Nothing that goes wrong may lose finished work or end in a traceback."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray
import torch
from ray import tune
from ray.cluster_utils import Cluster

from src.config import CHECKPOINT_FILE, MODEL_FILE, REFIT_STATE, DataSpec, Grid, RunSettings
from src.images import load_cache, prepare_cache, scan_images, write_synthetic_images
from src.search import run_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_images(tmp_path_factory.mktemp("images"), 3, 16, 32)


@pytest.fixture(scope="module")
def many_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # For the interruption tests: with 16 images a class, an epoch is quicker than the
    # driver's bookkeeping, whose reports then arrive in bursts; the first finished trial
    # showed up with the rest, too late for a signal to land mid-experiment (2 of 7 runs).
    return write_synthetic_images(tmp_path_factory.mktemp("many_images"), 3, 128, 32)


@pytest.fixture
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


class RetryProbe(tune.Callback):
    def __init__(self) -> None:
        self.retries: dict[str, int] = {}

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1


def grid_settings(tmp_path: Path, **changes: Any) -> RunSettings:
    return RunSettings(
        **{"name": "exp", "storage_path": tmp_path, "data_dir": None, "image_size": 32,
           "max_epochs": 2, **changes}
    )  # fmt: skip


def test_diverging_trial_ends_cleanly_as_a_bad_result(
    local_ray: None, images: Path, tmp_path: Path
) -> None:
    grid = Grid(axes={"lr": [3e-3, math.inf], "batch_size": [16]})
    summary = run_experiment(grid_settings(tmp_path), DataSpec(images, 32), grid)
    trials = {row["lr"]: row for row in summary.to_dict("records")}
    assert trials[math.inf]["status"] == "diverged"
    assert trials[math.inf]["epochs"] == 1  # ended at the first non-finite loss
    assert trials[math.inf]["final_val_accuracy"] == 0.0  # what ASHA and HyperOpt see
    assert trials[3e-3]["status"] == "completed" and trials[3e-3]["epochs"] == 2
    # No checkpoint of NaN weights: the diverged trial kept none at all.
    assert not list(Path(trials[math.inf]["path"]).glob("checkpoint_*"))
    # Checkpoints hold plain values and CPU tensors only: a plain torch.load reads them.
    checkpoint = next(Path(trials[3e-3]["path"]).glob(f"checkpoint_*/{CHECKPOINT_FILE}"))
    state = torch.load(checkpoint, weights_only=True)
    assert state["class_names"] == ["class_0", "class_1", "class_2"] and state["epoch"] >= 1
    assert all(torch.isfinite(t).all() and t.device.type == "cpu" for t in state["model"].values())


def test_raising_trial_is_retried_then_recorded_as_errored(
    local_ray: None, images: Path, tmp_path: Path
) -> None:
    probe = RetryProbe()
    grid = Grid(axes={"batch_size": [16, 0], "dropout": [0.2]})  # batch_size 0 raises
    settings = grid_settings(tmp_path, max_failures=1)
    summary = run_experiment(settings, DataSpec(images, 32), grid, callbacks=[probe])
    trials = {row["batch_size"]: row for row in summary.to_dict("records")}
    assert trials[0]["status"] == "error" and "ZeroDivisionError" in trials[0]["error"]
    assert trials[16]["status"] == "completed"
    assert sorted(probe.retries.values()) == [1]  # the failing trial, retried once
    on_disk = pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")
    assert sorted(on_disk["status"]) == ["completed", "error"]


def finished_trials(folder: Path, epochs: int) -> dict[str, bytes]:
    """progress.csv of every trial whose last reported epoch is `epochs`. Not a line count:
    after a kill -9, a trial trains again the epochs after its last saved state, and its
    progress.csv lists them twice."""
    done = {}
    for progress in folder.glob("trial_*/progress.csv"):
        content = progress.read_bytes()
        header, *rows = content.splitlines() or [b""]
        if rows and content.endswith(b"\n"):  # not a line half written
            last_epoch = rows[-1].split(b",")[header.split(b",").index(b"epoch")]
            if int(last_epoch) == epochs:
                done[progress.parent.name] = content
    return done


def search_command(images: Path, storage: Path, samples: int) -> list[str]:
    """The smoke test, every value it presets but the epochs typed over it (typed flags win):
    no early stopping (grace period = max epochs), so a finished trial has 3 epochs."""
    return [sys.executable, str(ROOT / "hypertune.py"), "--smoke-test", "--data-dir",
            str(images), "--storage-path", str(storage), "--name", "exp", "--num-samples",
            str(samples), "--max-epochs", "3", "--grace-period", "3"]  # fmt: skip


@contextmanager
def started(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`cmd` running in a session of its own, its stderr in `log` (a file, not a pipe: a full
    pipe would stall it), with Ctrl-C's default action as in a terminal: a suite started in the
    background by a shell without job control (`make test &`) runs with SIGINT ignored, which
    children inherit and Python keeps. Whatever happens in the block, it and every process it
    started (Ray's too) are killed at the end, so that a failed assertion leaves nothing
    running."""
    with log.open("w") as stderr:
        process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, cwd=ROOT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def interrupt_after(
    cmd: list[str], folder: Path, finished: int, sig: signal.Signals
) -> tuple[int, str, dict[str, bytes]]:
    """Start `cmd`, send `sig` once `finished` trials are done. Returns its exit code, its
    stderr, and the finished trials' progress.csv as they were when the signal was sent."""
    log = folder.parent / "driver.log"
    with started(cmd, log) as driver:
        deadline = time.monotonic() + 240
        while len(done := finished_trials(folder, 3)) < finished:
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
        driver.send_signal(sig)
        driver.wait(timeout=120)
    return driver.returncode, log.read_text(), done


def test_two_runs_started_at_once_with_one_name_never_share_its_folder(
    images: Path, tmp_path: Path
) -> None:
    cmd = search_command(images, tmp_path, samples=3)
    with started(cmd, tmp_path / "a.log") as first, started(cmd, tmp_path / "b.log") as second:
        codes = sorted([first.wait(timeout=300), second.wait(timeout=300)])
    assert codes == [0, 2]
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "An experiment named 'exp' already exists" in logs and "Traceback" not in logs
    summary = pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")
    assert len(summary) == 3 and len(list((tmp_path / "exp").glob("trial_*"))) == 3


def test_resume_of_an_experiment_that_is_running_is_refused(
    many_images: Path, tmp_path: Path
) -> None:
    cmd = search_command(many_images, tmp_path, samples=4)
    with started(cmd, tmp_path / "driver.log") as driver:
        deadline = time.monotonic() + 120
        while not (tmp_path / "exp" / "hypertune.json").is_file():
            assert time.monotonic() < deadline and driver.poll() is None, "the run did not start"
            time.sleep(0.2)
        resumed = subprocess.run(
            [*cmd, "--resume"], capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert resumed.returncode == 2, resumed.stderr[-2000:]
        assert "in use by another hypertune process" in resumed.stderr
        assert driver.wait(timeout=300) == 0  # the running search went on undisturbed
    assert len(pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")) == 4


def test_resume_after_kill_9_keeps_finished_trials(many_images: Path, tmp_path: Path) -> None:
    cmd = search_command(many_images, tmp_path, samples=6)
    code, _, before = interrupt_after(cmd, tmp_path / "exp", 2, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert 2 <= len(before) < 6, "the kill should land mid-experiment"
    assert not (tmp_path / "exp" / "experiment_summary.csv").exists()

    resumed = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = finished_trials(tmp_path / "exp", 3)
    assert len(after) == 6  # the total asked for (not the smoke preset's 4), none duplicated
    assert all(after[name] == content for name, content in before.items())  # byte-identical
    summary = pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")
    assert len(summary) == 6 and summary["trial_id"].is_unique
    assert (summary["status"] == "completed").all()
    assert (tmp_path / "exp" / "final_model.pt").is_file()  # the refit ran after the resume

    again = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert again.returncode == 0 and "is complete" in again.stdout


@pytest.mark.parametrize(
    "method, searcher, scheduler",
    [
        (["--searcher", "de"], "de", "asha"),
        (["--searcher", "bohb"], "bohb", "hyperband"),
        (["--scheduler", "pbt", "--grace-period", "1"], "random", "pbt"),
    ],
    ids=["de", "bohb", "pbt"],
)
def test_every_searcher_and_scheduler_resumes_after_ctrl_c(
    method: list[str], searcher: str, scheduler: str, many_images: Path, tmp_path: Path
) -> None:
    # Ctrl-C, not kill -9: Tune saves a consistent state on the way out. After a kill -9 these
    # methods can resume into a lost checkpoint or a searcher that never saw a trial (README,
    # When things go wrong).
    cmd = [*search_command(many_images, tmp_path, samples=6), *method]
    code, _, before = interrupt_after(cmd, tmp_path / "exp", 1, signal.SIGINT)
    assert code == 130 and len(before) < 6, "the interruption should land mid-experiment"
    resumed = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = finished_trials(tmp_path / "exp", 3)
    assert all(after[name] == content for name, content in before.items())
    summary = pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")
    assert len(summary) == 6 and summary["trial_id"].is_unique
    assert set(summary["status"]) <= {"completed", "stopped_early"}
    # Saved as ended too, so another --resume trains nothing (HyperBand's halving stops paused
    # trials, which Tune alone would leave saved as paused: src/bohb.py).
    assert {t.status for t in tune.ExperimentAnalysis(str(tmp_path / "exp")).trials} == {
        "TERMINATED"
    }
    assert (tmp_path / "exp" / "final_model.pt").is_file()
    # The method is recorded with the experiment, so --resume needed no flags for it.
    settings = json.loads((tmp_path / "exp" / "hypertune.json").read_text())["settings"]
    assert (settings["searcher"], settings["scheduler"]) == (searcher, scheduler)


def test_sigterm_stops_a_search_as_ctrl_c_does(many_images: Path, tmp_path: Path) -> None:
    cmd = search_command(many_images, tmp_path, samples=4)
    code, stderr, _ = interrupt_after(cmd, tmp_path / "exp", 1, signal.SIGTERM)
    assert code == 130 and "--resume --name exp" in stderr  # stopped, saved, and said how
    assert not (tmp_path / "exp" / "experiment_summary.csv").exists()  # so: resumable
    resumed = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")) == 4


def test_ctrl_c_during_the_refit_stops_it_and_resume_finishes_it(
    images: Path, tmp_path: Path
) -> None:
    cmd = [*search_command(images, tmp_path, samples=2), "--refit-epochs", "400"]
    with started(cmd, tmp_path / "driver.log") as driver:
        deadline = time.monotonic() + 240
        while not (tmp_path / "exp" / REFIT_STATE).is_file():  # the refit's first epoch is done
            assert time.monotonic() < deadline and driver.poll() is None, "no refit started"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        code = driver.wait(timeout=60)
    stderr = (tmp_path / "driver.log").read_text()
    assert code == 130 and "interrupted. Continue with" in stderr, stderr[-2000:]
    assert not (tmp_path / "exp" / MODEL_FILE).exists()  # no half-trained model file
    resumed = subprocess.run(
        [*cmd, "--resume"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing from epoch" in resumed.stderr
    assert (tmp_path / "exp" / MODEL_FILE).is_file()


def test_corrupted_cache_is_rebuilt(tmp_path: Path) -> None:
    folder = scan_images(write_synthetic_images(tmp_path / "images", 2, 5, 32))
    cache = prepare_cache(folder, 32, tmp_path / "cache")
    images = cache / "images.npy"
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])  # truncated
    assert prepare_cache(folder, 32, tmp_path / "cache") == cache
    assert load_cache(cache).images.shape == (10, 3, 32, 32)


def test_trials_spread_over_the_nodes_of_a_cluster(images: Path, tmp_path: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        cmd = [sys.executable, str(ROOT / "hypertune.py"), "--data-dir", str(images),
               "--storage-path", str(tmp_path), "--name", "exp", "--num-samples", "4",
               "--max-epochs", "2", "--grace-period", "2", "--image-size", "32",
               "--address", cluster.address, "--no-refit"]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        cluster.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    nodes = {
        pd.read_csv(p)["node_id"].iloc[0] for p in (tmp_path / "exp").glob("trial_*/progress.csv")
    }
    assert len(nodes) == 2
    assert len(pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")) == 4


def test_depth_too_large_for_the_image_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hypertune.py"), "grid", "--x", "num_conv_layers=5,6",
         "--y", "dropout=0.1", "--image-size", "32", "--storage-path", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert "num_conv_layers=6 does not fit 32 px images" in result.stderr
    assert "Traceback" not in result.stderr
