"""Each trial on the device Ray gave it, in the precision its card supports (on CPU here)."""

from __future__ import annotations

import pytest
import torch

import src.device as device
from src.device import Amp, DeviceError, precision_for, trial_device


@pytest.fixture(autouse=True)
def no_precision_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests hold with or without HYPERTUNE_PRECISION=fp32 in the caller's shell."""
    monkeypatch.delenv("HYPERTUNE_PRECISION", raising=False)


def test_no_gpu_assigned_means_the_cpu_even_where_torch_sees_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ray 2.60 no longer hides the GPUs from a trial that got none: torch may see them.
    monkeypatch.setattr(device, "gpu_problem", lambda: None)  # "a usable GPU is visible"
    assert trial_device([]) == torch.device("cpu")
    assert trial_device(["0"]) == torch.device("cuda", 0)


def test_an_assigned_gpu_torch_cannot_use_fails_at_once_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(device, "gpu_problem", lambda: "the driver is too old (example).")
    with pytest.raises(DeviceError, match="was given GPU 1, but the driver is too old"):
        trial_device([1])


def test_hypertune_device_cpu_keeps_a_trial_with_a_gpu_share_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HYPERTUNE_DEVICE", "cpu")
    assert trial_device(["0"]) == torch.device("cpu")


@pytest.mark.parametrize(
    "capability, cpu_bf16, precision",
    [
        (None, False, "fp32"),
        (None, True, "bf16"),
        ((7, 0), False, "fp16"),
        ((7, 5), True, "fp16"),
        ((8, 0), False, "bf16"),
        ((9, 0), False, "bf16"),
    ],
)
def test_precision_follows_the_hardware(
    capability: tuple[int, int] | None, cpu_bf16: bool, precision: str
) -> None:
    # V100 (7.0) and T4 (7.5) have no bf16 convolutions: fp16 with a gradient scaler there. A CPU
    # without bf16 instructions would emulate bf16, slower than fp32.
    assert precision_for(capability, cpu_bf16) == precision


def test_hypertune_precision_fp32_keeps_every_device_in_fp32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HYPERTUNE_PRECISION", "fp32")
    assert {precision_for(c, True) for c in (None, (7, 5), (9, 0))} == {"fp32"}


@pytest.mark.parametrize("cpu_bf16, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_on_the_cpu_autocast_is_bf16_where_the_cpu_has_it_and_never_scaled(
    monkeypatch: pytest.MonkeyPatch, cpu_bf16: bool, dtype: torch.dtype
) -> None:
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: cpu_bf16)
    amp = Amp.for_device(torch.device("cpu"))
    assert amp.scaler is None  # bf16 has fp32's range: no gradient scaler
    with amp.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
