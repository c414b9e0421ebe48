"""An experiment folder's own files: `hypertune.json` (what the experiment is) and
`experiment_summary.csv` (one row per trial, from Ray's ResultGrid), written and read here only.
No Ray at import time: predict and evaluate read these files without it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from src.config import (
    BASELINE,
    EXPERIMENT_INFO,
    HYPERPARAMETERS,
    METRIC,
    SUMMARY_FILE,
    Grid,
    RunSettings,
)
from src.data import DataSpec

if TYPE_CHECKING:
    from ray.tune import Result, ResultGrid


def trial_folder_name(trial_id: str) -> str:
    """The folder of a trial in its experiment (Tune names it by what search.py says)."""
    return f"trial_{trial_id}"


def trial_id_of(folder: Path) -> str:
    return folder.name.removeprefix(trial_folder_name(""))


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
    last, config = result.metrics or {}, result.config or {}
    history = epoch_history(result)
    best: pd.Series | dict[str, Any] = (
        history.iloc[history[METRIC].to_numpy().argmax()] if len(history) else {}
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
        # Seconds the trial trained and validated (its own clock, from start to last report):
        # the cost a user weighs against accuracy, comparable across trials run in parallel.
        "compute_seconds": last.get("time_total_s"),
        "error": str(result.error).strip().splitlines()[-1] if result.error else "",
        "path": result.path,
    }


def summarize(results: ResultGrid, max_epochs: int) -> pd.DataFrame:
    """One row per trial, best first."""
    return ranked(pd.DataFrame([trial_row(results[i], max_epochs) for i in range(len(results))]))


def write_summary(table: pd.DataFrame, experiment_dir: Path) -> Path:
    path = experiment_dir / SUMMARY_FILE
    table.to_csv(path, index=False)
    return path


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """The trials best first: the order of the summary, the refit's and evaluate's choice."""
    return table.sort_values("best_val_accuracy", ascending=False, na_position="last")


def best_trial(table: pd.DataFrame) -> pd.Series:
    return ranked(table).iloc[0]


def best_config(experiment_dir: Path) -> dict[str, Any]:
    """The hyperparameters (not the seed) of the best trial of an earlier experiment."""
    path = experiment_dir / SUMMARY_FILE
    if not path.is_file():
        raise ValueError(
            f"No {SUMMARY_FILE} in {experiment_dir}: --from-experiment needs a finished "
            f"experiment's folder name under --storage-path."
        )
    best = best_trial(pd.read_csv(path))
    return {name: type(value)(best[name]) for name, value in BASELINE.items()}


def write_experiment_info(settings: RunSettings, data_spec: DataSpec, grid: Grid | None) -> None:
    """What this experiment is, for src.analysis (grid: fixed epochs; search: its scheduler)
    and for --resume (everything needed to rebuild the trainable)."""
    folder = settings.storage_path / settings.name
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "kind": "search" if grid is None else "grid",
        "settings": settings.as_dict(),
        "data_root": str(data_spec.root),
        "grid": None if grid is None else asdict(grid),
    }
    (folder / EXPERIMENT_INFO).write_text(json.dumps(info, indent=1, default=str))


def read_experiment_info(folder: Path) -> tuple[RunSettings, DataSpec, Grid | None]:
    """What write_experiment_info wrote: the settings, the data and the grid (None: search)."""
    info = json.loads((folder / EXPERIMENT_INFO).read_text())
    settings = RunSettings.from_dict(info["settings"])
    grid = Grid(**info["grid"]) if info["grid"] else None
    return settings, DataSpec(Path(info["data_root"]), settings.image_size), grid


def cheapest_close_to_best(table: pd.DataFrame, within: float = 0.01) -> pd.Series:
    """The trial with the fewest compute seconds whose best val_accuracy is within `within`
    (one point) of the best trial's: the one to pick when time matters."""
    best = table["best_val_accuracy"].max()
    close = table[table["best_val_accuracy"] >= best - within]
    return close.loc[close["compute_seconds"].idxmin()]
