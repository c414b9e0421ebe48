"""The training step (src/step.py) on a CPU: what a CUDA graph relies on, checked without one.

A replayed graph reads its learning rate and the batch from device tensors; these tests check
that the schedule fills the very tensor the optimiser holds, that a state saved for capture
loads for eager steps (and back), that graphed batches all have one shape, and that a failed
capture trains on eagerly. The graph itself needs a GPU: benchmarks/cuda_graph.py.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from conftest import trial_config
from loguru import logger

import src.step
from src.config import DEFAULT_START, DataSpec
from src.data import BatchStream, open_trial_data
from src.device import Amp
from src.model import build_model
from src.step import EagerStep, GraphedStep, make_step
from src.train import (
    load_training_state,
    make_optimizer,
    prepare_capture,
    train_epoch,
    training_state,
)

CONFIG = {**DEFAULT_START, "num_conv_layers": 2, "start_filters": 8, "fc_units": 16}
CPU = torch.device("cpu")


def batch(seed: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 3, (n,), generator=generator)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step()`")  # no training here
def test_the_schedule_fills_the_learning_rate_tensor_a_captured_step_reads() -> None:
    model = build_model(CONFIG, 3, CPU)
    eager_opt, eager_schedule = make_optimizer(model, CONFIG, epochs=3, steps_per_epoch=4)
    optimizer, schedule = make_optimizer(model, CONFIG, epochs=3, steps_per_epoch=4)
    prepare_capture(optimizer, capturable=True)
    (group,) = optimizer.param_groups
    rate = group["lr"]
    assert isinstance(rate, torch.Tensor) and group["capturable"]
    assert isinstance(group["initial_lr"], float)  # a tensor base would sync every step
    for _ in range(12):
        schedule.step()
        eager_schedule.step()
        assert group["lr"] is rate  # filled in place: a replay reads this memory
        assert rate.item() == pytest.approx(eager_opt.param_groups[0]["lr"], rel=1e-6)
    assert rate.item() == pytest.approx(0.0, abs=1e-9)  # the whole cosine, to its end


def test_a_state_saved_for_capture_loads_for_eager_steps_and_trains_on() -> None:
    model = build_model(CONFIG, 3, CPU)
    optimizer, schedule = make_optimizer(model, CONFIG, epochs=2, steps_per_epoch=3)
    step = EagerStep(model, optimizer, Amp("cpu", "fp32"), 0.1)
    step(*batch(0))
    schedule.step()
    prepare_capture(optimizer, capturable=True)  # as a graphed trial on a GPU would save it
    state = training_state(1, model, optimizer, schedule)
    assert isinstance(state["optimizer"]["param_groups"][0]["lr"], torch.Tensor)

    restored = build_model(CONFIG, 3, CPU)
    optimizer2, schedule2 = make_optimizer(restored, CONFIG, epochs=2, steps_per_epoch=3)
    assert load_training_state(state, restored, optimizer2, schedule2) == 1
    (group,) = optimizer2.param_groups
    assert group["capturable"] is False and isinstance(group["lr"], float)
    assert group["lr"] == pytest.approx(optimizer.param_groups[0]["lr"].item())
    EagerStep(restored, optimizer2, Amp("cpu", "fp32"), 0.1)(*batch(1))  # AdamW accepts it


def test_graphed_batches_all_have_one_shape_and_leave_out_other_images_each_epoch() -> None:
    images = torch.randint(0, 255, (23, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(23) % 3
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    indices = torch.arange(23)
    full = BatchStream(images, labels, indices, 5, mean, std, True, 0, full_batches=True)
    every = BatchStream(images, labels, indices, 5, mean, std, True, 0)
    assert [len(y) for _, y in every] == [5, 5, 5, 5, 3] and len(every) == 5
    epochs = [[y for _, y in full] for _ in range(3)]
    assert len(full) == 4 and all([len(y) for y in e] == [5] * 4 for e in epochs)
    full_tiny = BatchStream(images, labels, indices[:3], 5, mean, std, True, 0, full_batches=True)
    assert [len(y) for _, y in full_tiny] == [3]  # fewer than a batch: the one batch there is


def test_a_failed_capture_trains_on_eagerly_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On this machine (no GPU) every capture fails, as it would on a GPU for an operation a
    graph cannot record: the graphed step must train exactly as the eager one does."""
    monkeypatch.setattr(src.step, "WARMUP_STEPS", 0)  # warming up needs a CUDA stream
    torch.manual_seed(0)
    config = {**CONFIG, "dropout": 0.0}  # the two models' dropout masks would differ
    model = build_model(config, 3, CPU)
    twin = copy.deepcopy(model)
    amp = Amp("cpu", "fp32")
    graphed = GraphedStep(model, make_optimizer(model, config, 1, 3)[0], amp, 0.1)
    eager = EagerStep(twin, make_optimizer(twin, config, 1, 3)[0], amp, 0.1)
    warnings: list[str] = []
    handler = logger.add(warnings.append, level="WARNING", format="{message}")
    try:
        losses = [(graphed(*batch(i)).item(), eager(*batch(i)).item()) for i in range(3)]
    finally:
        logger.remove(handler)
    assert len(warnings) == 1 and "CUDA graph capture failed" in warnings[0]
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in losses)
    for mine, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_steps_are_eager_on_a_cpu_and_graphs_only_where_asked(
    monkeypatch: pytest.MonkeyPatch, image_dir: Path
) -> None:
    monkeypatch.setenv("HYPERTUNE_CUDA_GRAPH", "1")  # asked for: still no graph on a CPU
    model = build_model(CONFIG, 3, CPU)
    optimizer, schedule = make_optimizer(model, CONFIG, epochs=1, steps_per_epoch=2)
    assert not optimizer.param_groups[0]["capturable"]
    step = make_step(model, optimizer, Amp("cpu", "fp32"), 0.1)
    assert isinstance(step, EagerStep)
    data = open_trial_data(DataSpec(image_dir), trial_config(batch_size=8), CPU)
    assert data.train.used == data.train.num_images  # CPU batches: every image, every epoch
    loss = train_epoch(model, data.train, optimizer, schedule, amp=Amp("cpu", "fp32"), step=step)
    assert math.isfinite(loss) and loss > 0
    prepare_capture(optimizer, capturable=True)  # a capturable optimiser, fp32: a graph
    assert isinstance(make_step(model, optimizer, Amp("cpu", "fp32"), 0.1), GraphedStep)
    fp16 = Amp("cuda", "fp16", torch.amp.GradScaler("cpu"))  # the scaler reads on the host
    assert isinstance(make_step(model, optimizer, fp16, 0.1), EagerStep)
