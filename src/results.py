"""The experiment folder (logs/ray_results/<name>/) and hypertune's own files in it: every
file name lives here, `ExperimentFolder` hands out the paths, and `hypertune.json` (what the
experiment is, versioned), `experiment_summary.csv` (one row per trial, from Ray's ResultGrid)
and the final model's test figures are written and read here only. No Ray at import time:
predict and evaluate read these files without it."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from src.config import (
    HYPERPARAMETERS,
    METRIC,
    SEARCHABLE,
    DataSpec,
    Grid,
    RunSettings,
    as_block,
    block_of,
    current_config,
    is_start_point,
    name_taken,
    start_config,
    value_type,
    with_blocks,
)
from src.errors import HypertuneError, space_for

if TYPE_CHECKING:
    from ray.tune import Result, ResultGrid

# The files hypertune writes into an experiment folder, beside Ray's trial_<id>/ folders.
EXPERIMENT_INFO = "hypertune.json"  # search or grid, its settings, data, plan: analysis, resume
INFO_FORMAT = 2  # hypertune.json's version; 1 (no "format" key) had no plan, actual, command
SUMMARY_FILE = "experiment_summary.csv"  # one row per trial; written only once all finished
CHECKPOINT_FILE = "checkpoint.pt"  # inside each trial's checkpoint_* folders, and in refit/
MODEL_FILE = "final_model.pt"  # the refit model: one file, all that `predict` needs
REFIT_DIR = "refit"  # the refit's resumable training state (checkpoint.pt) and evaluation/
EVALUATION_DIR = f"{REFIT_DIR}/evaluation"  # the final model's test figures (summary.json)
EVALUATION_SUMMARY = "summary.json"  # in an evaluation folder: accuracy, confusion, classes
FIGURES_DIR = "figures"  # src/analysis.py's figures and tables, the report page among them
REPORT_PAGE = "report.html"  # the whole experiment on one page (src/report.py)
COMPARISON_DIR = "compare"  # in a comparison's folder: its table and anytime figure
LOCK_FILE = ".hypertune.lock"  # held by the process that runs, resumes or refits it
ERROR_LOG = "hypertune-error.log"  # the traceback of an unexpected error (a bug), to report
# Ray's own files in a trial's folder (trial_<id>/) that hypertune reads back.
TRIAL_PARAMS = "params.json"  # the trial's configuration
TRIAL_PROGRESS = "progress.csv"  # one row per epoch it reported
TRIAL_ERROR = "error.txt"  # there where the trial raised


@dataclass(frozen=True)
class ExperimentFolder:
    """Where an experiment's files are: the one place that joins a storage path and a name."""

    path: Path

    @classmethod
    def at(cls, storage_path: Path, name: str) -> ExperimentFolder:
        return cls(storage_path / name)

    @classmethod
    def of(cls, settings: RunSettings) -> ExperimentFolder:
        return cls.at(settings.storage_path, settings.name)

    @property
    def info(self) -> Path:
        return self.path / EXPERIMENT_INFO

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def refit_state(self) -> Path:
        return self.path / REFIT_DIR / CHECKPOINT_FILE  # after every epoch of the refit

    @property
    def evaluation(self) -> Path:
        return self.path / EVALUATION_DIR

    @property
    def figures(self) -> Path:
        return self.path / FIGURES_DIR

    @property
    def report_page(self) -> Path:
        return self.figures / REPORT_PAGE

    @property
    def comparison(self) -> Path:
        return self.path / COMPARISON_DIR

    @property
    def lock(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def error_log(self) -> Path:
        return self.path / ERROR_LOG


@dataclass(frozen=True)
class Evaluation:
    class_names: list[str]
    confusion: np.ndarray  # [true class, predicted class] counts
    image_size: int | None = None  # px the images were resized to (src.inference.applied_size)
    flipped: np.ndarray | None = None  # the same counts, each image scored with its mirror too
    members: int = 1  # networks whose probabilities were averaged (an ensemble: refit --ensemble)
    seconds_per_image: float | None = None  # of the plain pass, on the machine that scored it

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.confusion.sum())

    @property
    def flip_accuracy(self) -> float | None:
        """The accuracy with flip test-time augmentation (src.evaluate.confusions)."""
        return None if self.flipped is None else float(np.trace(self.flipped) / self.flipped.sum())

    def per_class(self) -> pd.DataFrame:
        hits = np.diag(self.confusion)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = hits / self.confusion.sum(0)
            recall = hits / self.confusion.sum(1)
        return pd.DataFrame(
            {"class": self.class_names, "precision": precision, "recall": recall,
             "images": self.confusion.sum(1)}
        )  # fmt: skip


