"""Epoch time per image size, and what two trials sharing one device give over one.

    python benchmarks/gpu.py --data-dir ../shared/data/flowers                 # cuda if present
    python benchmarks/gpu.py --data-dir ../shared/data/flowers --device cpu    # the same on CPU

1. The baseline CNN's training epoch (src.train.train_epoch on the trial's own BatchStream: the
   data on the device, augmentation there, bf16 autocast on CUDA) at 64, 128 and 224 px: mean
   seconds of the epochs after a warm-up epoch.
2. 1 vs 2 trials per device (what --gpus-per-trial 0.5 does): that many worker processes train
   at once, each its own model and data copy; the figure is images per second of all of them
   together, so a ratio above 1 means sharing pays.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.config import BASELINE  # noqa: E402
from src.data import DataSpec, open_trial_data  # noqa: E402
from src.images import prepare_cache, scan_images  # noqa: E402
from src.model import build_model  # noqa: E402
from src.train import make_optimizer, train_epoch  # noqa: E402


def timed_epochs(spec: DataSpec, device: torch.device, epochs: int) -> tuple[float, float, int]:
    """Train a warm-up epoch, then `epochs` timed ones: (start, end) wall-clock times of the
    timed epochs and the images they trained on."""
    torch.manual_seed(0)
    data = open_trial_data(spec, BASELINE["batch_size"], 0, device)
    model = build_model(BASELINE, len(data.class_names), device)
    optimizer, schedule = make_optimizer(model, BASELINE, epochs + 1, len(data.train))
    start = 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            start = time.time()
        train_epoch(model, data.train, optimizer, schedule, BASELINE["label_smoothing"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return start, time.time(), epochs * data.train.num_images


def shared_throughput(args: argparse.Namespace, size: int, trials: int) -> float:
    """Images per second of `trials` worker processes training at once on the device, from
    the first worker's first timed epoch to the last worker's end (start-up is not counted)."""
    cmd = [sys.executable, __file__, "--worker", "--data-dir", str(args.data_dir),
           "--device", args.device, "--sizes", str(size), "--epochs", str(args.epochs)]  # fmt: skip
    workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(trials)]
    runs = [json.loads(w.communicate()[0].splitlines()[-1]) for w in workers]
    span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return sum(r["images"] for r in runs) / span


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder of <class>/*.jpg")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cuda or cpu")  # fmt: skip
    p.add_argument("--sizes", default="64,128,224", help="image sizes in px, comma-separated")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    p.add_argument("--worker", action="store_true", help="internal: one trial of part 2")
    args = p.parse_args()
    device, sizes = torch.device(args.device), [int(s) for s in args.sizes.split(",")]
    images = scan_images(args.data_dir)
    if args.worker:  # part 2: train, then say when and how many images went through
        start, end, n = timed_epochs(DataSpec(images.root, sizes[0]), device, args.epochs)
        print(json.dumps({"start": start, "end": end, "images": n}))
        return
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device: {name}")
    for size in sizes:
        prepare_cache(images, size)
        start, end, n = timed_epochs(DataSpec(images.root, size), device, args.epochs)
        seconds = (end - start) / args.epochs
        print(f"{size:>4} px: {seconds:6.2f} s per epoch ({n / (end - start):,.0f} img/s)")
    size = sizes[min(1, len(sizes) - 1)]
    one, two = (shared_throughput(args, size, k) for k in (1, 2))
    print(f"{size:>4} px, trials per device: 1 -> {one:,.0f} img/s, 2 -> {two:,.0f} img/s "
          f"({two / one:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
