"""predict: a final model applied to files and folders, as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SMALL, finished_experiment
from PIL import Image
from test_images import bomb_png, pre_split

from src.images import read_image, write_synthetic_images
from src.inference import load_final_model, probabilities
from src.predict import run_predict
from src.refit import plan_refit, refit
from src.results import MODEL_FILE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A final model refit on generated images (3 classes, 32 px)."""
    images = write_synthetic_images(tmp_path_factory.mktemp("images"), 3, 30, 32, seed=1)
    experiment = finished_experiment(tmp_path_factory.mktemp("runs") / "exp", images, SMALL)
    refit(plan_refit(experiment, epochs=8, image_size=None, seed=0), "cmd")
    return experiment / MODEL_FILE


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """New labelled photos in class folders: the training classes (other images: another seed)
    drawn at another size, one of them as JPEG, and two files Pillow cannot read."""
    folder = write_synthetic_images(
        tmp_path_factory.mktemp("photos"), 3, 8, 57, seed=5, palette_seed=1
    )
    Image.open(folder / "class_1" / "000.png").convert("RGB").save(folder / "class_1" / "a.jpg")
    (folder / "class_2" / "broken.png").write_bytes(b"not an image")
    bomb_png(folder / "class_2" / "huge.png")  # Pillow's decompression-bomb guard refuses it
    return folder


def predict(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "hypertune.py"), "predict", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip


