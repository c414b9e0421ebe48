"""Which CPU optimisations pay for a trial: each variant of the real training epoch, timed.

    .venv/bin/python benchmarks/optimisations.py --data-dir ../shared/data/flowers --image-size 64
    .venv/bin/python benchmarks/optimisations.py --image-size 96 --num-conv-layers 4 \
        --threads 2 --variants channels_last,bf16          # the long preset's winner, a refit

Variants of `src.train.train_epoch` on the start's CNN (by default with one thread: a 1-CPU
trial), in fp32 unless said:
- nchw: model and batches in the default contiguous (NCHW) layout
- channels_last: model and batches in NHWC layout, as the trainable runs them
- bf16: channels_last under bf16 autocast, as the trainable runs on a CPU with bf16
  instructions (src.device.precision_for)
- compile: `torch.compile` of the channels_last model; its first epoch (compilation
  included) is reported apart, since a trial of a few epochs pays it every time
Findings and the decisions taken are in benchmarks/OPTIMISATIONS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.config import DEFAULT_START, DataSpec  # noqa: E402
from src.data import open_trial_data  # noqa: E402
from src.device import Amp  # noqa: E402
from src.images import prepare_cache, scan_images  # noqa: E402
from src.model import Net, build_model  # noqa: E402
from src.train import train_epoch  # noqa: E402


class Contiguous(nn.Module):
    """The plain NCHW model, fed NCHW batches."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous())


def timed_epochs(variant: str, config: dict, spec: DataSpec, epochs: int) -> tuple[float, float]:
    """(first epoch seconds, mean seconds of the following epochs)."""
    torch.manual_seed(0)
    data = open_trial_data(spec, config, torch.device("cpu"))
    cpu = torch.device("cpu")
    model: nn.Module = build_model(config, len(data.class_names), cpu)
    if variant == "nchw":
        model = Contiguous(Net(config, len(data.class_names)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    if variant == "compile":
        model = torch.compile(model)  # type: ignore[assignment]
    amp = Amp("cpu", "bf16" if variant == "bf16" else "fp32")
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        train_epoch(model, data.train, optimizer, amp=amp)
        times.append(time.perf_counter() - start)
    return times[0], sum(times[1:]) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers")
    parser.add_argument("--image-size", type=int, default=64, help="square side in px")
    parser.add_argument("--num-conv-layers", type=int, default=DEFAULT_START["num_conv_layers"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPUs per trial)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after the first")
    parser.add_argument("--variants", default="nchw,channels_last,bf16,compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = scan_images(args.data_dir)
    prepare_cache(folder, args.image_size)
    spec = DataSpec(folder.root)
    config = {**DEFAULT_START, "num_conv_layers": args.num_conv_layers,
              "image_size": args.image_size, "seed": 0}  # fmt: skip
    variants = args.variants.split(",")
    base = None
    for variant in variants:
        first, steady = timed_epochs(variant, config, spec, args.epochs)
        base = base or steady
        print(
            f"{variant:<14} first epoch {first:6.1f} s, then {steady:6.1f} s/epoch "
            f"({base / steady:.2f}x {variants[0]})",
            flush=True,
        )


if __name__ == "__main__":
    main()
