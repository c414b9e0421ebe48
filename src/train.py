"""The Ray Tune trainable: one trial = one CNN trained epoch by epoch on the cached images.

After every epoch it reports train_loss, val_loss, val_accuracy and epoch_seconds to Tune with a
checkpoint, so ASHA can stop it and a restarted trial continues where it was. Losses and
accuracy are accumulated on the device and read once per epoch: no per-step host sync on GPU.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune
from torch import nn

from src.config import CHECKPOINT_FILE, WARMUP_EPOCHS
from src.data import BatchStream, DataSpec, TrialData, open_trial_data
from src.model import build_model, count_parameters


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device() -> torch.device:
    # Ray sets CUDA_VISIBLE_DEVICES to the GPU(s) it gave this trial, or to none.
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def trial_cpus() -> int:
    """CPUs Ray assigned to this trial: the torch thread count."""
    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA: tensor-core convolutions at half the memory traffic, and bf16
    needs no loss scaling. Elsewhere a no-op: the CPU path stays fp32 and bit-for-bit as before."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def make_optimizer(
    model: nn.Module, config: dict[str, Any], epochs: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with a per-step schedule: linear warm-up for WARMUP_EPOCHS, then cosine decay to
    0 at `epochs`, so a trial that is allowed to finish ends at a small learning rate."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"]
    )
    total = max(epochs * steps_per_epoch, 1)
    warmup = min(WARMUP_EPOCHS * steps_per_epoch, total // 2)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epoch(
    model: nn.Module,
    stream: BatchStream,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    label_smoothing: float = 0.0,
) -> float:
    """One pass over `stream`; returns the mean training loss (read once, at the end)."""
    model.train()
    loss_sum = torch.zeros((), device=stream.images.device)
    for x, y in stream:
        with autocast(x.device):
            loss = nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        loss_sum += loss.detach() * len(y)
    return loss_sum.item() / stream.num_images


@torch.no_grad()
def evaluate(model: nn.Module, stream: BatchStream) -> dict[str, float]:
    """val_loss and val_accuracy over one pass of `stream` (read once, at the end)."""
    model.eval()
    loss_sum = torch.zeros((), device=stream.images.device)
    correct = torch.zeros((), device=stream.images.device, dtype=torch.long)
    for x, y in stream:
        with autocast(x.device):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = stream.num_images
    return {"val_loss": loss_sum.item() / n, "val_accuracy": correct.item() / n}


def restore(
    model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any, config: dict[str, Any]
) -> int:
    """Load Tune's checkpoint for this trial, if any; returns the number of epochs done.
    The checkpoint may be another trial's, with `config` a mutation of its config (PBT)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])  # dropout's rate is the model's, built from `config`
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    set_optimizer_hyperparameters(optimizer, schedule, config)
    return int(state["epoch"])


def set_optimizer_hyperparameters(
    optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LambdaLR, config: dict
) -> None:
    """The config's peak lr and weight decay over restored optimizer and schedule states, which
    carry the values they were saved with; the schedule keeps its place."""
    schedule.base_lrs = [config["lr"]] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, schedule.lr_lambdas, strict=True):
        group.update(
            initial_lr=config["lr"],
            lr=config["lr"] * factor(schedule.last_epoch),
            weight_decay=config["weight_decay"],
        )


def save_checkpoint(
    folder: Path,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Any,
    config: dict[str, Any],
    data: TrialData,
) -> None:
    """Everything to resume training, and to use the model on new images without the
    experiment: config, class names, image size and normalisation."""
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "config": config,  # plain values (train_cnn made them so): loads with weights_only=True
        **data.describe(),
    }
    torch.save(state, folder / CHECKPOINT_FILE)


def plain(config: dict[str, Any]) -> dict[str, Any]:
    """HyperOpt and BOHB hand out numpy scalars; a trial works with (and checkpoints hold) plain
    Python values, so that they load with torch.load(weights_only=True)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in config.items()}


def train_cnn(config: dict[str, Any], data_spec: DataSpec, max_epochs: int) -> None:
    """Tune function trainable. `config` holds the hyperparameters (see src.config.BASELINE)
    and `seed`; `data_spec` and `max_epochs` are the same for every trial."""
    config = plain(config)  # BOHB's ConfigSpace hands out numpy integers, which torch refuses
    torch.set_num_threads(trial_cpus())
    seed_everything(config["seed"])
    device = pick_device()
    data = open_trial_data(
        data_spec, config["batch_size"], config["seed"], device, jitter=config["jitter"]
    )
    assert data.val is not None
    model = build_model(config, len(data.class_names), device)
    optimizer, schedule = make_optimizer(model, config, max_epochs, len(data.train))
    node_id = ray.get_runtime_context().get_node_id()  # which machine trained it, on a cluster
    fixed = {"num_params": count_parameters(model), "node_id": node_id}
    for epoch in range(restore(model, optimizer, schedule, config) + 1, max_epochs + 1):
        start = time.perf_counter()
        train_loss = train_epoch(model, data.train, optimizer, schedule, config["label_smoothing"])
        diverged = not math.isfinite(train_loss)
        if diverged:
            scores = {"val_loss": math.nan, "val_accuracy": 0.0}
        else:
            scores = evaluate(model, data.val)
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            **scores,
            "epoch_seconds": time.perf_counter() - start,
            "diverged": diverged,
            **fixed,
        }
        if diverged:
            # The trial ends with the worst accuracy: ASHA and HyperOpt see a bad configuration,
            # not a crash, and no checkpoint of NaN weights is kept.
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(Path(folder), epoch, model, optimizer, schedule, config, data)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
