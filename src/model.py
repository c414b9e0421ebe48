"""A configurable CNN: conv blocks -> global average pooling -> one hidden FC layer -> logits.

Every block doubles the channels and halves the image (MaxPool 2); `block` says what it holds,
the layer types the assignment names:
- plain: Conv -> BatchNorm -> ReLU (VGG's block).
- residual: the same with a 1x1-projected skip around Conv + BatchNorm (ResNet's skip layers).
- se: residual, its conv output scaled per channel by a squeeze-excite gate (SENet): global
  average -> 1x1 down by SE_REDUCTION -> ReLU -> 1x1 up -> sigmoid.
- inception: four parallel branches (1x1; 3x3; two stacked 3x3; 3x3 max-pool -> 1x1)
  concatenated to the block's width (GoogLeNet's); kernel_size does not apply.
Global average pooling makes the head independent of the image size, so any size from 32 px up
works for up to 4 blocks (32 -> 16 -> 8 -> 4 -> 2).
"""

from __future__ import annotations

from functools import cache
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from src.config import block_of

SE_REDUCTION = 8  # squeeze-excite: the gate's hidden width is the block's over this (SENet: 16)


class ConvBlock(nn.Module):
    """plain, residual or se: Conv -> (BatchNorm) [-> SE gate] [+ 1x1 skip] -> ReLU -> MaxPool."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, batchnorm: bool, block: str):
        super().__init__()
        # A conv followed by BatchNorm needs no bias: BatchNorm's shift replaces it. (Names as
        # before the other blocks existed: model files saved then still load.)
        self.conv = nn.Conv2d(
            in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=not batchnorm
        )
        self.norm = nn.BatchNorm2d(out_ch) if batchnorm else nn.Identity()
        self.gate = squeeze_excite(out_ch) if block == "se" else None
        # The skip path needs a 1x1 projection because every block changes the channel count.
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False) if block != "plain" else None
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        if self.gate is not None:
            out = out * self.gate(out)
        if self.skip is not None:
            out = out + self.skip(x)
        return self.pool(torch.relu(out))


def squeeze_excite(channels: int) -> nn.Sequential:
    hidden = max(channels // SE_REDUCTION, 4)
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(channels, hidden, 1),
        nn.ReLU(),
        nn.Conv2d(hidden, channels, 1),
        nn.Sigmoid(),
    )


class InceptionBlock(nn.Module):
    """Four parallel branches, concatenated to `out_ch` channels -> (BatchNorm) -> ReLU -> pool."""

    def __init__(self, in_ch: int, out_ch: int, batchnorm: bool):
        super().__init__()
        widths = [out_ch // 4 + (i < out_ch % 4) for i in range(4)]  # they sum to out_ch
        self.branches = nn.ModuleList(
            [
                nn.Conv2d(in_ch, widths[0], 1, bias=False),
                nn.Conv2d(in_ch, widths[1], 3, padding=1, bias=False),
                nn.Sequential(
                    nn.Conv2d(in_ch, widths[2], 3, padding=1, bias=not batchnorm),
                    nn.BatchNorm2d(widths[2]) if batchnorm else nn.Identity(),
                    nn.ReLU(),
                    nn.Conv2d(widths[2], widths[2], 3, padding=1, bias=False),
                ),
                nn.Sequential(
                    nn.MaxPool2d(3, stride=1, padding=1),
                    nn.Conv2d(in_ch, widths[3], 1, bias=False),
                ),
            ]
        )
        self.norm = nn.BatchNorm2d(out_ch) if batchnorm else nn.Identity()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.pool(torch.relu(self.norm(out)))


def make_block(in_ch: int, out_ch: int, config: dict[str, Any]) -> nn.Module:
    block = block_of(config)
    if block == "inception":
        return InceptionBlock(in_ch, out_ch, config["batchnorm"])
    return ConvBlock(in_ch, out_ch, config["kernel_size"], config["batchnorm"], block)


class Net(nn.Module):
    """The CNN described by a config dict (keys as in `src.config.DEFAULT_START`)."""

    def __init__(self, config: dict[str, Any], num_classes: int) -> None:
        super().__init__()
        channels = [3] + [config["start_filters"] * 2**i for i in range(config["num_conv_layers"])]
        self.features = nn.Sequential(
            *(make_block(c_in, c_out, config) for c_in, c_out in pairwise(channels))
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
SHAPE_KEYS = ("num_conv_layers", "start_filters", "kernel_size", "batchnorm", "block", "fc_units")


def forward_elements(config: dict[str, Any], image_size: int) -> float:
    """Elements every layer of `config`'s network writes in a forward pass of one image at
    `image_size` px, counted on the meta device (no arithmetic is done): the memory traffic
    that bounds a small CNN's step on a CPU. Fitted to the trials of two default runs it explained
    their epoch times within 8.5% and 7.5% (rms), FLOPs within 16.9% and 12.1%
    (benchmarks/cost_fit.py, journal entry 17)."""
    shape = {**config, "block": block_of(config)}
    return _forward_elements(tuple(shape[key] for key in SHAPE_KEYS), image_size)


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