def read_evaluation(folder: Path) -> dict[str, Any] | None:
    """The test figures an evaluation folder holds (src.evaluate.write_evaluation), or None."""
    path = folder / EVALUATION_SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None


def trial_folder_name(trial_id: str) -> str:
    """The folder of a trial in its experiment (Tune names it by what search.py says)."""
    return f"trial_{trial_id}"


def trial_id_of(folder: Path) -> str:
    return folder.name.removeprefix(trial_folder_name(""))


def trial_folders(folder: Path) -> list[Path]:
    """An experiment's trial folders (those Ray has written a configuration into), by name."""
    return sorted(p.parent for p in folder.glob(f"{trial_folder_name('*')}/{TRIAL_PARAMS}"))


def trial_config(trial: Path) -> dict[str, Any]:
    return current_config(json.loads((trial / TRIAL_PARAMS).read_text()))


def trial_history(trial: Path) -> pd.DataFrame:
    """One row per epoch a trial reported, as Ray wrote them; no rows where it reported none."""
    progress = trial / TRIAL_PROGRESS
    has_rows = progress.is_file() and progress.stat().st_size > 0
    return pd.read_csv(progress) if has_rows else pd.DataFrame(columns=["epoch"])


def trial_errored(trial: Path) -> bool:
    return (trial / TRIAL_ERROR).exists()


def trial_status(errored: bool, diverged: bool, epochs: int, max_epochs: int) -> str:
    """error, diverged, completed (all epochs) or stopped_early (by ASHA or HyperBand, or
    still running)."""
    if errored:
        return "error"
    if diverged:
        return "diverged"
    return "completed" if epochs >= max_epochs else "stopped_early"


def epoch_history(result: Result) -> pd.DataFrame:
    """One row per epoch the trial reported. Tune reads them from the trial's result.json, which
    a kill -9 while Ray copies its files to storage can leave a line short of the experiment
    state; the last result, kept in that state, is added back where it is missing."""
    history, last = result.metrics_dataframe, result.metrics or {}
    if history is None or METRIC not in history:  # the trial never finished an epoch
        history = pd.DataFrame({"epoch": [], METRIC: []})
    reported = history["epoch"].max() if len(history) else 0
    if METRIC in last and last.get("epoch", 0) > reported:
        history = pd.concat([history, pd.DataFrame([last])], ignore_index=True)
    return history


def trial_row(result: Result, max_epochs: int) -> dict[str, Any]:
    last, config = result.metrics or {}, current_config(result.config or {})
    history = epoch_history(result)
    best: pd.Series | dict[str, Any] = (
        history.iloc[int(np.nanargmax(history[METRIC].to_numpy()))]
        if history[METRIC].notna().any()
        else {}
    )
    epochs = int(history["epoch"].max()) if len(history) else 0
    status = trial_status(result.error is not None, bool(last.get("diverged")), epochs, max_epochs)
    return {
        # From the trial's folder (trial_<id>), not its last result: a PBT trial that is
        # stopped right after cloning another holds that trial's last result, id included.
        "trial_id": trial_id_of(Path(result.path)),
        **{name: config.get(name) for name in HYPERPARAMETERS},
        "status": status,
        "epochs": epochs,
        "final_val_accuracy": last.get("val_accuracy"),
        "best_val_accuracy": best.get("val_accuracy"),
        "best_epoch": best.get("epoch"),
        "final_val_loss": last.get("val_loss"),
        "final_train_loss": last.get("train_loss"),
        "num_params": last.get("num_params"),
        "val_images": last.get("val_images"),  # what the validation accuracy is measured on
        "device": last.get("device"),  # "cpu" or the card's name, and the precision on it
        "precision": last.get("precision"),
        # Seconds the trial trained and validated (its own clock, from start to last report):
        # the cost a user weighs against accuracy, comparable across trials run in parallel.
        "compute_seconds": last.get("time_total_s"),
        "seconds_per_epoch": last.get("time_total_s", math.nan) / max(epochs, 1),
        # What the trial spent besides its epochs: setting up, and per epoch its checkpoint
        # and report (the last epoch's figure; missing in experiments from before them).
        "setup_seconds": last.get("setup_seconds"),
        "report_seconds": last.get("report_seconds"),
        "error": str(result.error).strip().splitlines()[-1] if result.error else "",
        "path": result.path,
    }


