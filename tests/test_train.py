"""The trainable's optimiser state: PBT restarts a trial from another trial's checkpoint with
mutated hyperparameters, and those must be the ones that train on."""

from __future__ import annotations

import math

import torch

from src.config import BASELINE, WARMUP_EPOCHS
from src.model import build_model
from src.train import make_optimizer, set_optimizer_hyperparameters


def test_restored_optimizer_trains_on_with_the_mutated_lr_and_weight_decay() -> None:
    config = {**BASELINE, "num_conv_layers": 2, "start_filters": 8, "fc_units": 16}
    model = build_model(config, 3, torch.device("cpu"))
    epochs, steps = 4, 5
    optimizer, schedule = make_optimizer(model, config, epochs, steps)
    for _ in range(7):  # past the warm-up: lr = peak x cosine factor
        model(torch.rand(2, 3, 32, 32)).sum().backward()
        optimizer.step()
        schedule.step()
    saved_optimizer, saved_schedule = optimizer.state_dict(), schedule.state_dict()

    mutated = {**config, "lr": config["lr"] * 0.8, "weight_decay": 1e-2}
    optimizer, schedule = make_optimizer(model, mutated, epochs, steps)
    optimizer.load_state_dict(saved_optimizer)  # brings back the donor's lr and decay
    schedule.load_state_dict(saved_schedule)
    set_optimizer_hyperparameters(optimizer, schedule, mutated)

    warmup, total = WARMUP_EPOCHS * steps, epochs * steps
    cosine = 0.5 * (1 + math.cos(math.pi * (7 - warmup) / (total - warmup)))
    (group,) = optimizer.param_groups
    assert math.isclose(group["lr"], mutated["lr"] * cosine)
    assert group["weight_decay"] == 1e-2
    assert schedule.last_epoch == 7  # the schedule keeps its place
    assert optimizer.state  # Adam's moments survive
    schedule.step()  # and later steps follow the mutated peak
    cosine = 0.5 * (1 + math.cos(math.pi * (8 - warmup) / (total - warmup)))
    assert math.isclose(group["lr"], mutated["lr"] * cosine)
