"""MLflow (--mlflow [URI]): every experiment a run in the tracker people already use.

What appears where, in MLflow's terms. The MLflow experiment "hypertune" holds one parent run per
hypertune experiment, named like its folder (tag hypertune.folder: the folder itself):
- params: the settings ("setting.*"), the time budget's plan ("plan.*") and the starting
  configuration ("start.*"); once the search ends, the best trial's configuration ("best.*");
- metrics: best_val_accuracy (the best trial's), test_accuracy and test_flip_accuracy (the final
  model's);
- artifacts: hypertune.json (settings, time plan and what ran), experiment_summary.csv (one row
  per trial), report.html (the page), final_model.pt (the file `predict` takes; tag
  hypertune.model_file says where it was written) and "model": the same weights as an MLflow
  PyTorch model, which `mlflow.pytorch.load_model` loads (class names, input size and
  normalisation in its metadata).
Each trial is a child run (run name: its trial id): its configuration as params, every epoch's
train_loss, val_loss, val_accuracy and epoch_seconds with the epoch as step, and tag
hypertune.status: completed, stopped_early, diverged or error.

A tracker is a convenience, never the run: one that cannot be reached is refused before any
training (src/flags.py), one that fails later costs one warning and the run goes on, its results
complete in its folder. A resumed experiment continues its parent run and its trials' runs: the
parent's id is kept in hypertune.json, a trial's run is found by its trial id.

MLflow takes seconds to import: only a run with --mlflow imports it (inside these functions).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from ray.tune.logger import LoggerCallback

from src.config import start_config
from src.results import (
    ExperimentFolder,
    best_config,
    plan_and_actual,
    read_evaluation,
    read_experiment_info,
    read_summary,
    record_tracking_run,
    tracking_run,
    trial_status,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from ray.tune.experiment import Trial

EXPERIMENT = "hypertune"  # the MLflow experiment that holds every hypertune experiment
FOLDER_TAG = "hypertune.folder"  # a parent run's experiment folder
TRIAL_TAG = "hypertune.trial_id"  # a child run's trial
STATUS_TAG = "hypertune.status"  # a child run's end, as the summary says it (results.trial_status)
MODEL_FILE_TAG = "hypertune.model_file"  # where the parent's final model was written
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "epoch_seconds")  # src/trainable.py's
# MLflow retries a request 7 times with growing pauses (minutes in all) and waits 120 s for an
# answer: a tracker that went away would stall every epoch. One retry, 10 s: a warning instead.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def unreachable(uri: str) -> str | None:
    """Why MLflow cannot be used at `uri`, in a paragraph, or None: asked for real, as a run
    would, before anything trains."""
    try:
        if (store := local_store(uri)) is not None:
            store.mkdir(parents=True, exist_ok=True)
        experiment_id(client(uri), uri)
    except Exception as err:
        return (
            f"The MLflow tracker at {uri} cannot be used ({first_line(err)}). Start it (e.g. "
            f"`mlflow server --host 127.0.0.1 --port 5000`) and give its address, or give "
            f"--mlflow without a URI for a local store, or leave --mlflow out; nothing was run."
        )
    return None


def client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow: MlflowClient, uri: str) -> str:
    """The id of the MLflow experiment EXPERIMENT, created where missing; in the local store
    with its artifacts beside the database (MLflow's default would be ./mlruns)."""
    found = mlflow.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    store = local_store(uri)
    place = None if store is None else (store / "artifacts").as_uri()
    return str(mlflow.create_experiment(EXPERIMENT, artifact_location=place))


def local_store(uri: str) -> Path | None:
    """The folder of a SQLite store (--mlflow without a URI), None for a server."""
    return Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else None


def first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"


class Tracker:
    """A tracker's calls, each of which may fail without failing the run: the first failure is
    one warning, after which this tracker stays quiet (a tracker that went away would otherwise
    cost a timeout per call)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.failed = False

    def attempt(self, what: str, action: Callable[[], Any]) -> Any:
        if self.failed:
            return None
        try:
            return action()
        except Exception as err:
            self.failed = True
            logger.warning(
                f"MLflow at {self.uri} failed while {what} ({first_line(err)}); the run goes on "
                f"without it, its results complete in its folder."
            )
            return None


def params(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    """Values as MLflow params (text): names prefixed, structures as JSON."""
    plain = (str, int, float, bool, type(None))
    return {f"{prefix}{k}": str(v) if isinstance(v, plain) else json.dumps(v)
            for k, v in values.items()}  # fmt: skip


def log_params(mlflow: MlflowClient, run_id: str, values: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in values.items()]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params a request
        mlflow.log_batch(run_id, params=items[i : i + 100])


def parent_run(folder: Path, mlflow: MlflowClient, uri: str) -> str:
    """The experiment's run: the one it began (resumed: running again), else a new one with its
    settings and starting configuration, its id kept in hypertune.json."""
    if run_id := tracking_run(folder):
        mlflow.update_run(run_id, status="RUNNING")
        return run_id
    settings, _, _ = read_experiment_info(folder)
    run = mlflow.create_run(
        experiment_id(mlflow, uri), run_name=folder.name, tags={FOLDER_TAG: str(folder)}
    )
    start = {k: v for k, v in start_config(settings).items() if k != "seed"}
    plan, _ = plan_and_actual(folder)  # a time budget's plan ({} without one)
    log_params(mlflow, run.info.run_id, {**params("setting.", settings.as_dict()),
               **params("start.", start), **params("plan.", plan)})  # fmt: skip
    record_tracking_run(folder, run.info.run_id)
    return str(run.info.run_id)


class TrialRuns(LoggerCallback):
    """Every trial a child run of the experiment's parent run. Ray Tune's MLflowLoggerCallback
    does not serve here: a resumed trial would get a second run (it keeps trials' runs in
    memory only), a tracker that fails would raise into Tune's loop, and a run it cannot find
    is logged to MLflow's active run instead. So this is written on the client directly."""

    def __init__(self, folder: Path, uri: str, max_epochs: int) -> None:
        self.folder, self.uri, self.max_epochs = folder, uri, max_epochs
        self.parent: str | None = None
        self.runs: dict[str, str] = {}  # trial id -> its child run's id
        self.tracker = Tracker(uri)
        self.mlflow: MlflowClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "mlflow": None}  # Tune saves its callbacks; a client is not data

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self.tracker = Tracker(self.uri)  # a resumed search tries the tracker afresh
        self.tracker.attempt("opening the experiment's run", self.open)

    def open(self) -> None:
        self.mlflow = client(self.uri)
        self.experiment = experiment_id(self.mlflow, self.uri)
        self.parent = parent_run(self.folder, self.mlflow, self.uri)
        children = self.mlflow.search_runs(
            [self.experiment], f"tags.mlflow.parentRunId = '{self.parent}'"
        )
        self.runs = {run.data.tags[TRIAL_TAG]: run.info.run_id for run in children
                     if TRIAL_TAG in run.data.tags}  # fmt: skip

    def log_trial_start(self, trial: Trial) -> None:
        self.tracker.attempt(f"starting trial {trial.trial_id}'s run", lambda: self.start(trial))

    def start(self, trial: Trial) -> None:
        if self.mlflow is None or self.parent is None:
            return
        if trial.trial_id in self.runs:  # resumed, or retried after an error
            self.mlflow.update_run(self.runs[trial.trial_id], status="RUNNING")
            return
        tags = {"mlflow.parentRunId": self.parent, TRIAL_TAG: trial.trial_id}
        run = self.mlflow.create_run(self.experiment, run_name=trial.trial_id, tags=tags)
        self.runs[trial.trial_id] = run.info.run_id
        log_params(self.mlflow, run.info.run_id, params("", trial.config))

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        run_id, mlflow = self.runs.get(trial.trial_id), self.mlflow
        if run_id is None or mlflow is None:
            return
        from mlflow.entities import Metric

        stamp, epoch = int(result.get("timestamp", 0) * 1000), int(result["epoch"])
        metrics = [Metric(k, float(result[k]), stamp, epoch) for k in EPOCH_METRICS if k in result]
        self.tracker.attempt(
            f"logging trial {trial.trial_id}'s epoch {epoch}",
            lambda: mlflow.log_batch(run_id, metrics=metrics),
        )

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        run_id, mlflow = self.runs.get(trial.trial_id), self.mlflow
        if run_id is None or mlflow is None:
            return
        last = trial.last_result or {}
        status = trial_status(failed, bool(last.get("diverged")), int(last.get("epoch", 0)),
                              self.max_epochs)  # fmt: skip

        def end() -> None:
            mlflow.set_tag(run_id, STATUS_TAG, status)
            mlflow.set_terminated(run_id, "FAILED" if failed else "FINISHED")

        self.tracker.attempt(f"ending trial {trial.trial_id}'s run", end)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """The parent run ends with the search (KILLED where it was interrupted: --resume runs
        it again); the final model, where one follows, is logged to it after (record_outcome)."""
        ended = all(trial.status in ("TERMINATED", "ERROR") for trial in trials)
        parent, mlflow = self.parent, self.mlflow
        if parent is not None and mlflow is not None:
            self.tracker.attempt(
                "ending the experiment's run",
                lambda: mlflow.set_terminated(parent, "FINISHED" if ended else "KILLED"),
            )


