"""A search space kept in a file next to your experiment: `--space FILE` (TOML or YAML).

One entry per hyperparameter, `NAME = {KIND = ARGUMENTS}`; hyperparameters not listed keep
their DEFAULT_START value (src/config.py), and `--set NAME=VALUE` pins one for this run:

    # my_space.toml
    num_conv_layers = {choice = [2, 3, 4]}
    start_filters = {choice = [16, 32]}
    fc_units = {int = [64, 256]}          # integers low..high, both included
    dropout = {uniform = [0.1, 0.5]}
    lr = {loguniform = [1e-4, 1e-2]}
    image_size = {choice = [64, 96]}      # px; the starting configuration's: --image-size

The same in YAML: `lr: {loguniform: [1.0e-4, 1.0e-2]}`. Every problem (unknown name or kind,
empty choice, low >= high, a log bound <= 0) is reported with its line before Ray starts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from src.config import SEARCHABLE, as_block, with_blocks
from src.errors import HypertuneError

Space = dict[str, tuple[str, Any]]  # name -> (kind, arguments), as SEARCH_SPACE
KINDS = ("choice", "uniform", "loguniform", "int")


class SpaceError(HypertuneError):
    """A search-space file that cannot be used; the message names the file and line."""


def line_of(text: str, name: str) -> int | None:
    """The first line that defines `name` (TOML key or table, YAML key), 1-based."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip().strip("\"'")
        if stripped.startswith((f"{name} ", f"{name}=", f"{name}:", f"[{name}]")):
            return number
    return None


def parse_file(path: Path) -> tuple[dict[str, Any], str]:
    """The file's mapping and its text."""
    try:
        text = path.read_text()
    except OSError as err:
        raise SpaceError(f"Cannot read the search space file {path}: {err.strerror}.") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise SpaceError(f"{path} is not valid {path.suffix[1:].upper()}: {err}") from None
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{path} holds no hyperparameters; see src/space_example.toml.")
    return data, text


def entry_problem(name: str, entry: Any) -> str | None:
    """What is wrong with one entry, or None."""
    if name not in SEARCHABLE:
        return f"unknown hyperparameter {name!r}; the names are {', '.join(SEARCHABLE)}"
    if not isinstance(entry, dict) or len(entry) != 1:
        return f"{name} needs exactly one KIND = ARGUMENTS, e.g. {name} = {{choice = [...]}}"
    kind, args = next(iter(entry.items()))
    if kind not in KINDS:
        return f"unknown kind {kind!r} for {name}; the kinds are {', '.join(KINDS)}"
    if not isinstance(args, list) or not args:
        return f"{name}: {kind} needs a non-empty list"
    if kind == "choice":
        return None
    if len(args) != 2 or not all(isinstance(a, int | float) for a in args):
        return f"{name}: {kind} needs [low, high], two numbers"
    low, high = args
    if low >= high:
        return f"{name}: low ({low}) must be below high ({high})"
    if kind == "loguniform" and low <= 0:
        return f"{name}: loguniform bounds must be positive, got {low}"
    if kind == "int" and not all(isinstance(a, int) for a in args):
        return f"{name}: int needs whole-number bounds, got {args}"
    return None


def load_space(path: Path) -> Space:
    """The search space of a TOML or YAML file, checked entry by entry."""
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise SpaceError(f"--space {path}: use a .toml, .yaml or .yml file.")
    data, text = parse_file(path)
    data = upgraded(data)
    space: Space = {}
    for name, entry in data.items():
        if problem := entry_problem(name, entry):
            line = line_of(text, name)
            raise SpaceError(f"{path}{f', line {line}' if line else ''}: {problem}.")
        kind, args = next(iter(entry.items()))
        space[name] = (kind, args)
    return space


def upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A space file from before `block` existed searched `residual` (true or false): the same
    choice, as block types (true: residual, false: plain)."""
    entry = data.get("residual")
    if not (isinstance(entry, dict) and isinstance(entry.get("choice"), list)):
        return data
    return with_blocks(data, lambda old: {"choice": [as_block(value) for value in old["choice"]]})


def pin(space: Space, fixed: dict[str, Any]) -> Space:
    """The space without the hyperparameters pinned by --set."""
    return {name: value for name, value in space.items() if name not in fixed}
