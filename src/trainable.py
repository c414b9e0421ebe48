"""The Ray Tune trainable: one trial = one CNN trained epoch by epoch on the cached images.

After every epoch it reports train_loss, val_loss, val_accuracy and epoch_seconds to Tune with a
checkpoint, so a scheduler can stop it and a restarted trial continues where it was; beside
them what the trial spends besides epochs: setup_seconds (data, model, restored checkpoint) and
report_seconds (the previous epoch's checkpoint and report). It trains
on exactly the device Ray assigned it (src/device.py) with the recipe of src/train.py.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from src.config import DataSpec, current_config
from src.data import open_trial_data
from src.device import Amp, describe_device, graphs_wanted, seed_everything, trial_device
from src.model import build_model, count_parameters
from src.results import CHECKPOINT_FILE
from src.step import make_step
from src.train import (
    load_training_state,
    make_optimizer,
    plain,
    save_checkpoint,
    set_optimizer_hyperparameters,
    train_epoch,
    validate,
)


def trial_cpus() -> int:
    """CPUs Ray assigned to this trial: the torch thread count."""
    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


def restore(model: torch.nn.Module, optimizer: Any, schedule: Any, config: dict[str, Any]) -> int:
    """Load Tune's checkpoint for this trial, if any; returns the number of epochs done.
    The checkpoint may be another trial's, with `config` a mutation of its config (PBT)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    done = load_training_state(state, model, optimizer, schedule)  # dropout: from `config`
    set_optimizer_hyperparameters(optimizer, schedule, config)
    return done


def train_cnn(
    config: dict[str, Any], data_spec: DataSpec, max_epochs: int, start: dict[str, Any]
) -> None:
    """Tune function trainable. `config` holds the hyperparameters (src.config.HYPERPARAMETERS:
    DEFAULT_START's, the image size and the seed); `data_spec` (the images), `max_epochs` and
    `start` (the run's starting configuration) are the same for every trial. A trial of an
    experiment begun before a hyperparameter existed (image_size, block) is resumed with the
    start's value of it."""
    began = time.perf_counter()  # what a trial spends besides its epochs is measured too
    # plain: BOHB's ConfigSpace hands out numpy integers, which torch refuses
    config = {**start, **current_config(plain(config))}
    torch.set_num_threads(trial_cpus())
    seed_everything(config["seed"])
    device = trial_device(ray.get_gpu_ids())
    data = open_trial_data(data_spec, config, device, full_batches=graphs_wanted(device))
    assert data.val is not None
    model = build_model(config, len(data.class_names), device)
    optimizer, schedule = make_optimizer(model, config, max_epochs, len(data.train))
    amp = Amp.for_device(device)
    step = make_step(model, optimizer, amp, config["label_smoothing"])
    fixed = {
        "num_params": count_parameters(model),
        "val_images": data.val.num_images,  # the binomial noise of val_accuracy follows from it
        "node_id": ray.get_runtime_context().get_node_id(),  # which machine, on a cluster
        "device": describe_device(device),
        "precision": amp.precision,
    }
    first = restore(model, optimizer, schedule, config) + 1
    fixed["setup_seconds"] = time.perf_counter() - began  # data, model, checkpoint restored
    reported = 0.0  # the last epoch's checkpoint and report (Ray persists it meanwhile)
    for epoch in range(first, max_epochs + 1):
        since = time.perf_counter()
        loss = train_epoch(model, data.train, optimizer, schedule, amp=amp, step=step)
        diverged = not math.isfinite(loss)
        scores = {"val_loss": math.nan, "val_accuracy": 0.0}
        if not diverged:
            scores = validate(model, data.val, amp)
        metrics = {
            "epoch": epoch,
            "train_loss": loss,
            **scores,
            "epoch_seconds": time.perf_counter() - since,
            "report_seconds": reported,
            "diverged": diverged,
            **fixed,
        }
        if diverged:
            # The trial ends with the worst accuracy: schedulers and searchers see a bad
            # configuration, not a crash, and no checkpoint of NaN weights is kept.
            tune.report(metrics)
            return
        since = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(Path(folder), epoch, model, optimizer, schedule, config, data)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        reported = time.perf_counter() - since
