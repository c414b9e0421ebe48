"""The README's commands, run as a user copies them: in a fresh checkout of the project with its
installed environment, generated images in place of the Flowers copy, smoke-sized values in
place of long budgets (typed after the command's own flags, which they override)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from src.images import write_synthetic_images

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# make targets the README names that are not run here: the suite and linters themselves (CI
# runs them), the install this checkout already has, and what rewrites or takes long on purpose.
NOT_RUN = (
    "make test",
    "make lint",
    "make format",
    "make install",
    "make lock",
    "make clean",
    "make bench",
    "make mlflow-ui",  # serves until stopped; tests/test_tracking.py reads the store instead
)
SMOKE = {  # appended to each kind of command: small images, few epochs, tiny budgets
    "search": [
        "--image-size",
        "32",
        "--max-epochs",
        "2",
        "--grace-period",
        "1",
        "--time-budget",
        "0",
        "--num-samples",
        "2",
        "--refit-epochs",
        "1",
    ],
    "grid": ["--image-size", "32", "--max-epochs", "1", "--repeats", "1"],
    "compare": [
        "--image-size",
        "32",
        "--max-epochs",
        "1",
        "--grace-period",
        "1",
        "--budget",
        "2",
        "--seeds",
        "1",
        "--methods",
        "start,asha+random",
    ],
    "refit": ["--epochs", "1"],
}


def readme_commands() -> list[str]:
    """Every command of the README's bash blocks that runs hypertune, continuation lines
    joined, comments dropped, in the README's order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith((".venv/bin/python hypertune.py", "make ")):
                commands.append(line)
    return commands


def kind(words: list[str]) -> str:
    """search, grid, compare, refit, ... : which command a hypertune command line runs."""
    rest = [w for w in words[2:] if not w.startswith("-")]
    known = ("refit", "predict", "grid", "compare", "evaluate", "analyze", "search")
    return rest[0] if rest and rest[0] in known else "search"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's tracked files (mtimes kept, so make sees its install as current), its
    .venv, generated images where ../shared/data/flowers would be, and photos to predict."""
    root = tmp_path_factory.mktemp("fresh") / "hypertune"
    files = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    (root / ".venv").symlink_to(ROOT / ".venv")
    write_synthetic_images(root.parent / "shared" / "data" / "flowers" / "flower_photos", 3, 12, 32)
    write_synthetic_images(root / "my_photos", 3, 3, 48, seed=4)
    shutil.copy(root / "my_photos" / "class_0" / "000.png", root / "photo.jpg")
    return root


@pytest.fixture(scope="module")
def first_run(checkout: Path) -> subprocess.CompletedProcess[str]:
    """The experiment NAME, which the README's commands take as made first."""
    made = run(
        ".venv/bin/python hypertune.py --smoke-test --data-dir ../shared/data/flowers "
        "--name NAME --num-samples 6",  # 6: enough for `grid --from-experiment NAME` to rank
        checkout,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    return made


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYPERTUNE_CACHE": str(cwd / ".cache")}
    return subprocess.run(
        command, shell=True, capture_output=True, text=True, cwd=cwd, env=env, timeout=240
    )


def as_user_would(command: str, checkout: Path, index: int) -> str:
    """The README's command with its placeholders filled in and smoke-sized values typed after
    it. A new experiment gets a name of its own; NAME is the experiment made first."""
    checkpoint = next(checkout.glob("logs/ray_results/NAME/trial_*/checkpoint_*"))
    command = command.replace("trial_ID/checkpoint_000009", "/".join(checkpoint.parts[-2:]))
    if command.startswith(("make tune", "make smoke")):  # the targets that search
        args = re.search(r'ARGS="([^"]*)"', command)
        extra = " ".join(SMOKE["search"] + ["--name", f"readme-{index}"])
        extra = f"{args.group(1)} {extra}" if args else extra
        return re.sub(r'\s*ARGS="[^"]*"', "", command) + f' ARGS="{extra}"'
    if command.startswith("make "):
        return command
    words = shlex.split(command)
    what = kind(words)
    smoke = [] if "--resume" in words else list(SMOKE.get(what, []))
    if what in ("search", "grid", "compare") and "--name" not in words:
        smoke += ["--name", f"readme-{index}"]
    return shlex.join(words + smoke)


COMMANDS = [c for c in readme_commands() if not c.startswith(NOT_RUN)]


def test_the_readme_shows_every_command() -> None:
    assert len(COMMANDS) >= 15, COMMANDS


def test_the_first_run_prints_a_progress_line_and_a_summary_not_rays_logs(
    first_run: subprocess.CompletedProcess[str],
) -> None:
    out, err = first_run.stdout, first_run.stderr
    lines = (out + err).splitlines()
    assert len(lines) <= 45, "\n".join(lines)
    assert "6/6 trials done" in err and "Checkpoint successfully" not in err
    assert "vs the start" in out and ".venv/bin/python hypertune.py predict" in out


# One test a command (a few seconds to half a minute each), so that `pytest -n` spreads them.
@pytest.mark.usefixtures("first_run")  # NAME made first, as the README's commands take it
@pytest.mark.parametrize("index, command", list(enumerate(COMMANDS)), ids=lambda v: str(v)[:60])
def test_the_readme_command_works_as_written(index: int, command: str, checkout: Path) -> None:
    typed = as_user_would(command, checkout, index)
    result = run(typed, checkout)
    assert result.returncode == 0, f"{command}\n{typed}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, typed


def test_the_space_file_shown_is_the_file() -> None:
    shown = re.search(r"```toml\n(# src/space_example\.toml.*?)```", README.read_text(), re.S)
    assert shown is not None
    assert shown.group(1) == (ROOT / "src" / "space_example.toml").read_text()
