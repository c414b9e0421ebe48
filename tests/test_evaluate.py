"""Evaluation on generated images with known labels."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL, finished_experiment, trial_config
from test_images import pre_split

import src.evaluate as evaluate_module
from src.config import DEFAULT_START, DataSpec
from src.data import open_trial_data
from src.evaluate import confusion_matrix, evaluate, evaluate_and_report, folder_images
from src.images import DataError, ImageFolder, prepare_cache, write_synthetic_images
from src.inference import applied_size, load_model, probabilities
from src.model import Net
from src.refit import plan_refit, refit
from src.results import CHECKPOINT_FILE
from src.train import save_checkpoint, train_epoch

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {**DEFAULT_START, "seed": 0, "lr": 3e-3, "num_conv_layers": 2, "start_filters": 16}


def checkpoint_after(epochs: int, images: Path, folder: Path) -> Path:
    """A checkpoint as the trainable writes it, after `epochs` epochs (0 = untrained)."""
    torch.manual_seed(0)
    data = open_trial_data(DataSpec(images), trial_config(batch_size=16), torch.device("cpu"))
    model = Net(CONFIG, len(data.class_names))
    optimizer = torch.optim.AdamW(model.parameters(), lr=CONFIG["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    for _ in range(epochs):
        train_epoch(model, data.train, optimizer)
    folder.mkdir(parents=True)
    save_checkpoint(folder, epochs, model, optimizer, schedule, CONFIG, data)
    return folder


@pytest.fixture(scope="module")
def train_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_images(tmp_path_factory.mktemp("train"), 3, 40, 32, seed=0)


@pytest.fixture(scope="module")
def new_images(tmp_path_factory: pytest.TempPathFactory, train_images: Path) -> Path:
    """The same three classes, other images: never seen in training (none is a copy)."""
    new = write_synthetic_images(tmp_path_factory.mktemp("new"), 3, 20, 32, seed=7, palette_seed=0)
    seen = {p.read_bytes() for p in train_images.rglob("*.png")}
    assert not any(p.read_bytes() in seen for p in new.rglob("*.png"))
    return new


def test_trained_model_scores_high_and_random_one_near_chance(
    train_images: Path, new_images: Path, tmp_path: Path
) -> None:
    trained = evaluate(checkpoint_after(8, train_images, tmp_path / "a"), new_images, None)
    untrained = evaluate(checkpoint_after(0, train_images, tmp_path / "b"), new_images, None)
    assert trained.accuracy >= 0.9
    assert untrained.accuracy <= 0.6  # chance is 1/3
    assert trained.confusion.sum() == untrained.confusion.sum() == 60
    per_class = trained.per_class()
    assert list(per_class["images"]) == [20, 20, 20]
    assert per_class["recall"].between(0, 1).all()


def test_flip_tta_scores_each_image_by_the_mean_of_its_own_and_its_mirrors_probabilities(
    train_images: Path, new_images: Path, tmp_path: Path
) -> None:
    checkpoint = checkpoint_after(2, train_images, tmp_path / "f")
    (member,) = load_model(checkpoint, torch.device("cpu"))
    model, state = member.model, member.state
    pixels, labels = folder_images(new_images, [32], state["class_names"])
    plain = probabilities(model, state, pixels[32])
    mirrored = probabilities(model, state, pixels[32][..., ::-1])  # each image left-right
    assert not np.allclose(mirrored, plain, atol=1e-3)  # a CNN is not mirror-symmetric
    result = evaluate(checkpoint, new_images, None)
    assert result.accuracy == np.mean(plain.argmax(1) == labels)
    assert result.flip_accuracy == np.mean((plain + mirrored).argmax(1) == labels)


def test_a_model_is_scored_at_the_side_it_records_a_checkpoint_at_its_own(
    train_images: Path, new_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = checkpoint_after(2, train_images, tmp_path / "d")
    members = load_model(checkpoint, torch.device("cpu"))
    state = members[0].state
    assert state["image_size"] == 32 and "inference_size" not in state  # a trial's checkpoint
    final = tmp_path / "final.pt"  # as a final model records it: a quarter larger
    torch.save(
        {**torch.load(checkpoint / CHECKPOINT_FILE, weights_only=True), "inference_size": 40}, final
    )
    decoded: list[int] = []

    def recording(folder: ImageFolder, size: int) -> Path:
        decoded.append(size)
        return prepare_cache(folder, size)

    monkeypatch.setattr(evaluate_module, "prepare_cache", recording)
    own, larger = evaluate(checkpoint, new_images, None), evaluate(final, new_images, None)
    assert decoded == [32, 40] and (own.image_size, larger.image_size) == (32, 40)
    as_final = [replace(members[0], state={**state, "inference_size": 40})]
    expected = confusion_matrix(as_final, *folder_images(new_images, [40], state["class_names"]))
    assert (larger.confusion == expected).all()


def test_a_model_saved_before_it_recorded_its_inference_size_is_applied_at_its_own() -> None:
    assert applied_size({"image_size": 64}) == 64  # as it was scored when it was saved
    assert applied_size({"image_size": 64, "inference_size": 72}) == 72


def test_report_writes_confusion_matrix_and_tables(
    train_images: Path, new_images: Path, tmp_path: Path
) -> None:
    checkpoint = checkpoint_after(1, train_images, tmp_path / "trial" / "checkpoint_000000")
    result = evaluate_and_report(None, checkpoint, new_images)
    out = tmp_path / "trial" / f"evaluation-{new_images.name}"
    assert (out / "confusion_matrix.png").stat().st_size > 5000
    assert (out / "per_class.csv").read_text().count("\n") == 4  # header + 3 classes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == result.accuracy and summary["image_size"] == 32  # its own
    assert summary["flip_accuracy"] == result.flip_accuracy is not None


def test_mismatched_classes_are_refused(train_images: Path, tmp_path: Path) -> None:
    checkpoint = checkpoint_after(0, train_images, tmp_path / "c")
    other = write_synthetic_images(tmp_path / "other", 2, 5, 32)
    (other / "class_1").rename(other / "tulips")
    with pytest.raises(DataError, match="Missing: class_1, class_2; not trained on: tulips"):
        evaluate(checkpoint, other, None)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "nope"], "There is no experiment 'nope'"),
        (["--checkpoint", "{tmp}"], "is not a checkpoint folder"),
        ([], "needs --name NAME"),
        (["--name", "empty"], "not a finished hypertune experiment"),
        (["--checkpoint", "{tmp}/notes.pt", "--data-dir", "{tmp}"], "not a hypertune checkpoint"),
    ],
)
def test_bad_evaluate_requests_get_one_error(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.pt").write_text("a file, but not a model")
    argv = [a.format(tmp=tmp_path) for a in args]
    result = subprocess.run(
        [sys.executable, str(ROOT / "hypertune.py"), "evaluate", "--storage-path",
         str(tmp_path), *argv],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_pre_split_folder_is_scored_on_its_test_split(train_images: Path, tmp_path: Path) -> None:
    checkpoint = checkpoint_after(0, train_images, tmp_path / "c")
    root = pre_split(tmp_path / "set", {"train": 6, "val": 2, "test": 3})
    assert evaluate(checkpoint, root, None).confusion.sum() == 3 * 3  # test/ only


def test_evaluate_by_name_scores_the_final_model(tmp_path: Path) -> None:
    images = write_synthetic_images(tmp_path / "images", 3, 20, 32, seed=2)
    experiment = finished_experiment(tmp_path / "exp", images, SMALL)
    refit(plan_refit(experiment, epochs=1), "cmd")
    # The summary's trials kept no checkpoint: only the final model can be scored.
    result = evaluate_and_report(experiment, None, None)
    summary = json.loads((experiment / "evaluation" / "summary.json").read_text())
    assert summary["title"].startswith("exp/final_model.pt on the test split")
    assert result.confusion.sum() == 9
