"""--mlflow: a real tracking server (or the local store) holds one parent run per experiment and
one child run per trial, read back through MLflow's own client; a tracker that fails never
costs the run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Run
from test_faults import ROOT, driven, interrupted, resume, search_args, started, wait_for

from src.config import tracking_uri
from src.images import write_synthetic_images
from src.tracking import EXPERIMENT, STATUS_TAG, TRIAL_TAG

HYPERTUNE = [sys.executable, str(ROOT / "hypertune.py")]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_images(tmp_path_factory.mktemp("images"), 3, 16, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`mlflow server` on 127.0.0.1 at a free port, with its own store in `tmp_path`; stopped
    (it and its workers) however the test ends."""
    url = f"http://127.0.0.1:{free_port()}"
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
               "--port", url.rsplit(":", 1)[1], "--workers", "1",
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "server-artifacts")]  # fmt: skip
    with (tmp_path / "server.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # only a server that never starts ends here
        while not answers(url):
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server never answered"
            time.sleep(0.2)
        yield url, process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def runs_of(uri: str) -> tuple[Run, list[Run]]:
    """The one parent run in the tracker, and its child runs."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]  # no duplicate after --resume
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1  # every other run is one of its trials
    return parents[0], children


def test_search_resumed_is_one_parent_run_with_a_child_per_trial(
    images: Path, tmp_path: Path, server: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, _ = server
    args = [*search_args(images, tmp_path, samples=4), "--mlflow", url]
    code, stderr, _ = interrupted(args, tmp_path / "exp", 1, "SIGINT")
    assert code == 130, stderr[-2000:]
    assert runs_of(url)[0].info.status == "RUNNING"  # ended only once its results are in
    resumed = resume(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "MLflow at" not in resumed.stderr  # no tracker failure on the way

    parent, children = runs_of(url)
    folder = tmp_path / "exp"
    summary = pd.read_csv(folder / "experiment_summary.csv", dtype={"trial_id": str})
    assert parent.info.run_name == "exp" and parent.info.status == "FINISHED"
    assert parent.data.params["setting.num_samples"] == "4"
    assert parent.data.params["start.block"] == "residual"
    best = summary["best_val_accuracy"].max()
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best)
    test = json.loads((folder / "refit" / "evaluation" / "summary.json").read_text())
    assert parent.data.metrics["test_accuracy"] == pytest.approx(test["accuracy"])
    assert parent.data.metrics["test_flip_accuracy"] == pytest.approx(test["flip_accuracy"])
    client = MlflowClient(url)
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"experiment_summary.csv", "report.html", "hypertune.json"} <= files

    # One child per trial (the trial interrupted and resumed kept its run), each with its
    # configuration, every epoch's metrics at its epoch, and the status the summary gives it.
    assert sorted(c.data.tags[TRIAL_TAG] for c in children) == sorted(summary["trial_id"])
    for child in children:
        row = summary[summary["trial_id"] == child.data.tags[TRIAL_TAG]].iloc[0]
        config = json.loads((folder / row["path"] / "params.json").read_text())
        assert child.data.params["lr"] == str(config["lr"])
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        # The interruption comes right after a first report; where Tune had not yet saved that
        # epoch's checkpoint, the resumed trial trains the epoch again and logs it again.
        assert sorted({m.step for m in history}) == list(range(1, int(row["epochs"]) + 1))
        assert child.data.tags[STATUS_TAG] == row["status"]

    # The final model, as MLflow loads it, with what it needs to be applied.
    mlflow.set_tracking_uri(url)
    model = mlflow.pytorch.load_model(f"runs:/{parent.info.run_id}/model")
    info = mlflow.models.get_model_info(f"runs:/{parent.info.run_id}/model")
    assert info.metadata is not None
    side, classes = info.metadata["input_size"], info.metadata["class_names"]
    assert classes == test["class_names"]
    with torch.no_grad():
        assert model(torch.zeros(2, 3, side, side)).shape == (2, len(classes))


def test_a_tracker_that_dies_mid_run_costs_a_warning_not_the_run(
    images: Path, tmp_path: Path, server: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, process = server
    args = [*search_args(images, tmp_path, samples=4), "--mlflow", url]
    ready, go, log = tmp_path / "ended.json", tmp_path / "go", tmp_path / "driver.log"
    hooks = ["--after-trials", "1", "--then", "hold", "--record", str(ready), "--go", str(go)]
    with started(driven(hooks, *args), log) as driver:
        wait_for(ready, driver, log)  # one trial ended and logged; then the server goes
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        go.touch()
        code = driver.wait(timeout=300)
    stderr = log.read_text()
    assert code == 0, stderr[-3000:]
    # A warning from the search (then it stops asking), one from logging the results at the end.
    assert stderr.count(f"MLflow at {url} failed") == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    folder = tmp_path / "exp"
    assert len(pd.read_csv(folder / "experiment_summary.csv")) == 4
    assert (folder / "final_model.pt").is_file()
    assert (folder / "figures" / "report.html").is_file()


def test_local_store_needs_no_server(images: Path, tmp_path: Path) -> None:
    args = ["--smoke-test", "--data-dir", str(images), "--storage-path", str(tmp_path / "runs"),
            "--name", "local", "--num-samples", "2", "--max-epochs", "1", "--grace-period", "1",
            "--refit-epochs", "1", "--mlflow"]  # fmt: skip
    done = subprocess.run([*HYPERTUNE, *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    parent, children = runs_of(f"sqlite:///{tmp_path / 'logs' / 'mlflow' / 'mlflow.db'}")
    assert parent.info.run_name == "local" and len(children) == 2
    assert "test_accuracy" in parent.data.metrics
    # Artifacts beside the database, not in the working folder's ./mlruns
    assert (tmp_path / "logs" / "mlflow" / "artifacts").is_dir()
    assert not (tmp_path / "mlruns").exists()


def test_a_tracker_is_named_by_an_absolute_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # --resume from another folder must find the same store
    assert tracking_uri("") == f"sqlite:///{tmp_path / 'logs' / 'mlflow' / 'mlflow.db'}"
    assert tracking_uri("sqlite:///runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    assert tracking_uri("sqlite:////srv/m.db") == "sqlite:////srv/m.db"
    assert tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_unreachable_tracker_is_refused_before_any_work(images: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["--smoke-test", "--data-dir", str(images), "--storage-path", str(tmp_path),
            "--name", "exp", "--mlflow", url]  # fmt: skip
    done = subprocess.run([*HYPERTUNE, *args], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert f"The MLflow tracker at {url} cannot be used" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "exp").exists()
