"""Search spaces in files: what they parse to, and every mistake named with its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from src.config import LONG_SPACE, SEARCH_SPACE, RunSettings, start_point
from src.search import to_tune_space
from src.space import SpaceError, load_space, pin

ROOT = Path(__file__).resolve().parents[1]


def settings(space: dict, image_size: int = 64) -> RunSettings:
    return RunSettings("exp", Path("/tmp"), None, image_size=image_size, space=space)


def test_example_file_parses_to_the_default_space_and_more() -> None:
    space = load_space(ROOT / "src" / "space_example.toml")
    assert {k: space[k] for k in SEARCH_SPACE} == {
        k: (kind, list(args)) for k, (kind, args) in SEARCH_SPACE.items()
    }
    assert space["block"] == ("choice", ["plain", "residual", "se", "inception"])


def test_a_space_from_before_block_types_searches_the_blocks_it_meant(tmp_path: Path) -> None:
    (tmp_path / "old.toml").write_text("residual = {choice = [false, true]}\n")
    assert load_space(tmp_path / "old.toml") == {"block": ("choice", ["plain", "residual"])}


def test_toml_and_yaml_give_the_same_space(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(
        "lr = {loguniform = [1e-4, 1e-2]}\nfc_units = {int = [64, 256]}\n"
    )
    (tmp_path / "s.yaml").write_text(
        "lr: {loguniform: [1.0e-4, 1.0e-2]}\nfc_units: {int: [64, 256]}\n"
    )
    assert load_space(tmp_path / "s.toml") == load_space(tmp_path / "s.yaml")


def test_int_ranges_include_both_bounds_and_the_start_is_kept_only_inside() -> None:
    space = {"fc_units": ("int", [64, 66]), "lr": ("loguniform", [1e-4, 1e-2])}
    sampler = to_tune_space(space)["fc_units"]
    assert {sampler.sample() for _ in range(200)} == {64, 65, 66}
    assert start_point(settings(space)) is None  # DEFAULT_START's 128 units lie outside [64, 66]
    assert start_point(settings({"lr": ("loguniform", [1e-4, 1e-2])})) == {"lr": 3e-3}


def test_the_long_presets_space_starts_from_the_starting_configuration() -> None:
    space = load_space(Path(LONG_SPACE))
    assert space["image_size"] == ("choice", [64, 96])
    start = {"image_size": 64, "num_conv_layers": 3, "lr": 3e-3, "weight_decay": 5e-4}
    assert start_point(settings(space)) == start  # DEFAULT_START at 64 px: the yardstick
    assert settings(space).problems() is None


def test_set_pins_a_hyperparameter_out_of_the_space() -> None:
    assert "lr" not in pin(dict(SEARCH_SPACE), {"lr": 1e-3})
    assert set(pin(dict(SEARCH_SPACE), {"lr": 1e-3})) == set(SEARCH_SPACE) - {"lr"}


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "lr = {loguniform = [1e-4, 1e-2]}\ndepth = {choice = [1, 2]}\n",
            "line 2: unknown hyperparameter 'depth'",
        ),
        ("lr = {gaussian = [0, 1]}\n", "line 1: unknown kind 'gaussian'"),
        ("\n\nbatch_size = {choice = []}\n", "line 3: batch_size: choice needs a non-empty list"),
        ("dropout = {uniform = [0.5, 0.1]}\n", "dropout: low (0.5) must be below high (0.1)"),
        ("lr = {loguniform = [0, 0.1]}\n", "loguniform bounds must be positive"),
        ("fc_units = {int = [64.5, 128]}\n", "int needs whole-number bounds"),
        ("lr = 0.1\n", "lr needs exactly one KIND = ARGUMENTS"),
        ("lr = {loguniform = [1e-4\n", "is not valid TOML"),
        ("", "holds no hyperparameters"),
    ],
)
def test_bad_space_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=re.escape(message)):
        load_space(path)


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=re.escape("use a .toml, .yaml or .yml file")):
        load_space(tmp_path / "space.json")
