"""MLflow (--mlflow [URI]): every experiment a run in the tracker people already use. What
appears where is the README's "Tracking in MLflow": a parent run per experiment (its settings,
plan, start, best trial, test accuracies, files and model), a child run per trial (its
configuration, its epochs' metrics, how it ended).

A tracker is a convenience, never the run: one that cannot be reached is refused before any
training (src/flags.py); one that fails later costs a warning, and the run goes on, its results
complete in its folder. A resumed experiment continues its run and its trials' runs: the run's
id is kept in hypertune.json, a trial's run is found by its trial id. A run ends (FINISHED) once
its results are logged (record_outcome); until then, and after an interruption, it is RUNNING.

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
    best_trial,
    config_of,
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
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "epoch_seconds")  # of src/trainable.py
RUNS_AT_MOST = 50_000  # one search_runs request: MLflow's most (its default, 1,000, could miss)
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
        experiment_id(open_client(uri), uri)
    except Exception as err:
        return (
            f"The MLflow tracker at {uri} cannot be used ({first_line(err)}). Start it (e.g. "
            f"`mlflow server --host 127.0.0.1 --port 5000`) and give its address, or give "
            f"--mlflow without a URI for a local store, or leave --mlflow out; nothing was run."
        )
    return None


def open_client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(client: MlflowClient, uri: str) -> str:
    """The id of the MLflow experiment EXPERIMENT, created where missing; in a local store
    with its artifacts beside the database (MLflow's default would be ./mlruns)."""
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    store = local_store(uri)
    place = None if store is None else (store / "artifacts").as_uri()
    return str(client.create_experiment(EXPERIMENT, artifact_location=place))


def local_store(uri: str) -> Path | None:
    """The folder of a SQLite store (absolute: src.config.tracking_uri), None for a server."""
    return Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else None


def first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"


class Tracker:
    """A tracker's calls, each of which may fail without failing the run: the first failure is
    a warning, after which this tracker stays quiet (a tracker that went away would otherwise
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


def log_params(client: MlflowClient, run_id: str, values: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in values.items()]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params a request
        client.log_batch(run_id, params=items[i : i + 100])


def parent_run(folder: Path, client: MlflowClient, experiment: str) -> str:
    """The experiment's run: the one it began (running again), else a new one with its
    settings, plan and starting configuration, its id kept in hypertune.json."""
    if run_id := tracking_run(folder):
        client.update_run(run_id, status="RUNNING")
        return run_id
    discard_abandoned(client, experiment, folder)
    settings, _, _ = read_experiment_info(folder)
    run = client.create_run(experiment, run_name=folder.name, tags={FOLDER_TAG: str(folder)})
    start = {k: v for k, v in start_config(settings).items() if k != "seed"}
    plan, _ = plan_and_actual(folder)  # a time budget's plan ({} without one)
    log_params(client, run.info.run_id, {**params("setting.", settings.as_dict()),
               **params("start.", start), **params("plan.", plan)})  # fmt: skip
    record_tracking_run(folder, run.info.run_id)
    return str(run.info.run_id)


def discard_abandoned(client: MlflowClient, experiment: str, folder: Path) -> None:
    """Delete the runs, and their trials' runs, that a run in `folder` left RUNNING when the
    folder was started again from scratch (`compare --resume` trains an unfinished method again;
    a user may delete an interrupted experiment and start it anew): that folder is gone."""
    unfinished = client.search_runs(
        [experiment], f"attributes.run_name = '{folder.name}' and attributes.status = 'RUNNING'"
    )  # a folder name is letters, digits and _.+- (config.NAME_PATTERN): safe to quote
    for run in unfinished:
        if run.data.tags.get(FOLDER_TAG) == str(folder):
            for child in child_runs(client, experiment, run.info.run_id).values():
                client.delete_run(child)
            client.delete_run(run.info.run_id)


def child_runs(client: MlflowClient, experiment: str, parent: str) -> dict[str, str]:
    """Trial id -> the id of its run, among the parent's child runs."""
    found = client.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{parent}'", max_results=RUNS_AT_MOST
    )
    return {
        run.data.tags[TRIAL_TAG]: run.info.run_id for run in found if TRIAL_TAG in run.data.tags
    }