def binomial_sd(accuracy: float | None, images: float | None) -> float:
    """One standard deviation of an accuracy measured on `images` images (NaN where unknown)."""
    if pd.isna(accuracy) or pd.isna(images) or not images:
        return math.nan
    return math.sqrt(accuracy * (1 - accuracy) / images)


def summarize(results: ResultGrid, max_epochs: int, start: dict[str, Any] | None) -> pd.DataFrame:
    """One row per trial, best first, each beside the yardstick: `is_start` marks the trial of
    the starting point `start` (None for a grid), `start_at_best_epoch` is that trial's
    val_accuracy at the epoch where the row's trial did best (empty where it did not train that
    long), `val_accuracy_sd` one binomial sd of the row's best val_accuracy."""
    trials = [results[i] for i in range(len(results))]
    table = pd.DataFrame([trial_row(trial, max_epochs) for trial in trials])
    starts = [is_start_point(trial.config or {}, start) for trial in trials]
    first = starts.index(True) if True in starts else -1  # a later lookalike is not the start
    table["is_start"] = [i == first for i in range(len(trials))]
    curve: dict[float, float] = {}
    if table["is_start"].any():
        history = epoch_history(trials[int(table["is_start"].to_numpy().argmax())])
        curve = dict(zip(history["epoch"], history[METRIC], strict=True))
    table["start_at_best_epoch"] = table["best_epoch"].map(curve)
    table["val_accuracy_sd"] = [
        binomial_sd(p, n)
        for p, n in zip(table["best_val_accuracy"], table["val_images"], strict=True)
    ]
    return ranked(table)


NOISE_SDS = 2  # a gain counts as beyond noise from this many binomial sds of val_accuracy


@dataclass(frozen=True)
class VersusStart:
    """The best trial against the starting configuration, at the best trial's best epoch."""

    best_id: str
    start_id: str
    epoch: int
    best: float
    start: float
    sd: float  # one binomial sd of the best's validation accuracy

    @property
    def gain(self) -> float:
        return self.best - self.start

    def verdict(self) -> str:
        """What the gain means: within 2 sd it may be the validation split's noise."""
        if self.best_id == self.start_id:
            return "the best trial is the starting configuration: the search found nothing better"
        points = f"{100 * self.gain:+.1f} points over the starting configuration at epoch "
        noise = f"{self.epoch} (1 sd = {100 * self.sd:.1f} points)"
        return f"{points}{noise}: {'beyond' if self.beyond_noise else 'within'} noise"

    @property
    def beyond_noise(self) -> bool:
        """A gain of more than NOISE_SDS sd; an unknown sd (NaN) is never beyond noise."""
        return bool(self.gain >= NOISE_SDS * self.sd)


def best_versus_start(table: pd.DataFrame) -> VersusStart | None:
    """The best trial beside the starting configuration, where both trained to the best's
    best epoch; None where the search did not start from it or stopped it earlier."""
    if "is_start" not in table or not table["is_start"].any():
        return None
    best, start = best_trial(table), table[table["is_start"]].iloc[0]
    if pd.isna(best["start_at_best_epoch"]):
        return None
    return VersusStart(
        str(best["trial_id"]), str(start["trial_id"]), int(best["best_epoch"]),
        float(best["best_val_accuracy"]), float(best["start_at_best_epoch"]),
        float(best["val_accuracy_sd"]),
    )  # fmt: skip


def read_summary(experiment_dir: Path) -> pd.DataFrame:
    """experiment_summary.csv, trial ids as text (an id of digits alone is still an id)."""
    return pd.read_csv(experiment_dir / SUMMARY_FILE, dtype={"trial_id": str})


