"""One optimiser step on one batch: eager, or replayed from a CUDA graph.

On a GPU the start's step is a few hundred kernels of a few microseconds each, and the
card waits on the host that launches them: 7,900 images/s on an H200, 2 TFLOP/s of the ~790 it
reaches on matrix products, fp32 as fast as bf16 (issue 31). A CUDA graph records forward, loss,
backward and AdamW's update once over static input tensors; every later step copies its batch
in and replays the recording: one launch. A replay repeats exactly the kernels it recorded, so
whatever changes from step to step must live in device memory the graph reads:
- the learning rate: a device tensor that the schedule fills between replays
  (src.train.make_optimizer, `capturable`; LambdaLR fills a tensor lr in place);
- AdamW's step count: `capturable=True` keeps it on the device;
- the batch: copied into the static input; every batch has the same shape
  (src.data.BatchStream drops an epoch's last, partial batch when graphed).
fp16's gradient scaler reads its overflow check on the host: fp16 stays eager.

Off by default until a real GPU has passed `benchmarks/cuda_graph.py` (eager and graphed
losses agree, the learning rate follows the schedule): HYPERTUNE_CUDA_GRAPH=1 turns it on
(src.device.graphs_wanted). Where capture fails the step falls back to eager, with one line.
CPU training is always eager: it is at 95% of the model-only limit (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from typing import Protocol

import torch
from loguru import logger
from torch import nn

from src.device import Amp

# Eager steps on a side stream before the capture: cuDNN picks its kernels and AdamW creates its
# state then, which a capture must not record. They train on real batches like any other step.
WARMUP_STEPS = 3


class TrainStep(Protocol):
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Train on one batch; returns the batch's mean loss (a device tensor, not read)."""
        ...


class EagerStep:
    """Forward, loss, backward and the optimiser's step, launched kernel by kernel."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, amp: Amp, smoothing: float
    ) -> None:
        self.model, self.optimizer, self.amp, self.smoothing = model, optimizer, amp, smoothing

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.amp.autocast():
            loss = nn.functional.cross_entropy(self.model(x), y, label_smoothing=self.smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.amp.backward_step(loss, self.optimizer)
        return loss.detach()


class GraphedStep:
    """EagerStep for the first WARMUP_STEPS batches (on a side stream, as capture requires),
    then one capture of the whole step over static tensors, replayed for every later batch.
    A capture that fails makes it an EagerStep for good, with one warning."""

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, amp: Amp, smoothing: float
    ) -> None:
        self.eager = EagerStep(model, optimizer, amp, smoothing)
        self.warmed, self.failed = 0, False
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # x, y, loss

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.eager(x, y)
        if self.warmed < WARMUP_STEPS:
            return self.warm_up(x, y)
        if self.graph is None:
            return self.capture_and_replay(x, y)
        return self.replay(x, y)

    def warm_up(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loss = self.eager(x, y)
        torch.cuda.current_stream().wait_stream(side)
        self.warmed += 1
        return loss

    def capture_and_replay(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        static_x, static_y = x.clone(), y.clone()  # same shape, layout and device
        self.eager.optimizer.zero_grad(set_to_none=True)  # gradients come from the graph's pool
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_loss = self.eager(static_x, static_y)
        except Exception as err:  # a capture runs nothing: this batch is still to train on
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
            logger.warning(f"CUDA graph capture failed ({reason}); training on with eager steps.")
            self.failed = True
            return self.eager(x, y)
        self.graph, self.static = graph, (static_x, static_y, static_loss)
        graph.replay()  # the capture recorded this batch's step without running it
        return static_loss

    def replay(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert self.graph is not None and self.static is not None
        static_x, static_y, static_loss = self.static
        static_x.copy_(x)
        static_y.copy_(y)
        self.graph.replay()
        return static_loss


def make_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, amp: Amp, smoothing: float
) -> TrainStep:
    """A GraphedStep where the optimizer was made for capture (src.train.make_optimizer on a
    device where src.device.graphs_wanted) and the precision needs no gradient scaler; else an
    EagerStep."""
    capturable = all(group.get("capturable", False) for group in optimizer.param_groups)
    if capturable and amp.scaler is None:
        return GraphedStep(model, optimizer, amp, smoothing)
    if capturable:
        logger.info("fp16 with a gradient scaler: training with eager steps, not a CUDA graph.")
    return EagerStep(model, optimizer, amp, smoothing)