def record_outcome(folder: Path, uri: str) -> None:
    """What the experiment found, logged to its run once the search (and the final model) are
    done: the best trial, the test accuracies, the files, the model. A failure is a warning."""
    tracker = Tracker(uri)
    run_id = tracking_run(folder)
    if run_id is not None:
        tracker.attempt("logging the results", lambda: log_outcome(folder, uri, run_id))


def log_outcome(folder: Path, uri: str, run_id: str) -> None:
    mlflow, files = client(uri), ExperimentFolder(folder)
    mlflow.update_run(run_id, status="RUNNING")
    if files.summary.is_file():
        table = read_summary(folder)
        mlflow.log_metric(run_id, "best_val_accuracy", float(table["best_val_accuracy"].max()))
        log_params(mlflow, run_id, params("best.", best_config(folder)))
    test = read_evaluation(files.evaluation) or {}
    for name in ("accuracy", "flip_accuracy"):
        if test.get(name) is not None:
            mlflow.log_metric(run_id, f"test_{name}", float(test[name]))
    for path in (files.info, files.summary, files.report_page, files.model):
        if path.is_file():
            mlflow.log_artifact(run_id, str(path))
    if files.model.is_file():
        log_model(files.model, uri, run_id)
        mlflow.set_tag(run_id, MODEL_FILE_TAG, str(files.model))
    mlflow.set_terminated(run_id, "FINISHED")