class TrialRuns(LoggerCallback):
    """Every trial a child run of the experiment's run. Ray Tune's MLflowLoggerCallback does
    not serve here: a resumed trial would get a second run (it keeps trials' runs in memory
    only), a tracker that fails would raise into Tune's loop, and a run it cannot find is logged
    to MLflow's active run instead. So this is written on MLflow's client directly."""

    def __init__(self, folder: Path, uri: str, max_epochs: int) -> None:
        self.folder, self.uri, self.max_epochs = folder, uri, max_epochs
        self.runs: dict[str, str] = {}  # trial id -> its child run's id
        self.tracker = Tracker(uri)
        self.client: MlflowClient | None = None  # with the two ids below, once opened
        self.experiment, self.parent = "", ""

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "client": None}  # Tune saves its callbacks; a client is not data

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self.tracker = Tracker(self.uri)  # a resumed search tries the tracker afresh
        self.tracker.attempt("opening the experiment's run", self.open)

    def open(self) -> None:
        client = open_client(self.uri)
        self.experiment = experiment_id(client, self.uri)
        self.parent = parent_run(self.folder, client, self.experiment)
        self.runs = child_runs(client, self.experiment, self.parent)
        self.client = client

    def log_trial_start(self, trial: Trial) -> None:
        self.logging(trial, "starting", lambda client: self.start(client, trial), new=True)

    def start(self, client: MlflowClient, trial: Trial) -> None:
        if trial.trial_id in self.runs:  # resumed, or retried after an error
            client.update_run(self.runs[trial.trial_id], status="RUNNING")
            return
        tags = {"mlflow.parentRunId": self.parent, TRIAL_TAG: trial.trial_id}
        run = client.create_run(self.experiment, run_name=trial.trial_id, tags=tags)
        self.runs[trial.trial_id] = run.info.run_id
        log_params(client, run.info.run_id, params("", trial.config))

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        self.logging(trial, "logging an epoch of", lambda client: self.epoch(client, trial, result))

    def epoch(self, client: MlflowClient, trial: Trial, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp, epoch = int(result.get("timestamp", 0) * 1000), int(result["epoch"])
        metrics = [Metric(k, float(result[k]), stamp, epoch) for k in EPOCH_METRICS if k in result]
        client.log_batch(self.runs[trial.trial_id], metrics=metrics)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        self.logging(trial, "ending", lambda client: self.end(client, trial, failed))

    def end(self, client: MlflowClient, trial: Trial, failed: bool) -> None:
        last = trial.last_result or {}
        epochs = int(last.get("epoch", 0))
        status = trial_status(failed, bool(last.get("diverged")), epochs, self.max_epochs)
        client.set_tag(self.runs[trial.trial_id], STATUS_TAG, status)
        client.set_terminated(self.runs[trial.trial_id], "FAILED" if failed else "FINISHED")

    def logging(
        self, trial: Trial, what: str, action: Callable[[MlflowClient], None], new: bool = False
    ) -> None:
        """`action` on the client, guarded, for a trial that has a run (or gets one: `new`)."""
        client = self.client
        if client is not None and (new or trial.trial_id in self.runs):
            self.tracker.attempt(f"{what} trial {trial.trial_id}'s run", lambda: action(client))


def record_outcome(folder: Path, uri: str) -> None:
    """What the experiment found, logged to its run (opened here where the run had no search,
    --search-share 0) once the search and the final model are done: the best trial, the test
    accuracies, the files, the model; then the run ends. A failure is a warning."""
    Tracker(uri).attempt("logging the results", lambda: log_outcome(folder, uri))


def log_outcome(folder: Path, uri: str) -> None:
    client, files = open_client(uri), ExperimentFolder(folder)
    run_id = parent_run(folder, client, experiment_id(client, uri))
    if files.summary.is_file():
        best = best_trial(read_summary(folder))
        client.log_metric(run_id, "best_val_accuracy", float(best["best_val_accuracy"]))
        log_params(client, run_id, params("best.", config_of(best)))
    test = read_evaluation(files.evaluation) or {}
    for name in ("accuracy", "flip_accuracy"):
        if test.get(name) is not None:
            client.log_metric(run_id, f"test_{name}", float(test[name]))
    for path in (files.info, files.summary, files.report_page, files.model):
        if path.is_file():
            client.log_artifact(run_id, str(path))
    if files.model.is_file():
        log_model(files.model, uri, run_id)
        client.set_tag(run_id, MODEL_FILE_TAG, str(files.model))
    client.set_terminated(run_id, "FINISHED")


def log_model(path: Path, uri: str, run_id: str) -> None:
    """The final model as an MLflow PyTorch model ("model"), loadable with
    `mlflow.pytorch.load_model("runs:/<run id>/model")` wherever torch is (hypertune's src/
    travels with it): it takes float images (N, 3, S, S) normalised as its metadata says. Of
    an ensemble, its own network: the members (final_model.pt, logged too) each need their
    own input."""
    import mlflow
    import numpy as np
    import torch
    import torchvision
    from mlflow.models import infer_signature

    from src.inference import load_final_model

    own = load_final_model(path, torch.device("cpu"))[0]
    model, state, side = own.model, own.state, own.size
    classes = state["class_names"]
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
