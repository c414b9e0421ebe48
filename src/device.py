"""Where a process computes, in which precision, from which seed: decided here and nowhere else.

- A Ray trial uses exactly the device Ray assigned it (`trial_device`): no GPU id means the CPU,
  whatever torch can see (Ray 2.60 no longer hides GPUs from trials that got none); a GPU that
  torch cannot use fails the trial at once, saying why (`gpu_problem`).
- A single process (refit, evaluate, predict) uses the GPU where torch can use one
  (`local_device`).
- HYPERTUNE_DEVICE=cpu in the environment (of the driver: Ray's workers inherit it) keeps every
  process on the CPU; a trial still holds the GPU share Ray gave it. The tests use it to
  schedule trials on a logical GPU (`ray.init(num_gpus=1)`) of a machine that has none.
- The precision follows the hardware (`precision_for`): bf16 autocast from compute capability
  8.0 (Ampere), fp16 autocast with a gradient scaler below it (Turing's T4, Volta's V100: cuDNN
  has no bf16 convolutions there); on a CPU, bf16 autocast where it has bf16 instructions
  (AVX512-BF16 or AMX: faster epochs, same accuracy: journal entry 14), fp32 where it
  would only emulate them. HYPERTUNE_PRECISION=fp32 keeps every process in fp32.
- A training step on a GPU is captured once as a CUDA graph and replayed (src/step.py) where
  HYPERTUNE_CUDA_GRAPH=1 (`graphs_wanted`): off by default until a GPU check has passed.
"""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from src.errors import HypertuneError

# What the locked torch build needs (README, "On a GPU"): a driver of the CUDA 13 generation
# and a card it ships kernels for.
DRIVER_HINT = (
    "torch {torch} is built for CUDA {cuda}: it needs an NVIDIA driver of version 580 or newer "
    "and a card of compute capability 7.5 or newer. Update the driver (nvidia-smi shows its "
    "version), or install the torch build for your driver's CUDA version into .venv "
    "(https://pytorch.org/get-started/locally/), or run on CPUs with --gpus-per-trial 0."
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def gpu_problem() -> str | None:
    """Why torch cannot train on this process's first visible GPU, or None."""
    hint = DRIVER_HINT.format(torch=torch.__version__, cuda=torch.version.cuda)
    if not torch.cuda.is_available():
        return f"torch cannot use the GPU (torch.cuda.is_available() is False). {hint}"
    major, minor = torch.cuda.get_device_capability(0)
    built = [int(a.split("_")[1].rstrip("af")) for a in torch.cuda.get_arch_list() if "sm_" in a]
    if built and 10 * major + minor < min(built):  # newer cards run the bundled PTX
        name = torch.cuda.get_device_name(0)
        return (
            f"torch {torch.__version__} has no kernels for {name} (compute capability "
            f"{major}.{minor}; the oldest it supports is {min(built) / 10:.1f}). {hint}"
        )
    return None


class DeviceError(HypertuneError):
    """A GPU was assigned that torch cannot use; the message says why and what to do."""


def forced_cpu() -> bool:
    """Whether HYPERTUNE_DEVICE=cpu keeps every process on the CPU."""
    return os.environ.get("HYPERTUNE_DEVICE") == "cpu"


def trial_device(gpu_ids: list[Any]) -> torch.device:
    """The device of a Ray trial that was assigned `gpu_ids` (ray.get_gpu_ids()). Ray makes the
    assigned GPU the only visible one, so it is cuda:0."""
    if not gpu_ids or forced_cpu():
        return torch.device("cpu")
    if problem := gpu_problem():
        raise DeviceError(f"This trial was given GPU {gpu_ids[0]}, but {problem}")
    return torch.device("cuda", 0)


def graphs_wanted(device: torch.device) -> bool:
    """Whether training steps on `device` are CUDA graphs (src/step.py): on a GPU, where
    HYPERTUNE_CUDA_GRAPH=1 (benchmarks/cuda_graph.py is the check that would make it the
    default)."""
    return device.type == "cuda" and os.environ.get("HYPERTUNE_CUDA_GRAPH") == "1"


def local_device() -> torch.device:
    """The device of a single process: the GPU where torch can use one, else the CPU."""
    usable = not forced_cpu() and gpu_problem() is None
    return torch.device("cuda" if usable else "cpu")


def describe_device(device: torch.device) -> str:
    """'cpu', or the card's name: recorded with every trial and model."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, torch >= 2.3
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def precision_for(capability: tuple[int, int] | None, cpu_bf16: bool = False) -> str:
    """bf16, fp16 or fp32 for a CUDA card of compute `capability`, or for the CPU (None): bf16
    where it has bf16 instructions (`cpu_bf16`), else fp32."""
    if os.environ.get("HYPERTUNE_PRECISION") == "fp32":
        return "fp32"
    if capability is None:
        return "bf16" if cpu_bf16 else "fp32"
    return "bf16" if capability >= (8, 0) else "fp16"


@dataclass
class Amp:
    """Mixed precision for one training run: an autocast dtype, and for fp16 a gradient scaler
    (fp16's narrow range would round small gradients to 0; bf16 has fp32's range)."""

    device_type: str
    precision: str  # from precision_for
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def for_device(cls, device: torch.device) -> Amp:
        if device.type == "cuda":
            precision = precision_for(torch.cuda.get_device_capability(device))
        else:
            precision = precision_for(None, cpu_has_bf16())
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        return cls(device.type, precision, scaler)

    def autocast(self) -> AbstractContextManager[Any]:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        # On a GPU no cache of cast weights: a CUDA graph must not capture one (src/step.py),
        # and each weight is cast once per forward pass anyway.
        cache = self.device_type != "cuda"
        return torch.autocast(
            self.device_type, dtype=dtype, enabled=dtype is not None, cache_enabled=cache
        )

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
