"""The command line as a user meets it: bad input is refused early and clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def hypertune(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "hypertune.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-samples", "-1"], "--num-samples must be at least 1"),
        (["--max-epochs", "0"], "--max-epochs must be at least 1"),
        (["--grace-period", "5", "--max-epochs", "3"], "cannot exceed --max-epochs"),
        (["--reduction-factor", "1"], "--reduction-factor must be at least 2"),
        (["--gpus-per-trial", "-0.5"], "--gpus-per-trial cannot be negative"),
        (["--image-size", "16"], "--image-size must be at least 32"),
        (["--name", "../escape"], "--name may hold"),
        (["--num-samples", "many"], "invalid int value"),
        (["--learning-rate", "0.1"], "unrecognized arguments"),
        (["grid", "--x", "depth=1,2", "--y", "lr=0.1"], "'depth=1,2' is not NAME=VALUE"),
        (["grid", "--x", "lr=0.1,0.01", "--y", "lr=0.1"], "two different hyperparameters"),
        (["grid", "--x", "lr=fast", "--y", "dropout=0.1"], "lr takes float values, got 'fast'"),
        (["grid", "--x", "batchnorm=yes", "--y", "dropout=0.1"], "takes true or false"),
        (["grid", "--x", "lr=0.1", "--y", "dropout=0.1", "--repeats", "0"], "--repeats must"),
        (["grid", "--x", "lr=0.1", "--y", "dropout=0.1", "--set", "depth=3"], "'depth=3'"),
        (["grid", "--x", "lr=0.1"], "required: --y"),
        (["grid", "--x", "lr=0.1", "--y", "dropout=0.1", "--from-experiment", "nope"], "No exp"),
        (["compare", "--methods", "grid,bayes"], "Unknown method(s) bayes"),
        (["compare", "--budget", "3", "--max-epochs", "4"], "cannot pay for one full trial"),
    ],
)
def test_bad_flags_are_refused_before_ray_starts(flags: list[str], message: str) -> None:
    result = hypertune(*flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_existing_experiment_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    result = hypertune("--storage-path", str(tmp_path), "--name", "taken")
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert "Traceback" not in result.stderr


def test_folder_without_images_gets_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "daisy").mkdir(parents=True)
    result = hypertune("--data-dir", str(tmp_path / "empty"), "--storage-path", str(tmp_path))
    assert result.returncode == 2
    assert "No images found" in result.stderr and "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_smoke_test_runs_a_whole_search(tmp_path: Path) -> None:
    result = hypertune(
        "--smoke-test", "--storage-path", str(tmp_path), "--name", "smoke", timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "smoke" / "experiment_summary.csv")
    assert len(summary) == 4  # --smoke-test runs 4 trials
    assert summary["epochs"].max() == 3
    assert "Best trial" in result.stderr
