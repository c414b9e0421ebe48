"""Search methods compared end to end at an equal budget, on generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import ray

from src.compare import (
    adopt_older_name,
    anytime,
    comparison_table,
    run_comparison,
    write_comparison,
)
from src.config import COMPARE_METHODS as METHODS
from src.config import Comparison, DataSpec, RunSettings
from src.images import write_synthetic_images


def test_every_method_runs_on_the_same_budget(tmp_path: Path) -> None:
    images = write_synthetic_images(tmp_path / "images", classes=3, per_class=12, size=32)
    settings = RunSettings(name="cmp", storage_path=tmp_path, data_dir=None, image_size=32,
                           max_epochs=2, grace_period=1, reduction_factor=2)  # fmt: skip
    budget = 4
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        comparison = Comparison(METHODS, seeds=1, budget=budget)
        curves = run_comparison(settings, DataSpec(images), comparison)
    finally:
        ray.shutdown()
    for method in METHODS:
        (curve,) = curves[method]
        assert len(curve) == budget  # cut at the budget exactly
        run = tmp_path / "cmp" / f"{method}-seed0"
        assert (run / "hypertune.json").is_file()  # each run can be analysed on its own
        spent = sum(len(pd.read_csv(p)) for p in run.glob("trial_*/progress.csv"))
        assert budget <= spent <= budget + 2  # at most the 2 epochs in flight beyond it
    table, paths = write_comparison(curves, budget, tmp_path / "cmp")
    assert list(table["method"]) == list(METHODS)
    assert all(p.stat().st_size > 0 for p in paths)

    # --resume keeps the runs that spent their budget and trains the others again.
    kept, cut = tmp_path / "cmp" / "asha+de-seed0", tmp_path / "cmp" / "pbt+random-seed0"
    kept_trials = sorted(p.name for p in kept.glob("trial_*"))
    for progress in cut.glob("trial_*/progress.csv"):
        progress.unlink()  # as if killed before anything was written
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        two = Comparison(("asha+de", "pbt+random"), seeds=1, budget=budget)
        again = run_comparison(settings, DataSpec(images), two, resume=True)
    finally:
        ray.shutdown()
    assert sorted(p.name for p in kept.glob("trial_*")) == kept_trials
    assert np.array_equal(again["asha+de"][0], curves["asha+de"][0])
    assert len(again["pbt+random"][0]) == budget  # trained again, in full


def test_the_anytime_curve_counts_epochs_in_the_order_they_ended(tmp_path: Path) -> None:
    # Two trials interleaved in time; a fifth epoch, in flight when the budget of 4 ran out,
    # reported the best accuracy of all: it must not count.
    reports = {"trial_a": [(1, 0.5), (3, 0.4), (5, 0.99)], "trial_b": [(2, 0.6), (4, 0.55)]}
    for trial, rows in reports.items():
        (tmp_path / trial).mkdir()
        (tmp_path / trial / "params.json").write_text("{}")  # Ray writes it as a trial starts
        pd.DataFrame(
            {"timestamp": [t for t, _ in rows], "time_total_s": [t for t, _ in rows],
             "val_accuracy": [v for _, v in rows]}
        ).to_csv(tmp_path / trial / "progress.csv", index=False)  # fmt: skip
    assert anytime(tmp_path, budget=4).tolist() == [0.5, 0.6, 0.6, 0.6]


def test_table_counts_budget_to_target() -> None:
    curves = {
        "fast": [np.array([0.5, 0.8, 0.9]), np.array([0.6, 0.9, 0.9])],
        "slow": [np.array([0.4, 0.5, 0.85]), np.array([0.3, 0.4, 0.5])],
    }
    rows = {r["method"]: r for r in comparison_table(curves, target=0.85).to_dict("records")}
    assert rows["fast"]["epochs to reach 0.850 (median)"] == 2.5
    assert rows["slow"]["runs that reached it"] == "1/2"
    assert rows["fast"]["final best val_accuracy (mean)"] == 0.9
    assert rows["slow"]["epochs used (min)"] == 3
    assert rows["fast"]["below the leader beyond noise"] == "(leader)"
    assert rows["slow"]["below the leader beyond noise"] == "yes"  # best seed 0.85 < fast's 0.9
    curves["close"] = [np.array([0.7, 0.9, 0.97]), np.array([0.6, 0.8, 0.87])]
    rows = {r["method"]: r for r in comparison_table(curves, target=0.85).to_dict("records")}
    assert rows["close"]["below the leader beyond noise"] == "(leader)"
    assert rows["fast"]["below the leader beyond noise"] == "no"  # 0.9 is within 0.87-0.97


def test_a_comparison_from_before_the_rename_keeps_its_yardstick_runs(tmp_path: Path) -> None:
    older = tmp_path / "baseline-seed0"
    (older / "trial_a").mkdir(parents=True)
    adopt_older_name(tmp_path / "start-seed0")
    assert (tmp_path / "start-seed0" / "trial_a").is_dir() and not older.exists()
    (tmp_path / "baseline-seed1").mkdir()
    adopt_older_name(tmp_path / "asha+random-seed1")  # only the yardstick was renamed
    assert (tmp_path / "baseline-seed1").is_dir()
