from __future__ import annotations

import itertools

import pytest
import torch

from src.config import DEFAULT_START, SEARCH_SPACE
from src.model import Net, count_parameters

CHOICES = {name: args for name, (kind, args) in SEARCH_SPACE.items() if kind == "choice"}
ARCHITECTURE = {
    "num_conv_layers": CHOICES["num_conv_layers"],
    "start_filters": CHOICES["start_filters"],
    "fc_units": CHOICES["fc_units"],
    "kernel_size": [3, 5],
    "residual": [False, True],
    "batchnorm": [False, True],
}


@pytest.mark.parametrize("image_size", [32, 45, 64])
def test_every_architecture_in_the_space_gives_one_logit_per_class(image_size: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, image_size, image_size)
    for values in itertools.product(*ARCHITECTURE.values()):
        config = {**DEFAULT_START, **dict(zip(ARCHITECTURE, values, strict=True))}
        with torch.no_grad():
            logits = Net(config, num_classes=5).eval()(x)
        assert logits.shape == (2, 5), config
        assert torch.isfinite(logits).all(), config


def test_gradients_reach_every_parameter() -> None:
    model = Net({**DEFAULT_START, "residual": True}, num_classes=5)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_parameter_count_follows_the_config() -> None:
    small = Net({**DEFAULT_START, "start_filters": 16}, num_classes=5)
    large = Net({**DEFAULT_START, "start_filters": 64}, num_classes=5)
    assert count_parameters(small) == sum(p.numel() for p in small.parameters())
    assert count_parameters(large) > count_parameters(small)
    # Residual blocks add exactly one 1x1 projection (no bias) per block.
    residual = Net({**DEFAULT_START, "residual": True}, num_classes=5)
    channels = [3, 32, 64, 128]
    projections = sum(a * b for a, b in itertools.pairwise(channels))
    plain = Net({**DEFAULT_START, "residual": False}, num_classes=5)
    assert count_parameters(residual) - count_parameters(plain) == projections
