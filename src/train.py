"""The training recipe, shared by every trial (src/trainable.py) and the refit (src/refit.py).

AdamW with a per-step schedule (linear warm-up, then cosine decay to 0), label smoothing, mixed
precision where the device supports it (src/device.py), each step eager or a replayed CUDA graph
(src/step.py). Losses and accuracy are summed on the device and read once per epoch: no per-step
host sync on a GPU. Saved states hold CPU tensors only, so a model trained on a GPU loads on any
machine with a plain torch.load.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from src.config import WARMUP_EPOCHS
from src.data import BatchStream, TrialData
from src.device import Amp, graphs_wanted
from src.errors import space_for
from src.results import CHECKPOINT_FILE
from src.step import EagerStep, TrainStep

Schedule = torch.optim.lr_scheduler.LambdaLR  # what make_optimizer makes
LRScheduler = torch.optim.lr_scheduler.LRScheduler  # what a saved state may hold


class WarmupCosine:
    """The learning-rate factor of a step: a linear warm-up over `warmup` steps, then cosine
    decay to 0 at step `total`. An object rather than a closure: Tune's and the refit's saved
    schedules keep its values, and a time-budgeted refit moves `total` as its measured pace
    shows how many epochs the time left holds."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(self.total - self.warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(
    model: nn.Module, config: dict[str, Any], epochs: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, Schedule]:
    """AdamW with a per-step schedule: linear warm-up for WARMUP_EPOCHS, then cosine decay to
    0 at `epochs`, so a trial that is allowed to finish ends at a small learning rate. Where
    steps are CUDA graphs (src.device.graphs_wanted), made for capture: its step count and
    learning rate live on the device, and the schedule fills the rate in place."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"]
    )
    prepare_capture(optimizer, graphs_wanted(next(model.parameters()).device))
    total = max(epochs * steps_per_epoch, 1)
    warmup = min(WARMUP_EPOCHS * steps_per_epoch, total // 2)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total))


def prepare_capture(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """Make the optimizer fit for CUDA graph capture (`capturable`: its step counts and current
    learning rate as device tensors, which a captured step reads and LambdaLR fills in place),
    or for eager steps. Also after loading a state saved the other way (a checkpoint of a
    graphed trial resumed on a CPU, say). The peak rate stays a float: a schedule computed
    from a device tensor would read it back, a host sync, every step."""
    for group in optimizer.param_groups:
        device = group["params"][0].device
        lr = float(group["lr"])
        group.update(capturable=capturable, initial_lr=float(group.get("initial_lr", lr)))
        group["lr"] = torch.tensor(lr, device=device) if capturable else lr
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if "step" in state:  # AdamW keeps it on the CPU unless capturable
                state["step"] = state["step"].to(device if capturable else "cpu")


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics (as timm's
    ModelEmaV2: the statistics are averaged along, not recomputed), updated after every
    optimiser step. Its decay follows from a half-life in steps, which the caller sets from the
    length of training (src.config.EMA_HALF_LIFE): a fixed decay that suits a long schedule
    remembers too much of a short one's early, poor weights."""

    def __init__(self, model: nn.Module, half_life: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.half_life = half_life
        # state_dict() tensors share storage with the live ones, which training updates in place.
        live = model.state_dict().values()
        pairs = list(zip(self.model.state_dict().values(), live, strict=True))
        self.floats = [(a, b) for a, b in pairs if a.is_floating_point()]
        self.counts = [(a, b) for a, b in pairs if not a.is_floating_point()]

    @property
    def decay(self) -> float:
        return 0.5 ** (1 / max(self.half_life, 1.0))

    @torch.no_grad()
    def update(self) -> None:
        averaged, live = zip(*self.floats, strict=True)
        torch._foreach_lerp_(list(averaged), list(live), 1 - self.decay)
        for a, b in self.counts:  # BatchNorm's num_batches_tracked
            a.copy_(b)


def train_epoch(
    model: nn.Module,
    stream: BatchStream,
    optimizer: torch.optim.Optimizer,
    schedule: LRScheduler | None = None,
    label_smoothing: float = 0.0,
    amp: Amp | None = None,
    step: TrainStep | None = None,
    average: WeightAverage | None = None,
) -> float:
    """One pass over `stream`; returns the mean training loss (read once, at the end).
    `step` (src.step.make_step over the same model and optimizer) is kept across epochs by
    callers whose steps may be CUDA graphs: the capture is made once; default: eager.
    `average`, if given, follows the model's weights after every step."""
    amp = amp or Amp.for_device(stream.images.device)
    step = step or EagerStep(model, optimizer, amp, label_smoothing)
    model.train()
    loss_sum = torch.zeros((), device=stream.images.device)
    trained = 0
    for x, y in stream:
        loss = step(x, y)
        if average is not None:
            average.update()
        if schedule is not None:
            schedule.step()
        loss_sum += loss.float() * len(y)
        trained += len(y)
    return loss_sum.item() / max(trained, 1)


@torch.no_grad()
def validate(model: nn.Module, stream: BatchStream, amp: Amp | None = None) -> dict[str, float]:
    """val_loss and val_accuracy over one pass of `stream` (read once, at the end)."""
    amp = amp or Amp.for_device(stream.images.device)
    model.eval()
    loss_sum = torch.zeros((), device=stream.images.device)
    correct = torch.zeros((), device=stream.images.device, dtype=torch.long)
    for x, y in stream:
        with amp.autocast():
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = stream.num_images
    return {"val_loss": loss_sum.item() / n, "val_accuracy": correct.item() / n}


def set_optimizer_hyperparameters(
    optimizer: torch.optim.Optimizer, schedule: Schedule, config: dict[str, Any]
) -> None:
    """The config's peak lr and weight decay over restored optimizer and schedule states, which
    carry the values they were saved with; the schedule keeps its place."""
    schedule.base_lrs = [config["lr"]] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, schedule.lr_lambdas, strict=True):
        lr = config["lr"] * factor(schedule.last_epoch)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)  # a captured step reads this very tensor
        else:
            group["lr"] = lr
        group.update(initial_lr=config["lr"], weight_decay=config["weight_decay"])


def plain(config: dict[str, Any]) -> dict[str, Any]:
    """HyperOpt and BOHB hand out numpy scalars; a trial works with (and checkpoints hold) plain
    Python values, so that they load with torch.load(weights_only=True)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in config.items()}


def on_cpu(value: Any) -> Any:
    """`value` with every tensor in it (nested dicts and lists too) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(on_cpu(v) for v in value)
    return value


def training_state(
    epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: LRScheduler
) -> dict[str, Any]:
    """What continuing the training needs, in CPU tensors and plain values."""
    return on_cpu(
        {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
         "schedule": schedule.state_dict()}
    )  # fmt: skip


def load_training_state(
    state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, schedule: LRScheduler
) -> int:
    """Restore what training_state saved (the optimizer moves its moments to the model's
    device, and its learning rate the form this device's steps need: src.step);
    returns the number of epochs done."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    prepare_capture(optimizer, graphs_wanted(next(model.parameters()).device))
    return int(state["epoch"])


def save_checkpoint(
    folder: Path,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRScheduler,
    config: dict[str, Any],
    data: TrialData,
) -> None:
    """A trial's checkpoint: everything to resume training, and to use the model on new images
    without the experiment (config, class names, image size and normalisation)."""
    state = {
        **training_state(epoch, model, optimizer, schedule),
        "config": config,  # plain values (train_cnn made them so): loads with weights_only=True
        **data.applying_state(),
    }
    with space_for(folder, "a trial's checkpoint"):
        torch.save(state, folder / CHECKPOINT_FILE)