def write_summary(table: pd.DataFrame, experiment_dir: Path) -> Path:
    path = experiment_dir / SUMMARY_FILE
    write_atomically(path, table.to_csv(index=False))
    return path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write, renamed over `path` once the block ends: a
    process killed while writing leaves the old file or the new one, never half of one (resume,
    refit and predict read these). A block that fails leaves `path` as it was."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with space_for(path, path.name):
            yield tmp
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """The trials best first: the order of the summary, the refit's and evaluate's choice."""
    return table.sort_values("best_val_accuracy", ascending=False, na_position="last")


def best_trial(table: pd.DataFrame) -> pd.Series:
    return ranked(table).iloc[0]


def best_config(experiment_dir: Path) -> dict[str, Any]:
    """The hyperparameters (not the seed) of the best trial of an earlier experiment."""
    path = experiment_dir / SUMMARY_FILE
    if not path.is_file():
        raise HypertuneError(
            f"No {SUMMARY_FILE} in {experiment_dir}: --from-experiment needs a finished "
            f"experiment's folder name under --storage-path."
        )
    return config_of(best_trial(read_summary(experiment_dir)))


def config_of(row: pd.Series) -> dict[str, Any]:
    """The hyperparameters of a summary row, typed (a CSV reads 32 as 32.0); image_size only
    where the row has it, the block type from `residual`, and hyperparameters added since
    (config.ADDED_LATER) as they trained (summaries from before any of them)."""
    names = [n for n in SEARCHABLE if n != "block" and pd.notna(row.get(n))]
    block = block_of({"block": row.get("block"), "residual": row.get("residual", True)})
    typed = {name: value_type(name)(row[name]) for name in names}
    return current_config({**typed, "block": block})


