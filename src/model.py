"""A configurable CNN: conv blocks -> global average pooling -> one hidden FC layer -> logits.

Every block is Conv -> BatchNorm -> ReLU -> MaxPool(2), optionally with a skip connection, and
doubles the channels. Global average pooling makes the head independent of the image size, so
any size from 32 px up works for up to 4 blocks (32 -> 16 -> 8 -> 4 -> 2).
"""

from __future__ import annotations

from functools import cache
from itertools import pairwise
from typing import Any

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv -> (BatchNorm) -> ReLU -> MaxPool, with an optional skip around conv + norm."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, batchnorm: bool, residual: bool
    ) -> None:
        super().__init__()
        # A conv followed by BatchNorm needs no bias: BatchNorm's shift replaces it.
        self.conv = nn.Conv2d(
            in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=not batchnorm
        )
        self.norm = nn.BatchNorm2d(out_ch) if batchnorm else nn.Identity()
        # The skip path needs a 1x1 projection because every block changes the channel count.
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False) if residual else None
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        if self.skip is not None:
            out = out + self.skip(x)
        return self.pool(torch.relu(out))


class Net(nn.Module):
    """The CNN described by a config dict (keys as in `src.config.DEFAULT_START`)."""

    def __init__(self, config: dict[str, Any], num_classes: int) -> None:
        super().__init__()
        channels = [3] + [config["start_filters"] * 2**i for i in range(config["num_conv_layers"])]
        block = {k: config[k] for k in ("kernel_size", "batchnorm", "residual")}
        self.features = nn.Sequential(
            *(ConvBlock(c_in, c_out, **block) for c_in, c_out in pairwise(channels))
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels[-1], config["fc_units"]),
            nn.ReLU(),
            nn.Dropout(config["dropout"]),
            nn.Linear(config["fc_units"], num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(config: dict[str, Any], num_classes: int, device: torch.device) -> Net:
    """The model on `device` in channels-last (NHWC) layout: 1.50x faster training epochs on
    CPU (benchmarks/OPTIMISATIONS.md). Batches come in the same layout (src.data.BatchStream)."""
    return Net(config, num_classes).to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# What decides a configuration's cost; the rest (lr, dropout, ...) costs the same.
SHAPE_KEYS = ("num_conv_layers", "start_filters", "kernel_size", "batchnorm", "residual",
              "fc_units")  # fmt: skip


def forward_elements(config: dict[str, Any], image_size: int) -> float:
    """Elements every layer of `config`'s network writes in a forward pass of one image at
    `image_size` px, counted on the meta device (no arithmetic is done): the memory traffic
    that bounds a small CNN's step on a CPU. Fitted to the trials of two default runs it explained
    their epoch times within 8.5% and 7.5% (rms), FLOPs within 16.9% and 12.1%
    (benchmarks/cost_fit.py, journal entry 17)."""
    return _forward_elements(tuple(config[key] for key in SHAPE_KEYS), image_size)


@cache
def _forward_elements(shape: tuple[Any, ...], image_size: int) -> float:
    with torch.device("meta"):
        model = Net({**dict(zip(SHAPE_KEYS, shape, strict=True)), "dropout": 0.0}, 5)
        x = torch.empty(1, 3, image_size, image_size)
    written: list[int] = []
    for layer in model.modules():
        if not list(layer.children()):  # a leaf: conv, norm, activation, pool, linear
            layer.register_forward_hook(lambda _, __, out: written.append(out.numel()))
    with torch.no_grad():
        model(x)
    return float(sum(written))