def log_model(path: Path, uri: str, run_id: str) -> None:
    """The final model as an MLflow PyTorch model ("model"), loadable with
    `mlflow.pytorch.load_model("runs:/<run id>/model")` wherever torch is (hypertune's src/
    travels with it): it takes float images (N, 3, S, S) normalised as its metadata says."""
    import mlflow
    import numpy as np
    import torch
    import torchvision
    from mlflow.models import infer_signature

    from src.inference import applied_size, load_final_model

    model, state = load_final_model(path, torch.device("cpu"))
    side, classes = applied_size(state), state["class_names"]
    signature = infer_signature(
        np.zeros((1, 3, side, side), np.float32), np.zeros((1, len(classes)), np.float32)
    )
    metadata = {"class_names": classes, "input_size": side, "mean": state["mean"],
                "std": state["std"], "hypertune_model_file": str(path)}  # fmt: skip
    versions = [f"torch=={torch.__version__.split('+')[0]}",
                f"torchvision=={torchvision.__version__.split('+')[0]}"]  # fmt: skip
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(
            model, name="model", signature=signature, metadata=metadata,
            pip_requirements=versions, code_paths=[str(Path(__file__).parent)],
            serialization_format="pickle",  # the module itself, with src/ beside it: any batch size
        )  # fmt: skip
