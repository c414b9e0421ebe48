"""Nothing that goes wrong may lose finished work or end in a traceback."""

from __future__ import annotations

import json
import math
import multiprocessing
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

from src.config import DataSpec, Grid, RunSettings
from src.errors import HypertuneError
from src.images import load_cache, prepare_cache, scan_images, write_synthetic_images
from src.results import CHECKPOINT_FILE, MODEL_FILE, ExperimentFolder, claimed
from src.search import run_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_images(tmp_path_factory.mktemp("images"), 3, 16, 32)


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
    summary = run_experiment(grid_settings(tmp_path), DataSpec(images), grid)
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
    summary = run_experiment(settings, DataSpec(images), grid, callbacks=[probe])
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


def search_args(images: Path, storage: Path, samples: int) -> list[str]:
    """The smoke test, every value it presets but the epochs typed over it (typed flags win):
    no early stopping (grace period = max epochs), so a finished trial has 3 epochs."""
    return ["--smoke-test", "--data-dir", str(images), "--storage-path", str(storage),
            "--name", "exp", "--num-samples", str(samples), "--max-epochs", "3",
            "--grace-period", "3"]  # fmt: skip


def resume(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """hypertune.py `args` --resume, as a user types it again after a stop."""
    return subprocess.run(
        [sys.executable, str(ROOT / "hypertune.py"), *args, "--resume"],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def driven(hooks: list[str], *args: str) -> list[str]:
    """hypertune.py `args`, run by tests/driver.py with `hooks`: they act on what the run has
    reached (trials ended, callers arrived, refit epochs), never on the clock."""
    return [sys.executable, str(ROOT / "tests" / "driver.py"), *hooks, "--", *args]


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


def interrupted(
    args: list[str], folder: Path, ended: int, then: str
) -> tuple[int, str, dict[str, bytes]]:
    """hypertune.py `args`, sent `then` (SIGINT, SIGTERM or SIGKILL) by its own driver at the
    end of the step of Tune's loop in which its `ended`-th trial ended. Returns the exit code,
    the stderr, and the progress.csv of each trial that had ended, as the run left them."""
    record, log = folder.parent / "ended.json", folder.parent / "driver.log"
    hooks = ["--after-trials", str(ended), "--then", then, "--record", str(record)]
    with started(driven(hooks, *args), log) as driver:
        code = driver.wait(timeout=240)
    assert record.is_file(), f"the run ended before {ended} trial(s) did: {log.read_text()[-2000:]}"
    names = json.loads(record.read_text())
    return (
        code,
        log.read_text(),
        {name: (folder / name / "progress.csv").read_bytes() for name in names},
    )


def wait_for(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until `process` has written `path` (the deadline only ends a run that hangs)."""
    deadline = time.monotonic() + 240
    while not path.is_file():
        assert process.poll() is None, f"it ended first: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)


def test_two_runs_started_at_once_with_one_name_never_share_its_folder(
    images: Path, tmp_path: Path
) -> None:
    # Both runs wait for each other just before claiming the folder: they meet there.
    meeting = ["--meet", "2", "--barrier", str(tmp_path / "barrier")]
    cmd = driven(meeting, *search_args(images, tmp_path, samples=3))
    with started(cmd, tmp_path / "a.log") as first, started(cmd, tmp_path / "b.log") as second:
        codes = sorted([first.wait(timeout=300), second.wait(timeout=300)])
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert codes == [0, 2], logs[-3000:]
    assert "An experiment named 'exp' already exists" in logs and "Traceback" not in logs
    summary = pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")
    assert len(summary) == 3 and len(list((tmp_path / "exp").glob("trial_*"))) == 3


def claim_in_rounds(storage: Path, rounds: int, barrier: Any, arrived: Any, out: Path) -> None:
    """In a spawned process, once per round: meet the other caller (a barrier, then a spin on
    a shared counter, which releases both within a fraction of a microsecond where each has a
    core), claim the round's new folder, and hold it (or have been refused) until the other
    has tried too."""
    outcomes = []
    for i in range(rounds):
        barrier.wait()
        with arrived.get_lock():
            arrived.value += 1
        while arrived.value < 2 * (i + 1):
            pass
        try:
            with claimed(storage / f"exp{i}", new=True):
                outcomes.append("claimed")
                barrier.wait()
        except HypertuneError as refused:
            outcomes.append(str(refused))
            barrier.wait()
    out.write_text(json.dumps(outcomes))


def test_claims_of_one_new_name_released_together_admit_exactly_one(tmp_path: Path) -> None:
    rounds = 200
    spawn = multiprocessing.get_context("spawn")  # fork would copy this process's threads
    barrier, arrived = spawn.Barrier(2, timeout=120), spawn.Value("i", 0)
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    callers = [
        spawn.Process(target=claim_in_rounds, args=(tmp_path, rounds, barrier, arrived, out))
        for out in outs
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=240)
    assert [caller.exitcode for caller in callers] == [0, 0]
    a, b = (json.loads(out.read_text()) for out in outs)
    for i, outcomes in enumerate(zip(a, b, strict=True)):
        assert sorted(outcomes, key=len)[0] == "claimed", (i, outcomes)  # one caller got it
        assert f"An experiment named 'exp{i}' already exists" in sorted(outcomes, key=len)[1]
        assert (tmp_path / f"exp{i}").is_dir()  # the refused caller left it alone


def test_resume_of_an_experiment_that_is_running_is_refused(images: Path, tmp_path: Path) -> None:
    args = search_args(images, tmp_path, samples=4)
    ready, go, log = tmp_path / "ended.json", tmp_path / "go", tmp_path / "driver.log"
    # The search holds still (its folder claimed) once its first trial has ended.
    hooks = ["--after-trials", "1", "--then", "hold", "--record", str(ready), "--go", str(go)]
    with started(driven(hooks, *args), log) as driver:
        wait_for(ready, driver, log)
        resumed = resume(args, timeout=120)
        go.touch()
        code = driver.wait(timeout=300)
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    assert "in use by another hypertune process" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert code == 0, log.read_text()[-2000:]  # the running search went on undisturbed
    assert len(pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")) == 4


def test_resume_after_kill_9_keeps_finished_trials(images: Path, tmp_path: Path) -> None:
    args = search_args(images, tmp_path, samples=6)
    # Killed as its second trial ended (the experiment state saved just before, as Tune saves
    # it every second): two trials finished, four to go.
    code, _, before = interrupted(args, tmp_path / "exp", 2, "SIGKILL")
    assert code == -signal.SIGKILL
    assert len(before) == 2 and set(before) <= set(finished_trials(tmp_path / "exp", 3))
    assert not (tmp_path / "exp" / "experiment_summary.csv").exists()

    resumed = resume(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = finished_trials(tmp_path / "exp", 3)
    assert len(after) == 6  # the total asked for (not the smoke preset's 4), none duplicated
    assert all(after[name] == content for name, content in before.items())  # byte-identical
    summary = pd.read_csv(tmp_path / "exp" / "experiment_summary.csv")
    assert len(summary) == 6 and summary["trial_id"].is_unique
    assert (summary["status"] == "completed").all()
    assert (tmp_path / "exp" / "final_model.pt").is_file()  # the refit ran after the resume

    again = resume(args, timeout=120)
    assert again.returncode == 0 and "is complete" in again.stdout


@pytest.mark.parametrize(
    "method, searcher, scheduler, stop",
    [
        (["--searcher", "de"], "de", "asha", "SIGINT"),
        (["--searcher", "bohb"], "bohb", "hyperband", "SIGINT"),
        # SIGTERM (kill, a batch scheduler, a shutdown) stops a search as Ctrl-C does.
        (["--scheduler", "pbt", "--grace-period", "1"], "random", "pbt", "SIGTERM"),
    ],
    ids=["de", "bohb", "pbt-sigterm"],
)
def test_every_searcher_and_scheduler_resumes_after_ctrl_c(
    method: list[str], searcher: str, scheduler: str, stop: str, images: Path, tmp_path: Path
) -> None:
    # Ctrl-C, not kill -9: Tune saves a consistent state on the way out. After a kill -9 these
    # methods can resume into a lost checkpoint or a searcher that never saw a trial (README,
    # When things go wrong).
    args = [*search_args(images, tmp_path, samples=6), *method]
    code, stderr, before = interrupted(args, tmp_path / "exp", 1, stop)
    # Interrupted in the search, as its first trial ended (HyperBand may end a few at once):
    # stopped, saved, and said how to go on.
    assert code == 130 and "--resume --name exp" in stderr, stderr[-2000:]
    assert 1 <= len(before) < 6
    assert not (tmp_path / "exp" / "experiment_summary.csv").exists()
    resumed = resume(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The trials that had ended were kept as they were; the others were trained to the end.
    for name, content in before.items():
        assert (tmp_path / "exp" / name / "progress.csv").read_bytes() == content
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


def test_ctrl_c_during_the_refit_stops_it_and_resume_finishes_it(
    images: Path, tmp_path: Path
) -> None:
    args = [*search_args(images, tmp_path, samples=2), "--refit-epochs", "4"]
    log = tmp_path / "driver.log"
    # Ctrl-C as the refit starts its third epoch: two trained and saved.
    with started(driven(["--refit-interrupt-at-epoch", "3"], *args), log) as driver:
        code = driver.wait(timeout=240)
    stderr = log.read_text()
    assert code == 130 and "interrupted. Continue with" in stderr, stderr[-2000:]
    assert ExperimentFolder(tmp_path / "exp").refit_state.is_file()
    assert not (tmp_path / "exp" / MODEL_FILE).exists()  # no half-trained model file
    resumed = resume(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing from epoch 2 of 4" in resumed.stderr
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
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # it wins over --address
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
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
