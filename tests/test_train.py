"""The training recipe's schedule and optimiser state (PBT and the time budget change them)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from src.config import DEFAULT_START
from src.model import build_model
from src.train import (
    WarmupCosine,
    WeightAverage,
    make_optimizer,
    set_optimizer_hyperparameters,
)

CONFIG = {**DEFAULT_START, "num_conv_layers": 2, "start_filters": 8, "fc_units": 16}


def stepped(steps: int, epochs: int = 4, per_epoch: int = 5) -> tuple:
    model = build_model(CONFIG, 3, torch.device("cpu"))
    optimizer, schedule = make_optimizer(model, CONFIG, epochs, per_epoch)
    for _ in range(steps):
        model(torch.rand(2, 3, 32, 32)).sum().backward()
        optimizer.step()
        schedule.step()
    return model, optimizer, schedule


def test_the_learning_rate_warms_up_to_its_peak_and_decays_to_zero() -> None:
    factor = WarmupCosine(warmup=5, total=20)
    rates = [factor(step) for step in range(21)]
    assert rates[0] < rates[1] < rates[4] == rates[5] == 1.0  # a linear warm-up to the peak
    assert all(a > b for a, b in itertools.pairwise(rates[5:]))  # then always down
    assert rates[20] == pytest.approx(0.0, abs=1e-12)
    factor.total = 40  # a time-budgeted refit, re-planned after its first epoch
    assert factor(20) > 0.4 and factor(40) == pytest.approx(0.0, abs=1e-12)


def test_restored_optimizer_trains_on_with_the_mutated_lr_and_weight_decay() -> None:
    model, optimizer, schedule = stepped(7)  # past the warm-up
    (original,) = optimizer.param_groups
    unmutated_lr = original["lr"]
    saved_optimizer, saved_schedule = optimizer.state_dict(), schedule.state_dict()

    mutated = {**CONFIG, "lr": CONFIG["lr"] * 0.8, "weight_decay": 1e-2}
    optimizer2, schedule2 = make_optimizer(model, mutated, 4, 5)
    optimizer2.load_state_dict(saved_optimizer)  # brings back the donor's lr and decay
    schedule2.load_state_dict(saved_schedule)
    set_optimizer_hyperparameters(optimizer2, schedule2, mutated)

    (group,) = optimizer2.param_groups
    assert math.isclose(group["lr"], 0.8 * unmutated_lr)  # the same point of the schedule
    assert group["weight_decay"] == 1e-2
    assert schedule2.last_epoch == 7  # the schedule keeps its place
    assert optimizer2.state  # Adam's moments survive
    schedule.step()
    schedule2.step()  # and later steps follow the mutated peak
    assert math.isclose(group["lr"], 0.8 * original["lr"])


def test_the_weight_average_moves_half_way_in_one_half_life_and_leaves_the_model() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, half_life=2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model(torch.randn(4, 3))  # training mode: BatchNorm's statistics and count move too
    live = {k: v.clone() for k, v in model.state_dict().items()}
    average.update()
    average.update()
    averaged = average.model.state_dict()
    for name, value in live.items():
        if value.is_floating_point():  # two steps of a 2-step half-life: half-way there
            torch.testing.assert_close(averaged[name], (start[name] + value) / 2)
            assert not torch.equal(averaged[name], value)
        else:
            assert averaged[name] == value == 1  # num_batches_tracked is copied, not averaged
    assert all(torch.equal(model.state_dict()[k], v) for k, v in live.items())  # untouched
    assert not any(p.requires_grad for p in average.model.parameters())
