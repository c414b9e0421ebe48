"""The command line as a user meets it: bad input is refused early and clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import finished_experiment

from hypertune import parse_args
from src.analysis import load_experiment
from src.config import DEFAULT_START, PRESETS
from src.flags import comparison_from, grid_from, settings_from
from src.images import write_synthetic_images
from src.results import read_experiment_info

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
        (["--gpus-per-trial", "-0.5"], "--gpus-per-trial must be 0 or more"),
        (["--time-budget", "inf"], "--time-budget must be a positive number of minutes"),
        (["--search-share", "1"], "--search-share must be at least 0 and below 1"),
        (["--search-share", "0", "--no-refit"], "leaves nothing to do"),
        (["--search-share", "0", "--time-budget", "0"], "--search-share 0 (no search) needs"),
        (["--image-size", "16"], "--image-size must be at least 32"),
        (["--image-size", "20000"], "--image-size must be at most 512 px, got 20000: every"),
        (["--time-budget", "-5"], "--time-budget must be a positive number of minutes"),
        (["--name", "../escape"], "--name may hold"),
        (["--num-samples", "many"], "invalid int value"),
        (["--ensemble", "0"], "--ensemble must be at least 1, got 0."),
        (["--ensemble", "-2"], "--ensemble must be at least 1, got -2."),
        (["--ensemble", "two"], "argument --ensemble: invalid int value: 'two'"),
        (["--final-weights", "swa"], "argument --final-weights: invalid choice: 'swa'"),
        (["--set", "cutout=1.5"], "cutout (a share of the image's side) must be in [0, 1)"),
        (["--learning-rate", "0.1"], "unrecognized arguments"),
        (["--num-sample", "3"], "unrecognized arguments: --num-sample"),  # no abbreviations
        (["--resume", "--name", "nope"], "There is no experiment 'nope'"),
        (["compare", "--resume"], "--resume needs the --name of the compare to continue"),
        (["grid", "--x", "depth=1,2", "--y", "lr=0.1"], "'depth=1,2' is not NAME=VALUE"),
        (["grid", "--x", "lr=0.1,0.01", "--y", "lr=0.1"], "two different hyperparameters"),
        (["grid", "--x", "lr=fast", "--y", "dropout=0.1"], "lr takes float values, got 'fast'"),
        (["grid", "--x", "batchnorm=yes", "--y", "dropout=0.1"], "takes true or false"),
        (["grid", "--x", "lr=0.1", "--y", "dropout=0.1", "--repeats", "0"], "--repeats must"),
        (["grid", "--x", "lr=0.1", "--y", "dropout=0.1", "--set", "depth=3"], "'depth=3'"),
        (["grid", "--x", "lr=0.1"], "grid needs --x and --y"),
        (["grid", "--x", "lr=0.1", "--y", "dropout=0.1", "--from-experiment", "nope"], "No exp"),
        (["compare", "--methods", "grid,bayes"], "Unknown method(s) bayes"),
        (["--searcher", "annealing"], "invalid choice: 'annealing'"),
        (["--searcher", "bohb", "--scheduler", "asha"], "bohb needs hyperband as its partner"),
        (["--scheduler", "pbt", "--searcher", "hyperopt"], "pbt needs random as its partner"),
        (["--scheduler", "hyperband", "--searcher", "de"], "hyperband needs bohb as its partner"),
        (
            ["--scheduler", "pbt", "--set=lr=1e-3", "--set=weight_decay=1e-4", "--set=dropout=.2"],
            "--scheduler pbt mutates lr, weight_decay, dropout, but the space searches none",
        ),
        (["compare", "--budget", "3", "--max-epochs", "4"], "cannot pay for one full trial"),
    ],
)
def test_bad_flags_are_refused_before_ray_starts(flags: list[str], message: str) -> None:
    result = hypertune(*flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["search", "grid", "compare", "refit", "predict", "evaluate"])
def test_every_command_answers_help_before_its_required_arguments(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        parse_args([command, "--help"])
    assert done.value.code == 0
    assert f" {command} [-h]" in capsys.readouterr().out  # its own usage, not an error


def test_existing_experiment_is_not_overwritten(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    (taken / "trial_1").mkdir(parents=True)
    (taken / "experiment_summary.csv").write_text("trial_id,best_val_accuracy\n1,0.9\n")
    (taken / "trial_1" / "progress.csv").write_text("epoch,val_accuracy\n1,0.9\n")
    before = {p: p.read_bytes() for p in taken.rglob("*") if p.is_file()}
    result = hypertune("--smoke-test", "--storage-path", str(tmp_path), "--name", "taken")
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in taken.rglob("*") if p.is_file()} == before


def test_folder_without_images_gets_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "daisy").mkdir(parents=True)
    result = hypertune("--data-dir", str(tmp_path / "empty"), "--storage-path", str(tmp_path))
    assert result.returncode == 2
    assert "No images found" in result.stderr and "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_verbose_brings_rays_output_back(tmp_path: Path) -> None:
    result = hypertune(
        "--smoke-test", "--num-samples", "2", "--no-refit", "--verbose",
        "--storage-path", str(tmp_path), "--name", "loud", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trial status" in result.stdout + result.stderr
    assert "trials done" not in result.stderr
    assert not (tmp_path / "loud" / "final_model.pt").exists()  # --no-refit


def test_unwritable_storage_path_is_refused_before_work(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("in the way")
    result = hypertune("--smoke-test", "--storage-path", str(tmp_path / "a_file" / "runs"))
    assert result.returncode == 2
    assert "Cannot write into" in result.stderr and "--storage-path" in result.stderr
    assert "Traceback" not in result.stderr


def test_compare_takes_the_starts_old_name(tmp_path: Path) -> None:
    args = parse_args(["compare", "--methods", "baseline,asha+random,start", "--storage-path", "x"])
    assert comparison_from(args).methods == ("start", "asha+random")


def test_typed_flags_win_over_presets(tmp_path: Path) -> None:
    storage = ["--storage-path", str(tmp_path)]
    args = parse_args(["--preset", "long", "--num-samples", "3", *storage])
    assert args.num_samples == 3  # typed
    assert args.max_epochs == PRESETS["long"]["max_epochs"]  # from the preset
    assert args.time_budget == PRESETS["long"]["time_budget"]
    args = parse_args(["--smoke-test", "--max-epochs=5", "--grace-period", "2", *storage])
    assert (args.max_epochs, args.grace_period) == (5, 2)
    assert args.num_samples == PRESETS["smoke"]["num_samples"]
    long_space = settings_from(parse_args(["--preset", "long", *storage])).space
    assert long_space["image_size"] == ("choice", [64, 96])  # its own space file
    space_file = tmp_path / "space.toml"
    space_file.write_text("lr = {loguniform = [1e-4, 1e-2]}\n")
    typed = settings_from(parse_args(["--preset", "long", "--space", str(space_file), *storage]))
    assert set(typed.space) == {"lr"}
    settings = settings_from(parse_args([*storage]))
    assert settings.time_budget == PRESETS["quick"]["time_budget"]
    assert settings.num_samples is None  # planned from the budget
    assert (settings.searcher, settings.scheduler) == ("hyperopt", "asha")


@pytest.mark.parametrize(
    "flags, searcher, scheduler",
    [
        (["--searcher", "bohb"], "bohb", "hyperband"),
        (["--scheduler", "pbt"], "random", "pbt"),
        (["--scheduler", "hyperband"], "bohb", "hyperband"),
        (["--searcher", "de"], "de", "asha"),
        (["--searcher", "random", "--scheduler", "fifo"], "random", "fifo"),
    ],
)
def test_an_untyped_partner_follows_the_typed_method(
    flags: list[str], searcher: str, scheduler: str, tmp_path: Path
) -> None:
    settings = settings_from(parse_args([*flags, "--storage-path", str(tmp_path)]))
    assert (settings.searcher, settings.scheduler) == (searcher, scheduler)


def test_search_space_file_is_used_recorded_and_read_back(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("fc_units: {int: [40, 48]}\nweight_decay: {loguniform: [1.0e-4, 1.0e-3]}\n")
    result = hypertune(
        "--smoke-test", "--num-samples", "3", "--no-refit", "--space", str(space),
        "--set", "lr=0.002", "--storage-path", str(tmp_path), "--name", "spaced", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "spaced" / "experiment_summary.csv")
    assert summary["fc_units"].between(40, 48).all() and (summary["lr"] == 0.002).all()
    assert summary["weight_decay"].between(1e-4, 1e-3).all()
    assert summary["num_conv_layers"].nunique() == 1  # not in the file: DEFAULT_START
    settings, _, _ = read_experiment_info(tmp_path / "spaced")  # what --resume rebuilds from
    assert settings.space == {
        "fc_units": ["int", [40, 48]],
        "weight_decay": ["loguniform", [1e-4, 1e-3]],
    }
    assert settings.fixed == {"lr": 0.002}
    assert load_experiment(tmp_path / "spaced").log_scale == {"weight_decay"}  # axes follow it


def test_bad_space_file_is_refused_with_its_line(tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text("lr = {loguniform = [1e-4, 1e-2]}\ndropout = {uniform = [0.5, 0.1]}\n")
    result = hypertune("--space", str(space), "--storage-path", str(tmp_path))
    assert result.returncode == 2
    assert "space.toml, line 2: dropout: low (0.5) must be below high (0.1)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_grid_starts_from_an_experiment_and_set_wins_over_it(tmp_path: Path) -> None:
    best = {**DEFAULT_START, "start_filters": 16, "lr": 3e-3}
    finished_experiment(tmp_path / "exp", write_synthetic_images(tmp_path / "images"), best)
    args = parse_args(["grid", "--x", "dropout=0.1,0.2", "--y", "batch_size=16,32",
                       "--from-experiment", "exp", "--set", "lr=0.001",
                       "--storage-path", str(tmp_path)])  # fmt: skip
    fixed = grid_from(args).fixed
    assert fixed["start_filters"] == 16  # from the experiment's best trial
    assert fixed["lr"] == 0.001  # --set wins
    assert fixed["num_conv_layers"] == DEFAULT_START["num_conv_layers"]  # the rest: DEFAULT_START


def test_a_bug_is_told_apart_from_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A ValueError from inside a library is hypertune's bug: exit 1, a short message, and the
    full traceback saved in the experiment's folder; a bad flag stays the user's: exit 2."""
    import hypertune as cli

    folder = tmp_path / "exp"
    finished_experiment(folder, write_synthetic_images(tmp_path / "images"), dict(DEFAULT_START))

    def broken(*args: object) -> None:
        int("a library's own bad value")  # raises ValueError, as a dependency might

    monkeypatch.setattr(cli, "run_refit", broken)
    assert cli.main(["refit", "--name", "exp", "--storage-path", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unexpected error" in err and "ValueError: invalid literal for int()" in err
    saved = (folder / "hypertune-error.log").read_text()
    assert str(folder / "hypertune-error.log") in err
    assert saved.startswith("Traceback") and 'int("a library' in saved
    with pytest.raises(SystemExit) as refused:  # a bad flag: argparse's one-line refusal
        cli.main(["refit", "--name", "exp", "--storage-path", str(tmp_path), "--epochs", "0"])
    assert refused.value.code == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