@contextmanager
def claimed(folder: Path, new: bool) -> Iterator[None]:
    """The experiment folder, held by this process until the block ends. A new one is created
    (refused where it exists, also when another run created it a moment ago); either way an
    exclusive lock on it is held, so that a --resume or refit of an experiment that another
    process is running is refused. A killed process releases its lock with it. A new folder
    that is still empty when the block fails (bad data, say) is removed: the name stays free."""
    if new:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir()
        except FileExistsError:
            raise HypertuneError(name_taken(folder.name, folder.parent)) from None
    lock = FileLock(ExperimentFolder(folder).lock, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise HypertuneError(
            f"Experiment {folder.name!r} is in use by another hypertune process (a search, a "
            f"--resume or a refit of it is running). Wait until it ends, then try again."
        ) from None
    try:
        yield
    except BaseException:
        if new and {p.name for p in folder.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        lock.release()


def write_experiment_info(
    settings: RunSettings,
    data_spec: DataSpec,
    grid: Grid | None,
    plan: dict[str, Any] | None = None,
    command: str | None = None,
) -> None:
    """What this experiment is, for src.analysis (grid: fixed epochs; search: its scheduler)
    and for --resume (everything needed to rebuild the trainable); `plan`: how a time budget
    is spent (src/budget.py); `command`: the command line that started it."""
    folder = ExperimentFolder.of(settings).path
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "format": INFO_FORMAT,
        "kind": "search" if grid is None else "grid",
        "settings": settings.as_dict(),
        "data_root": str(data_spec.root),
        "grid": None if grid is None else asdict(grid),
        "plan": plan,
        "actual": {},
        "command": command,
        "mlflow_run": None,  # the experiment's MLflow run, once opened (src/tracking.py)
    }
    write_info(folder, info)


def write_info(folder: Path, info: dict[str, Any]) -> None:
    write_atomically(ExperimentFolder(folder).info, json.dumps(info, indent=1, default=str))


def read_info(folder: Path) -> dict[str, Any]:
    """hypertune.json as this version writes it: a file from an older version is upgraded here,
    and only here (the keys it lacked, with what they meant then; settings added since, at
    their defaults)."""
    info = json.loads(ExperimentFolder(folder).info.read_text())
    if info.get("format", 1) > INFO_FORMAT:
        raise HypertuneError(
            f"{ExperimentFolder(folder).info} was written by a newer hypertune (format "
            f"{info['format']}, this one reads up to {INFO_FORMAT}); update hypertune to read it."
        )
    defaults = {f.name: f.default for f in fields(RunSettings) if f.default is not MISSING}
    settings = {**defaults, **info["settings"]}
    if "space" in settings:  # spaces, pins and grids from before `block` said `residual`
        settings["space"] = with_blocks(
            settings["space"], lambda e: [e[0], list(map(as_block, e[1]))]
        )
    settings["fixed"] = with_blocks(settings.get("fixed") or {}, as_block)
    grid = info.get("grid") and {
        **info["grid"],
        "axes": with_blocks(info["grid"]["axes"], lambda values: list(map(as_block, values))),
        "fixed": with_blocks(info["grid"].get("fixed") or {}, as_block),
    }
    upgraded = {"plan": None, "actual": {}, "command": None, "mlflow_run": None, **info,
                "grid": grid}  # fmt: skip
    return {**upgraded, "format": INFO_FORMAT, "settings": settings}


def record_actual(folder: Path, part: str, figures: dict[str, Any]) -> None:
    """What `part` of the run ("search", "final_model") did, kept in hypertune.json beside the
    plan (src/budget.py) so that the closing summary and later readers can set one against the
    other."""
    info = read_info(folder)
    info["actual"][part] = figures
    write_info(folder, info)


def record_tracking_run(folder: Path, run_id: str) -> None:
    """The MLflow run of this experiment (src/tracking.py), so that --resume continues it."""
    info = read_info(folder)
    info["mlflow_run"] = run_id
    write_info(folder, info)


def tracking_run(folder: Path) -> str | None:
    """The id of this experiment's MLflow run, None before one was opened."""
    return read_info(folder)["mlflow_run"]


def plan_and_actual(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The time budget's plan ({} without one) and what happened ({} before anything was
    recorded, and in experiments from before it was)."""
    info = read_info(folder)
    return info["plan"] or {}, info["actual"]


def read_experiment_info(folder: Path) -> tuple[RunSettings, DataSpec, Grid | None]:
    """What write_experiment_info wrote: the settings, the data and the grid (None: search)."""
    info = read_info(folder)
    settings = RunSettings.from_dict(info["settings"])
    grid = Grid(**info["grid"]) if info["grid"] else None
    return settings, DataSpec(Path(info["data_root"])), grid


def refit_choice(table: pd.DataFrame, settings: RunSettings) -> tuple[dict[str, Any], str]:
    """What the final model trains, with the experiment's seed, and why. The best trial where
    it beat the starting configuration beyond noise (or there is no yardstick: a grid, a space
    without DEFAULT_START); else the starting configuration, which a search within noise of it has
    not shown to be worse: a best of many noisy trials is an optimistic pick (journal entry
    11). With no trial at all (--search-share 0), the starting configuration."""
    start = {**start_config(settings), "seed": settings.seed}
    if not len(table):
        return start, "the starting configuration (no search)"
    top = best_trial(table)
    best = {**config_of(top), "seed": settings.seed}
    versus = best_versus_start(table)
    if versus is not None and versus.best_id == versus.start_id:
        return best, f"the starting configuration, which was the best trial ({versus.best_id})"
    if versus is None:
        return best, f"the best trial, {top['trial_id']}"
    if not versus.beyond_noise:
        start_row = table[table["is_start"]].iloc[0]
        return {**config_of(start_row), "seed": settings.seed}, (
            f"the starting configuration: the best trial {versus.best_id} is within noise of it"
        )
    return best, f"the best trial, {versus.best_id}: beyond noise of the starting configuration"


def refit_config(folder: Path, settings: RunSettings) -> tuple[dict[str, Any], str]:
    """refit_choice for an experiment folder."""
    return refit_choice(read_summary(folder), settings)


def cheapest_close_to_best(table: pd.DataFrame, within: float = 0.01) -> pd.Series | None:
    """Among the trials that trained every epoch (equal length, so a trial stopped early does not
    look cheap for being stopped), the one with the fewest seconds per epoch whose best
    val_accuracy is within `within` (one point) of theirs: the one to pick when time matters.
    None where no trial trained every epoch."""
    full = table[(table["status"] == "completed") & table["seconds_per_epoch"].notna()]
    if full.empty:
        return None
    close = full[full["best_val_accuracy"] >= full["best_val_accuracy"].max() - within]
    return close.loc[close["seconds_per_epoch"].idxmin()]
