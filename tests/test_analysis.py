"""src.analysis on crafted result folders (exact expectations) and on a real small grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import ray
from conftest import analyze_command

from src.analysis import load_experiment
from src.config import DEFAULT_START, DataSpec, Grid, RunSettings
from src.errors import AnalysisError
from src.images import write_synthetic_images
from src.results import EXPERIMENT_INFO
from src.search import run_experiment
from src.stats import cost_table, grid_axes, heatmap_cells, importance, values_around


def write_experiment(
    folder: Path, kind: str, trials: list[tuple[dict[str, Any], list[float]]], max_epochs: int
) -> Path:
    """A result folder as hypertune writes it: hypertune.json + trial_*/params.json +
    progress.csv. Each trial is (hyperparameter changes, val_accuracy per epoch)."""
    settings = {"max_epochs": max_epochs, "grace_period": 2, "reduction_factor": 3}
    grid: dict[str, Any] | None = None
    if kind == "grid":
        grid = {"axes": {"dropout": [], "fc_units": []}}
    folder.mkdir(parents=True)
    (folder / EXPERIMENT_INFO).write_text(
        json.dumps({"kind": kind, "settings": settings, "grid": grid})
    )
    for i, (changes, accuracy) in enumerate(trials):
        trial = folder / f"trial_{i:04d}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({**DEFAULT_START, "seed": 0, **changes}))
        epochs = np.arange(1, len(accuracy) + 1)
        pd.DataFrame(
            {
                "epoch": epochs,
                "val_accuracy": accuracy,
                "val_loss": 1 - np.array(accuracy),
                "train_loss": 1 - np.array(accuracy),
                "timestamp": 1000 + 10 * i + epochs,
                "time_this_iter_s": i + 1.0,  # trial i costs i + 1 seconds per epoch
                "time_total_s": epochs * (i + 1.0),
            }
        ).to_csv(trial / "progress.csv", index=False)
    return folder


def cell_value(dropout: float, fc_units: int, seed: int) -> float:
    """The grid's final accuracy by construction: a cell's mean is 0.5 + dropout / 10 +
    fc_units / 1000, its two seeds 0.01 above and below it."""
    return 0.5 + dropout / 10 + fc_units / 1000 + (0.01 if seed == 0 else -0.01)


@pytest.fixture
def grid_dir(tmp_path: Path) -> Path:
    trials = [
        ({"dropout": d, "fc_units": f, "seed": s}, [0.3, 0.35 + s / 10, cell_value(d, f, s)])
        for d in (0.1, 0.5)
        for f in (64, 128, 256)
        for s in (0, 1)
    ]
    return write_experiment(tmp_path / "grid", "grid", trials, max_epochs=3)


@pytest.fixture
def asha_dir(tmp_path: Path) -> Path:
    trials = [
        ({"lr": 1e-3, "batch_size": 16}, [0.5, 0.6, 0.7, 0.8, 0.85, 0.9]),
        ({"lr": 1e-2, "batch_size": 16}, [0.4, 0.45]),  # stopped by ASHA at the rung
        ({"lr": 1e-3, "batch_size": 32}, [0.3, 0.35]),
        ({"lr": 1e-2, "batch_size": 32}, [0.55, 0.6, 0.65, 0.7, 0.7, 0.75]),
    ]
    return write_experiment(tmp_path / "asha", "search", trials, max_epochs=6)


def test_heatmap_cells_are_the_means_over_seeds(grid_dir: Path) -> None:
    exp = load_experiment(grid_dir)
    cells, note = heatmap_cells(exp, "dropout", "fc_units", "val_accuracy", None)
    assert len(cells) == 6 and (cells["count"] == 2).all()
    for row in cells.to_dict("records"):  # the final epoch's values, not epoch 2's
        assert row["mean"] == pytest.approx(0.5 + row["dropout"] / 10 + row["fc_units"] / 1000)
        assert row["std"] == pytest.approx(0.02 / np.sqrt(2))  # two seeds, 0.02 apart
    assert "all 12 trials trained 3 epochs" in note


def test_mixed_epochs_are_refused_without_a_common_epoch(asha_dir: Path) -> None:
    exp = load_experiment(asha_dir)
    with pytest.raises(AnalysisError, match=r"2 of 4 trials .*\(2 stopped early"):
        heatmap_cells(exp, "lr", "batch_size", "val_accuracy", None)


def test_common_epoch_compares_every_trial_at_that_epoch(asha_dir: Path) -> None:
    exp = load_experiment(asha_dir)
    cells, note = heatmap_cells(exp, "lr", "batch_size", "val_accuracy", at_epoch=2)
    by_cell = cells.set_index(["batch_size", "lr"])["mean"]
    # Epoch-2 values, also for the trials that went on to epoch 6.
    assert by_cell.to_dict() == pytest.approx(
        {(16, 1e-3): 0.6, (16, 1e-2): 0.45, (32, 1e-3): 0.35, (32, 1e-2): 0.6}
    )
    assert "4 of 4 trials compared at epoch 2" in note
    later, note = heatmap_cells(exp, "lr", "batch_size", "val_accuracy", at_epoch=5)
    assert later["count"].sum() == 2 and "2 of 4 trials compared at epoch 5" in note


def test_importance_ranks_the_hyperparameter_that_matters(tmp_path: Path) -> None:
    trials = [
        ({"lr": lr, "batch_size": bs}, [0.2 + 0.6 * (lr > 1e-3) + 0.01 * (bs == 32)])
        for lr in (1e-4, 1e-2)
        for bs in (16, 32)
        for _ in range(3)
    ]
    exp = load_experiment(write_experiment(tmp_path / "e", "search", trials, max_epochs=1))
    ranking = importance(exp, "val_accuracy")
    assert list(ranking["hyperparameter"]) == ["lr", "batch_size"]
    assert ranking["variance_share"].iloc[0] > 0.99


def test_figures_and_summary_are_written(grid_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert analyze_command([str(grid_dir)]) == 0
    figures = grid_dir / "figures"
    names = {p.name for p in figures.iterdir()}
    assert {
        "heatmap_val_accuracy_fc_units_x_dropout.png",
        "learning_curves.png",
        "best_so_far.png",
        "cost.png",
        "hyperparameters.png",
        "importance.png",
        "analysis_summary.csv",
        "analysis_summary.md",
        "report.html",
        "plotly.min.js",  # beside the page: it opens with no network
    } <= names
    for png in figures.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert len(pd.read_csv(figures / "analysis_summary.csv")) == 10  # the top 10 of 12
    assert "wrote" in capsys.readouterr().out


def test_an_asha_search_gets_every_figure_but_the_heatmap(asha_dir: Path) -> None:
    assert analyze_command([str(asha_dir)]) == 0
    names = {p.name for p in (asha_dir / "figures").iterdir()}
    assert "learning_curves.png" in names and not any(n.startswith("heatmap") for n in names)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/missing"], "does not exist"),
        (["{tmp}"], "is not a hypertune experiment"),
        (["{asha}", "--x", "lr", "--y", "batch_size"], "did not train all 6 epochs"),
        (["{asha}", "--x", "dropout", "--y", "lr", "--at-epoch", "2"], "dropout was not varied"),
        (["{asha}", "--x", "depth", "--y", "lr", "--at-epoch", "2"], "'depth' is not a hyper"),
        (["{asha}", "--metric", "f1"], "Unknown metric 'f1'"),
        (["{asha}", "--x", "lr"], "needs both --x and --y"),
        (["{asha}", "--x", "lr", "--y", "batch_size", "--at-epoch", "9"], "outside 1..6"),
    ],
)
def test_bad_requests_get_one_error_and_write_nothing(
    asha_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    argv = [a.format(tmp=tmp_path, asha=asha_dir) for a in args]
    assert analyze_command(argv) == 2
    assert message in capsys.readouterr().err
    assert not (asha_dir / "figures").exists()


def test_experiment_without_finished_trials_is_refused(tmp_path: Path) -> None:
    folder = write_experiment(tmp_path / "e", "search", [({}, [])], max_epochs=3)
    with pytest.raises(AnalysisError, match=r"No trial of .* finished an epoch"):
        load_experiment(folder)


def test_real_grid_trains_every_cell_for_all_epochs(tmp_path: Path) -> None:
    images = write_synthetic_images(tmp_path / "images", classes=3, per_class=16, size=32)
    run = RunSettings(name="grid", storage_path=tmp_path, data_dir=None, image_size=32,
                      max_epochs=2, seed=5)  # fmt: skip
    grid = Grid(axes={"dropout": [0.1, 0.5], "batch_size": [16, 32]}, repeats=2, fixed={"lr": 3e-3})
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        summary = run_experiment(run, DataSpec(images), grid)
    finally:
        ray.shutdown()
    assert len(summary) == 8 and (summary["epochs"] == 2).all()
    assert (summary["lr"] == 3e-3).all() and set(summary["seed"]) == {5, 6}
    cells, _ = heatmap_cells(load_experiment(tmp_path / "grid"), "dropout", "batch_size",
                             "val_accuracy", None)  # fmt: skip
    assert len(cells) == 4 and (cells["count"] == 2).all()


def test_status_follows_the_summary_rules(asha_dir: Path) -> None:
    progress = asha_dir / "trial_0001" / "progress.csv"
    pd.read_csv(progress).assign(diverged=[False, True]).to_csv(progress, index=False)
    (asha_dir / "trial_0002" / "error.txt").write_text("boom")
    status = load_experiment(asha_dir).trials.set_index("trial_id")["status"]
    assert status.to_dict() == {
        "0000": "completed", "0001": "diverged", "0002": "error", "0003": "completed"
    }  # fmt: skip


def test_cost_never_mixes_epochs(asha_dir: Path) -> None:
    table = cost_table(load_experiment(asha_dir), "val_accuracy").set_index("trial_id")
    # Every trial at epoch 2, which all reached: (seconds per epoch, accuracy) = 0000 (1, 0.6),
    # 0001 (2, 0.45, stopped there by ASHA), 0002 (3, 0.35, stopped), 0003 (4, 0.6). By their
    # best epochs instead, the stopped 0001 and 0002 would look cheap for having been stopped.
    assert table["seconds_per_epoch"].to_dict() == {"0000": 1, "0001": 2, "0002": 3, "0003": 4}
    assert table["val_accuracy"].to_dict() == pytest.approx(
        {"0000": 0.6, "0001": 0.45, "0002": 0.35, "0003": 0.6}
    )
    assert set(table.index[table["pareto"]]) == {"0000"}  # cheapest and as good as any


def test_the_grid_chooser_picks_what_mattered_around_the_best_trial(tmp_path: Path) -> None:
    """lr decides the accuracy, block a little, dropout nothing: the grid is lr x block, lr at
    the best value and a factor 3 either side on its log scale, block at every type tried."""
    trials = [
        ({"lr": lr, "block": block, "dropout": d},
         [0.2 + 0.5 * (lr > 1e-3) + 0.05 * (block == "se")])
        for lr in (3e-4, 3e-3)
        for block in ("residual", "se")
        for d in (0.2, 0.4)
    ]  # fmt: skip
    exp = load_experiment(write_experiment(tmp_path / "e", "search", trials, max_epochs=1))
    space = {"lr": ("loguniform", [1e-4, 1e-2]), "block": ("choice", ["residual", "se"]),
             "dropout": ("uniform", [0.1, 0.5])}  # fmt: skip
    best = {**DEFAULT_START, "lr": 3e-3, "block": "se", "dropout": 0.2}
    axes, why = grid_axes(exp, best, space)
    assert axes == {"lr": [0.001, 0.003, 0.009], "block": ["residual", "se"]}
    assert "over 8 trials of e (lr " in why
    few = load_experiment(write_experiment(tmp_path / "few", "search", trials[:4], max_epochs=1))
    with pytest.raises(AnalysisError, match=r"4 trial\(s\) .* too few to rank what mattered"):
        grid_axes(few, best, space)


def test_a_neighbour_never_leaves_the_space() -> None:
    assert values_around(0.45, ("uniform", [0.1, 0.5]), pd.Series([])) == [0.35, 0.45, 0.5]
    assert values_around(9e-3, ("loguniform", [1e-4, 1e-2]), pd.Series([])) == [0.003, 0.009, 0.01]
    assert values_around(3, ("int", [2, 6]), pd.Series([])) == [2, 3, 4]