def test_folder_of_labelled_photos_gets_classes_and_accuracy(
    model: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preds.csv"
    result = predict("--model", str(model), str(photos), "--top-k", "3", "--output", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(out)
    table["error"] = table["error"].fillna("")
    assert len(table) == 3 * 8 + 3  # every file, the corrupt ones included
    errors = dict(zip(table["path"].map(lambda p: Path(p).name), table["error"], strict=True))
    assert errors["broken.png"].startswith("not a readable image (UnidentifiedImageError")
    assert errors["huge.png"].startswith("not a readable image (DecompressionBombError")
    good = table[table["error"] == ""]
    assert set(good["class"]) <= {"class_0", "class_1", "class_2"}
    assert (good["probability"] >= good["probability_2"]).all()
    assert (good["class"] != good["class_2"]).all()
    every_class = good[["probability", "probability_2", "probability_3"]]
    assert np.allclose(every_class.sum(axis=1), 1.0, atol=1e-5)  # a distribution over classes
    accuracy = (good["class"] == good["true_class"]).mean()
    assert accuracy >= 0.75  # far above chance: the model and its preprocessing travel together
    assert f"accuracy {accuracy:.4f} on 25 labelled images" in result.stdout
    assert "2 of 27 files were not readable images" in result.stdout


def test_single_files_by_experiment_name(model: Path, photos: Path) -> None:
    one = photos / "class_0" / "001.png"
    result = predict(
        "--name", model.parent.name, "--storage-path", str(model.parent.parent), str(one)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert str(one) in result.stdout and "accuracy" not in result.stdout  # no label: no score


def test_photos_are_classified_at_a_quarter_more_pixels_than_the_model_trained_at(
    model: Path, photos: Path
) -> None:
    one = photos / "class_0" / "001.png"  # 57 px: resized on reading
    (own,) = load_final_model(model, torch.device("cpu"))
    net, state = own.model, own.state
    assert state["image_size"] == 32
    row = run_predict(model, [one], top_k=3).set_index("class")["probability"]
    at = {size: probabilities(net, state, read_image(one, size)[None]).max() for size in (32, 40)}
    assert row.iloc[0] == pytest.approx(at[40], abs=1e-6)
    assert abs(at[40] - at[32]) > 1e-4  # the sizes tell apart: the test above can fail


@pytest.mark.parametrize(
    "make, message",
    [
        ("missing_model", "There is no model file"),
        ("foreign_model", "is not a hypertune model file"),
        ("empty_folder", "holds no images"),
        ("other_classes", "class folders the model was not trained on: tulips"),
        ("missing_image", "does not exist"),
        ("output_in_a_file", "Cannot write into"),
    ],
)
def test_bad_requests_get_one_clear_error(
    model: Path, photos: Path, tmp_path: Path, make: str, message: str
) -> None:
    model_arg, inputs, extra = str(model), [str(photos)], []
    if make == "missing_model":
        model_arg = str(tmp_path / "nope.pt")
    elif make == "foreign_model":
        model_arg = str(tmp_path / "weights.pt")
        Path(model_arg).write_bytes(b"\x80\x04K\x01.")  # a pickle, but not a hypertune model
    elif make == "empty_folder":
        (tmp_path / "empty" / "sub").mkdir(parents=True)
        inputs = [str(tmp_path / "empty")]
    elif make == "other_classes":
        shutil.copytree(photos, tmp_path / "mixed")
        (tmp_path / "mixed" / "class_2").rename(tmp_path / "mixed" / "tulips")
        inputs = [str(tmp_path / "mixed")]
    elif make == "missing_image":
        inputs = [str(tmp_path / "nope.jpg")]
    elif make == "output_in_a_file":
        (tmp_path / "file").write_text("x")
        extra = ["--output", str(tmp_path / "file" / "preds.csv")]
    result = predict("--model", model_arg, *inputs, *extra)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_and_evaluate_run_without_ray(model: Path, photos: Path) -> None:
    # Applying a model needs no Ray, HyperOpt or plotting: it starts in half the time.
    code = (
        "import sys, hypertune\n"
        f"assert hypertune.main(['predict', '--model', {str(model)!r}, {str(photos)!r}]) == 0\n"
        "loaded = [m for m in ('ray', 'hyperopt', 'matplotlib') if m in sys.modules]\n"
        f"assert hypertune.main(['evaluate', '--checkpoint', {str(model)!r},"
        f" '--data-dir', {str(photos)!r}]) == 0\n"
        "loaded += [m for m in ('ray', 'hyperopt') if m in sys.modules]\n"
        "print('loaded:', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("loaded: []")


def test_a_pre_split_folder_is_labelled_by_the_class_folder_of_each_image(
    model: Path, tmp_path: Path
) -> None:
    root = pre_split(tmp_path / "set", {"train": 2, "val": 1, "test": 2})  # test/class_0/...
    (root / "unsorted.png").write_bytes((root / "test" / "class_0" / "000.png").read_bytes())
    table = run_predict(model, [root], top_k=1)
    labels = dict(zip(table["path"], table["true_class"], strict=True))
    assert len(labels) == 3 * 5 + 1
    assert all(label == Path(path).parent.name for path, label in labels.items() if label)
    assert labels[str(root / "unsorted.png")] == ""  # in no class folder: no label


def test_photos_named_in_any_encoding_are_trained_on_and_predicted(tmp_path: Path) -> None:
    """A class folder and a photo whose names are Latin-1 bytes, not UTF-8 (as zips made on
    other systems hold): trained on and predicted like the rest, shown with U+FFFD."""
    images = write_synthetic_images(tmp_path / "images", 3, 12, 32, seed=1)
    odd_class = images / os.fsdecode(b"class_\xe9")
    (images / "class_2").rename(odd_class)
    (odd_class / "000.png").rename(odd_class / os.fsdecode(b"caf\xe9.png"))
    experiment = finished_experiment(tmp_path / "runs" / "exp", images, SMALL)
    refit(plan_refit(experiment, epochs=1, image_size=None, seed=0), "cmd")
    state = load_final_model(experiment / MODEL_FILE, torch.device("cpu"))[0].state
    assert state["class_names"] == ["class_0", "class_1", "class_\ufffd"]
    out = tmp_path / "predictions.csv"
    result = predict("--model", str(experiment / MODEL_FILE), str(images), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "caf\ufffd.png" in result.stdout
    table = pd.read_csv(out)
    assert len(table) == 36 and (table["error"].isna()).all()
    assert (table["true_class"] == "class_\ufffd").sum() == 12


def test_only_unreadable_files_get_their_error_rows_and_no_traceback(
    model: Path, photos: Path
) -> None:
    broken = photos / "class_2" / "broken.png"
    table = run_predict(model, [broken], top_k=1)
    assert list(table["error"]) == [table["error"].iloc[0]] and len(table) == 1
    assert table["error"].iloc[0].startswith("not a readable image")
    result = predict("--model", str(model), str(broken))
    assert result.returncode == 0 and "Traceback" not in result.stderr
