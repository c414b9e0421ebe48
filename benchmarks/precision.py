"""Does bf16 autocast on the CPU cost accuracy? The same configs, seeds and epochs in fp32 and bf16.

    taskset -c 0 .venv/bin/python benchmarks/precision.py --precision fp32 &
    taskset -c 1 .venv/bin/python benchmarks/precision.py --precision bf16    # ~9 and ~5 min

Each case trains the trainable's recipe (src.train: AdamW, warm-up + cosine over --epochs,
label smoothing 0.1) on the train split with one thread, then scores the validation split
once. Run the two precisions at once, one core each, so a busy machine slows both alike;
the accuracies should agree within noise (1 sd of a validation accuracy is about 2 points),
and the seconds say what bf16 buys (src.device.precision_for uses it where the CPU has bf16
instructions).
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
from src.device import Amp, seed_everything  # noqa: E402
from src.images import scan_images  # noqa: E402
from src.model import build_model  # noqa: E402
from src.train import make_optimizer, train_epoch, validate  # noqa: E402

CASES = ((64, 3, 0), (96, 4, 0), (64, 3, 1))  # (image size, conv blocks, seed)


def train_and_score(
    spec: DataSpec, size: int, layers: int, seed: int, epochs: int, amp: Amp
) -> str:
    seed_everything(seed)
    config = {**DEFAULT_START, "num_conv_layers": layers, "image_size": size, "seed": seed}
    data = open_trial_data(spec, config, torch.device("cpu"))
    assert data.val is not None
    model = build_model(config, len(data.class_names), torch.device("cpu"))
    optimizer, schedule = make_optimizer(model, config, epochs, len(data.train))
    start = time.perf_counter()
    for _ in range(epochs):
        loss = train_epoch(model, data.train, optimizer, schedule, config["label_smoothing"], amp)
    scores = validate(model, data.val, amp)
    return (
        f"train_loss {loss:.3f} val_acc {scores['val_accuracy']:.3f} "
        f"val_loss {scores['val_loss']:.3f} {time.perf_counter() - start:.0f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=("fp32", "bf16"), required=True)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = scan_images(args.data_dir)
    for size, layers, seed in CASES:
        result = train_and_score(
            DataSpec(folder.root), size, layers, seed, args.epochs, Amp("cpu", args.precision)
        )
        print(f"{args.precision} {size}px {layers} blocks seed {seed}: {result}", flush=True)


if __name__ == "__main__":
    main()
