"""A full disk at each place hypertune writes much: one clear message, nothing finished lost,
and the run continues once space is freed. ENOSPC is injected at each write point; a real
full file system (a small tmpfs, where this machine lets root mount one) backs it up. And a
writer killed mid-write leaves the old file whole."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from conftest import SMALL, analyze_command, finished_experiment
from test_analysis import write_experiment

import src.images
import src.results
from src.errors import DiskFull
from src.images import prepare_cache, scan_images, write_synthetic_images
from src.refit import plan_refit, refit
from src.results import MODEL_FILE, write_atomically
from src.train import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_results_file_keeps_its_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hypertune.json"
    write_atomically(path, "old")
    monkeypatch.setattr(src.results.os, "replace", no_space)
    with pytest.raises(DiskFull, match=f"writing hypertune.json to {path} failed, .* MiB free"):
        write_atomically(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["hypertune.json"]


def test_a_full_disk_at_the_model_file_leaves_the_refit_to_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = write_synthetic_images(tmp_path / "images", 3, 10, 32)
    experiment = finished_experiment(tmp_path / "runs" / "exp", images, SMALL)
    save = torch.save

    def full_at_the_model(state: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        if MODEL_FILE in str(path):
            no_space()
        save(state, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_the_model)
    with pytest.raises(DiskFull, match=f"writing {MODEL_FILE} to"):
        refit(plan_refit(experiment, epochs=2, image_size=None, seed=0), "cmd")
    assert not (experiment / MODEL_FILE).exists()
    monkeypatch.setattr(torch, "save", save)  # space freed: the same refit finishes
    refit(plan_refit(experiment, epochs=2, image_size=None, seed=0), "cmd")
    assert (experiment / MODEL_FILE).is_file()


def test_a_full_disk_at_a_checkpoint_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    data = SimpleNamespace(applying_state=dict)  # what a checkpoint takes from the data
    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(DiskFull, match="writing a trial's checkpoint to"):
        save_checkpoint(tmp_path, 1, model, optimizer, schedule, {}, data)  # type: ignore[arg-type]


def test_a_full_disk_while_caching_leaves_no_half_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = scan_images(write_synthetic_images(tmp_path / "images", 2, 4, 32))
    monkeypatch.setattr(src.images.np, "save", no_space)
    with pytest.raises(DiskFull, match="writing the image cache to"):
        prepare_cache(folder, 32, root=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs: too small for the report page's copy of plotly (4.7 MB)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_refuses_the_figures_and_keeps_the_results(
    small_disk: Path, capsys: pytest.CaptureFixture
) -> None:
    trials = [({"lr": lr}, [0.5, 0.6]) for lr in (1e-3, 3e-3)]
    folder = write_experiment(small_disk / "exp", "search", trials, max_epochs=2)
    kept = {p.name for p in folder.iterdir()}
    assert analyze_command([str(folder)]) == 2
    err = capsys.readouterr().err
    assert "The disk is full: writing the figures and the report page" in err
    assert "Traceback" not in err
    assert {p.name for p in folder.iterdir()} == kept  # no figures.tmp left to fill it further


def test_a_writer_killed_between_writing_and_renaming_leaves_the_old_file(tmp_path: Path) -> None:
    """kill -9 after the new version is written, before it is renamed into place: the file a
    later command reads is still the old one, whole."""
    path = tmp_path / "hypertune.json"
    write_atomically(path, json.dumps({"version": "old"}))
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import src.results\n"
        "src.results.os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)\n"
        'src.results.write_atomically(Path(sys.argv[1]), \'{"version": "new"}\')\n'
    )
    killed = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    assert json.loads(path.read_text()) == {"version": "old"}
