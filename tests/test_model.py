from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from src.config import BLOCKS, DEFAULT_START, SEARCH_SPACE
from src.device import Amp
from src.inference import model_from_state
from src.model import SE_REDUCTION, Net, build_model, count_parameters

CHOICES = {name: args for name, (kind, args) in SEARCH_SPACE.items() if kind == "choice"}
ARCHITECTURE = {
    "num_conv_layers": CHOICES["num_conv_layers"],
    "start_filters": CHOICES["start_filters"],
    "fc_units": CHOICES["fc_units"],
    "kernel_size": [3, 5],
    "block": list(BLOCKS),
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


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("image_size, layers", [(32, 2), (32, 5), (64, 3), (128, 5)])
def test_every_block_type_trains_a_step_channels_last_under_autocast(
    block: str, image_size: int, layers: int
) -> None:
    """One optimiser step as the trials take it (channels-last, the CPU's autocast): finite
    loss, every parameter reached by a gradient, the logits' shape whatever the depth."""
    torch.manual_seed(0)
    config = {**DEFAULT_START, "block": block, "num_conv_layers": layers, "start_filters": 8}
    model = build_model(config, 5, torch.device("cpu"))
    x = torch.randn(4, 3, image_size, image_size).to(memory_format=torch.channels_last)
    with Amp.for_device(torch.device("cpu")).autocast():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.arange(4))
    loss.backward()
    assert logits.shape == (4, 5) and torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_parameter_count_follows_the_config() -> None:
    small = Net({**DEFAULT_START, "start_filters": 16}, num_classes=5)
    large = Net({**DEFAULT_START, "start_filters": 64}, num_classes=5)
    assert count_parameters(small) == sum(p.numel() for p in small.parameters())
    assert count_parameters(large) > count_parameters(small)
    counts = {b: count_parameters(Net({**DEFAULT_START, "block": b}, 5)) for b in BLOCKS}
    channels = [3, 32, 64, 128]
    # A residual block adds exactly one 1x1 projection (no bias) to a plain one...
    projections = sum(a * b for a, b in itertools.pairwise(channels))
    assert counts["residual"] - counts["plain"] == projections
    # ... squeeze-excite a gate: C -> C/8 -> C, with biases.
    gates = sum(2 * c * (c // SE_REDUCTION) + c // SE_REDUCTION + c for c in channels[1:])
    assert counts["se"] - counts["residual"] == gates
    # Inception's four branches (1x1, 3x3, 3x3 + 3x3, pooled 1x1) of a quarter width each.
    assert counts["inception"] != counts["plain"]


@pytest.mark.parametrize("block", BLOCKS)
def test_a_model_file_rebuilds_its_block_type(block: str, tmp_path: Path) -> None:
    config = {**DEFAULT_START, "block": block, "num_conv_layers": 2}
    model = Net(config, 3).eval()
    torch.save({"config": config, "class_names": ["a", "b", "c"], "model": model.state_dict()},
               tmp_path / "m.pt")  # fmt: skip
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    rebuilt, _ = model_from_state(state, torch.device("cpu"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the same numbers (rebuilt channels-last: rounded differently)
        assert torch.allclose(rebuilt(x), model(x), atol=1e-5)


@pytest.mark.parametrize("residual, block", [(True, "residual"), (False, "plain")])
def test_a_model_saved_before_block_types_loads_as_it_was(residual: bool, block: str) -> None:
    """A config from before `block` existed said residual: True or False. Its weights (the
    same layer names) load into the block it meant."""
    old = {k: v for k, v in DEFAULT_START.items() if k != "block"} | {"residual": residual}
    weights = Net({**DEFAULT_START, "block": block}, 5).state_dict()
    state = {"config": old, "model": weights, "class_names": list("abcde")}
    model, _ = model_from_state(state, torch.device("cpu"))  # strict: every weight has its layer
    assert all((b.skip is not None) == residual for b in model.features)  # type: ignore[union-attr]
