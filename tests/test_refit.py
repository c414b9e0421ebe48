"""Refit: the best configuration trained on train + val into one loadable file, safely."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SMALL, FakeClock, finished_experiment

import hypertune
import src.refit
from src import pipeline
from src.config import ADDED_LATER, DataSpec
from src.console import summary_block
from src.data import open_trial_data
from src.device import Amp
from src.images import read_image, write_synthetic_images
from src.inference import MODEL_FORMAT, load_final_model, probabilities
from src.model import build_model
from src.predict import run_predict
from src.refit import plan_refit, refit
from src.results import (
    EVALUATION_DIR,
    MODEL_FILE,
    TRIAL_PROGRESS,
    ExperimentFolder,
    plan_and_actual,
    trial_folder_name,
)
from src.train import WeightAverage, make_optimizer, save_checkpoint, train_epoch


def counting(calls: list[int]) -> Callable[..., float]:
    """A stand-in for train_epoch that only counts the epochs it is asked to train."""

    def epoch(*args: object, **kwargs: object) -> float:
        calls.append(1)
        return 1.0

    return epoch


def killed_in_epoch_3(epochs_run: list[int]) -> Callable[..., float]:
    """train_epoch, interrupted as Ctrl-C would in the middle of the third epoch; the epochs it
    trained are counted in `epochs_run`."""
    real_epoch = src.refit.train_epoch

    def epoch(*args: Any, **kwargs: Any) -> float:
        if len(epochs_run) == 2:
            raise KeyboardInterrupt
        epochs_run.append(1)
        return real_epoch(*args, **kwargs)

    return epoch


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_images(tmp_path_factory.mktemp("images"), 3, 30, 32, seed=1)


def test_refit_writes_one_self_contained_loadable_model(images: Path, tmp_path: Path) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL)
    plan = plan_refit(experiment, epochs=8, image_size=None, seed=0)
    assert plan.config == {**SMALL, "image_size": 32, "seed": 0}  # the best row, not the first
    result = refit(plan, "python hypertune.py refit --name exp")
    state = torch.load(experiment / MODEL_FILE, weights_only=True)
    assert state["format"] == MODEL_FORMAT
    assert state["class_names"] == ["class_0", "class_1", "class_2"]
    assert state["image_size"] == 32 and len(state["mean"]) == len(state["std"]) == 3
    assert state["inference_size"] == 40  # applied to test images 1.25x its side
    assert state["config"] == plan.config
    assert state["weights"] == "raw" and state["trained_on"]["ema_half_life"] is None
    assert state["members"] == []  # --ensemble 1: the one network, as before ensembles
    assert state["trained_on"]["splits"] == ["train", "val"]
    assert state["trained_on"]["images"] == 78  # 85% of 90: train + val, never test
    assert state["command"] == "python hypertune.py refit --name exp"
    # CPU tensors only: a model refit on a GPU loads with a plain torch.load anywhere.
    assert all(t.device.type == "cpu" for t in state["model"].values())
    assert state["trained_on"]["device"] == "cpu"
    assert state["trained_on"]["precision"] == Amp.for_device(torch.device("cpu")).precision
    assert not ExperimentFolder(experiment).refit_state.exists()  # only the final file stays
    assert result.confusion.sum() == 12  # scored once, on the 15% test split
    assert result.accuracy >= 0.75  # learnable images: far above chance (1/3)
    summary = json.loads((experiment / EVALUATION_DIR / "summary.json").read_text())
    assert summary["image_size"] == 40 and summary["accuracy"] == result.accuracy
    test = plan_and_actual(experiment)[1]["test"]  # hypertune.json holds both scores
    assert test["accuracy"] == result.accuracy and test["images"] == 12
    assert test["flip_accuracy"] == result.flip_accuracy is not None


def test_interrupted_refit_leaves_no_model_and_continues(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL)
    plan = plan_refit(experiment, epochs=5, image_size=None, seed=0)
    epochs_run: list[int] = []
    monkeypatch.setattr(src.refit, "train_epoch", killed_in_epoch_3(epochs_run))
    with pytest.raises(KeyboardInterrupt):
        refit(plan, "cmd")
    assert not (experiment / MODEL_FILE).exists()
    state_path = ExperimentFolder(experiment).refit_state
    saved = torch.load(state_path, weights_only=True)
    assert saved["epoch"] == 2
    # As versions before today's wrote it (the size beside the config, no weights, a config
    # without the augmentation's hyperparameters): still resumed.
    old_config = {k: v for k, v in saved["plan"]["config"].items() if k not in ADDED_LATER}
    old_plan = {k: v for k, v in saved["plan"].items() if k != "weights"}
    old_plan |= {"image_size": plan.image_size, "config": old_config}
    torch.save({**saved, "plan": old_plan}, state_path)

    monkeypatch.setattr(src.refit, "train_epoch", counting(epochs_run))
    refit(plan, "cmd")
    assert len(epochs_run) == 2 + 3  # epochs 3, 4 and 5 only: it continued
    assert torch.load(experiment / MODEL_FILE, weights_only=True)["trained_on"]["epochs"] == 5


def test_an_ema_refit_saves_the_averaged_weights_and_resumes_their_average(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL, final_weights="ema")
    plan = plan_refit(experiment, epochs=3, image_size=None, seed=0)
    assert plan.weights == "ema"
    epochs_run: list[int] = []
    monkeypatch.setattr(src.refit, "train_epoch", killed_in_epoch_3(epochs_run))
    updates: list[int] = []
    real_update = WeightAverage.update

    def counted(self: WeightAverage) -> None:
        updates.append(1)
        real_update(self)

    monkeypatch.setattr(WeightAverage, "update", counted)
    with pytest.raises(KeyboardInterrupt):
        refit(plan, "cmd")
    assert len(updates) == 2 * 3  # after every step: 2 epochs of 3 batches (78 images, 32 each)
    saved = torch.load(ExperimentFolder(experiment).refit_state, weights_only=True)
    raw, averaged = saved["model"], saved["average"]
    floats = [k for k, v in raw.items() if v.is_floating_point()]
    assert sorted(averaged) == sorted(raw)
    assert all(not torch.equal(raw[k], averaged[k]) for k in floats)  # two weights, kept apart

    monkeypatch.setattr(src.refit, "train_epoch", counting(epochs_run))  # epoch 3 changes nothing
    refit(plan, "cmd")
    state = torch.load(experiment / MODEL_FILE, weights_only=True)
    assert state["weights"] == "ema" and state["trained_on"]["ema_half_life"] == 0.05
    assert all(torch.equal(state["model"][k], averaged[k]) for k in averaged)  # the average


def test_saved_state_of_another_plan_is_not_resumed(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL)
    stale = plan_refit(experiment, epochs=9, image_size=None, seed=0)
    ExperimentFolder(experiment).refit_state.parent.mkdir()
    torch.save({"plan": asdict(stale), "epoch": 8}, ExperimentFolder(experiment).refit_state)
    epochs_run: list[int] = []
    monkeypatch.setattr(src.refit, "train_epoch", counting(epochs_run))
    refit(plan_refit(experiment, epochs=3, image_size=None, seed=0), "cmd")
    assert len(epochs_run) == 3


def test_the_refit_command_takes_its_flags(images: Path, tmp_path: Path) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL)
    code = hypertune.main(["refit", "--name", "exp", "--storage-path", str(tmp_path),
                           "--epochs", "2", "--image-size", "36", "--seed", "5"])  # fmt: skip
    state = torch.load(experiment / MODEL_FILE, weights_only=True)
    assert code == 0 and state["trained_on"]["epochs"] == 2
    assert state["image_size"] == 36 and state["config"]["seed"] == 5
    assert state["config"]["image_size"] == 36  # the config says what the model was trained at


def test_the_refit_trains_at_the_chosen_trials_image_size(images: Path, tmp_path: Path) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, {**SMALL, "image_size": 40})
    plan = plan_refit(experiment, epochs=1)
    assert plan.image_size == plan.config["image_size"] == 40  # not the run's 32 px
    plan = plan_refit(experiment, epochs=1, image_size=36)  # refit --image-size wins
    assert plan.image_size == plan.config["image_size"] == 36


def test_resume_continues_an_interrupted_refit(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL)  # refit_epochs 6
    epochs_run: list[int] = []
    real_epoch = src.refit.train_epoch

    def killed_in_epoch_4(*args: object, **kwargs: object) -> float:
        if len(epochs_run) == 3:
            raise KeyboardInterrupt
        epochs_run.append(1)
        return real_epoch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(src.refit, "train_epoch", killed_in_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        pipeline.resume(experiment, "cmd")  # the search was done: this starts the refit
    monkeypatch.setattr(src.refit, "train_epoch", counting(epochs_run))
    outcome = pipeline.resume(experiment, "cmd")
    assert outcome is not None and outcome.test_accuracy is not None
    assert len(epochs_run) == 6  # 3, then the 3 left: it continued
    assert pipeline.resume(experiment, "cmd") is None  # complete now


def test_a_timed_refit_trains_the_epochs_its_time_holds(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL)
    # The refit's clock shows half a second per epoch, however long one takes here.
    clock = FakeClock()
    monkeypatch.setattr(src.refit, "time", clock)
    monkeypatch.setattr(src.refit, "train_epoch", clock.taking(0.5, src.refit.train_epoch))
    start = clock.monotonic()
    refit(plan_refit(experiment, epochs=500), "cmd", seconds=3.0)  # far more than 3 s hold
    trained = torch.load(experiment / MODEL_FILE, weights_only=True)["trained_on"]["epochs"]
    assert trained == 6  # re-planned from the first epoch's pace: 3 s at 0.5 s an epoch
    assert clock.monotonic() - start <= 3.0  # training ended within its time


def trial_with_checkpoint(experiment: Path, images: Path, name: str, config: dict) -> Path:
    """A trial folder as a search leaves it: a checkpoint after one epoch, and progress.csv
    naming it."""
    trial = experiment / trial_folder_name(name)
    data = open_trial_data(DataSpec(images), config, torch.device("cpu"))
    model = build_model(config, len(data.class_names), torch.device("cpu"))
    optimizer, schedule = make_optimizer(model, config, 1, len(data.train))
    train_epoch(model, data.train, optimizer, schedule)
    (checkpoint := trial / "checkpoint_000000").mkdir(parents=True)
    save_checkpoint(checkpoint, 1, model, optimizer, schedule, config, data)
    progress = {"epoch": 1, "val_accuracy": 0.5, "checkpoint_dir_name": checkpoint.name}
    pd.DataFrame([progress]).to_csv(trial / TRIAL_PROGRESS, index=False)
    return trial


def test_an_old_summary_without_the_augmentations_columns_is_refit_as_it_trained(
    images: Path, tmp_path: Path
) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL)
    summary = ExperimentFolder(experiment).summary
    pd.read_csv(summary).drop(columns=list(ADDED_LATER)).to_csv(summary, index=False)
    plan = plan_refit(experiment, epochs=1, image_size=None, seed=0)
    assert plan.config == {**SMALL, "image_size": 32, "seed": 0, **ADDED_LATER}


def test_an_ensemble_without_trials_to_add_is_the_final_model_alone(
    images: Path, tmp_path: Path
) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL, ensemble=2)  # no paths
    result = refit(plan_refit(experiment, epochs=1, image_size=None, seed=0), "cmd")
    assert result.members == 1
    assert torch.load(experiment / MODEL_FILE, weights_only=True)["members"] == []
    assert plan_and_actual(experiment)[1]["final_model"]["members_asked"] == 2


@pytest.mark.parametrize("asked", [3, 5])
def test_an_ensemble_file_averages_the_final_model_and_the_best_trials_each_at_its_side(
    images: Path, tmp_path: Path, asked: int
) -> None:
    experiment = finished_experiment(tmp_path / "exp", images, SMALL, ensemble=asked)
    trials = {"best": {**SMALL, "image_size": 32}, "second": {**SMALL, "image_size": 48},
              "third": {**SMALL, "image_size": 32, "fc_units": 64}}  # fmt: skip
    done = {"status": "completed", "epochs": 1, "best_epoch": 1, "compute_seconds": 1.0,
            "seconds_per_epoch": 1.0, "val_images": 9, "seed": 0}  # fmt: skip
    rows = []
    for (name, config), score in zip(trials.items(), (0.9, 0.8, 0.7), strict=True):
        trial = trial_with_checkpoint(experiment, images, name, {**config, "seed": 0})
        rows.append({**config, **done, "trial_id": name, "best_val_accuracy": score,
                     "path": str(trial)})  # fmt: skip
    pd.DataFrame(rows).to_csv(ExperimentFolder(experiment).summary, index=False)
    result = refit(plan_refit(experiment, epochs=2, image_size=None, seed=0), "cmd")

    members = load_final_model(experiment / MODEL_FILE, torch.device("cpu"))
    expected = min(asked, 1 + len(trials))  # the search kept three trials' checkpoints
    assert len(members) == result.members == expected
    assert [m.size for m in members[:3]] == [40, 32, 48]  # final at 1.25x; trials at their own
    assert plan_and_actual(experiment)[1]["final_model"]["members_asked"] == asked
    block = summary_block(experiment, pd.DataFrame(rows), result, "best")
    assert f"ensemble       {expected} networks averaged" in block
    assert ("the search kept no more" in block) is (asked > expected)
    # predict averages each member's probabilities, each member reading the photo at its side
    photo = next((images / "class_1").glob("*.png"))
    row = run_predict(experiment / MODEL_FILE, [photo], top_k=1).iloc[0]
    by_hand = np.mean([probabilities(m.model, m.state, read_image(photo, m.size)[None])[0]
                       for m in members], axis=0)  # fmt: skip
    assert row["probability"] == pytest.approx(by_hand.max(), abs=1e-6)
    assert row["class"] == members[0].state["class_names"][by_hand.argmax()]
