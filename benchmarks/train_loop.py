"""Training-loop efficiency: the trainable's real epoch loop vs the model-only limit.

    .venv/bin/python benchmarks/train_loop.py --data-dir ../shared/data/flowers --image-size 64

"real loop" is `src.train.train_epoch` on the trial's own `BatchStream` (shuffling, batched
augmentation, normalisation and loss accumulation included). "model only" is forward +
backward + optimizer step on one batch of tensors already in memory, repeated: the most the
loop could reach with the same model, batch size and threads. Both run in this process, one
after the other, after a warm-up, so a noisy machine affects both alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.config import DEFAULT_START, DataSpec  # noqa: E402
from src.data import open_trial_data  # noqa: E402
from src.images import prepare_cache, scan_images  # noqa: E402
from src.model import build_model  # noqa: E402
from src.train import train_epoch  # noqa: E402


def model_only(config: dict, image_size: int, steps: int) -> float:
    """Images per second of forward + backward + step on a fixed in-memory batch."""
    model = build_model(config, 5, torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    x = torch.randn(config["batch_size"], 3, image_size, image_size)
    x = x.contiguous(memory_format=torch.channels_last)  # as the trial's batches
    y = torch.randint(0, 5, (config["batch_size"],))
    model.train()

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5):  # warm-up: allocator, kernels
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * config["batch_size"] / (time.perf_counter() - start)


def real_loop(config: dict, spec: DataSpec, epochs: int) -> float:
    """Images per second of the trainable's own training epoch."""
    data = open_trial_data(spec, config, torch.device("cpu"))
    model = build_model(config, len(data.class_names), torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    train_epoch(model, data.train, optimizer)  # warm-up epoch
    start = time.perf_counter()
    for _ in range(epochs):
        train_epoch(model, data.train, optimizer)
    return epochs * data.train.num_images / (time.perf_counter() - start)


def measure(data_dir: Path, image_size: int, threads: int, epochs: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    folder = scan_images(data_dir)
    prepare_cache(folder, image_size)
    spec = DataSpec(folder.root)
    config = {**DEFAULT_START, "image_size": image_size, "seed": 0}
    real = real_loop(config, spec, epochs)
    steps = max(20, int(real * 10 / config["batch_size"]))  # about ten seconds of steps
    limit = model_only(config, image_size, steps)
    return {"real_img_s": real, "model_only_img_s": limit, "ratio": real / limit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers")
    parser.add_argument("--image-size", type=int, default=64, help="square side in px")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPUs per trial)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after a warm-up")
    args = parser.parse_args()
    r = measure(args.data_dir, args.image_size, args.threads, args.epochs)
    print(
        f"{args.image_size}px, {args.threads} thread(s), the start's config: real loop "
        f"{r['real_img_s']:.0f} img/s, model only {r['model_only_img_s']:.0f} img/s, "
        f"{100 * r['ratio']:.0f}% of the limit"
    )


if __name__ == "__main__":
    main()
