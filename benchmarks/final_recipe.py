"""Issue 39's study of the final model's recipe: one fixed configuration (the starting one, with
what an arm sets) trained for --epochs on train + val as the refit trains it (src/refit.py),
then scored once on the test split with its raw weights and with their moving average at
several half-lives (src.train.WeightAverage), each plain and with flip TTA. One training gives
every weights x flip arm on the same run: paired.

    .venv/bin/python benchmarks/final_recipe.py --data-dir ../shared/data/flowers \
        --epochs 25 --seeds 0,1,2 --arms base,cutout,crop --out logs/recipe/study.csv
    .venv/bin/python benchmarks/final_recipe.py --out logs/recipe/study.csv --summarize

Arms (`--arms`, ARMS below) alternate within each seed, so that a machine that slows down
favours none; a run already in the CSV is skipped, so an interrupted study goes on. Epochs are
fixed rather than timed: augmentation and the average cost next to nothing per step (printed
as train_seconds), and a fixed count keeps the accuracies free of the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.config import DEFAULT_START, DataSpec, inference_size  # noqa: E402
from src.data import open_trial_data, split_of  # noqa: E402
from src.device import Amp, seed_everything  # noqa: E402
from src.evaluate import confusions  # noqa: E402
from src.images import load_cache, prepare_cache, scan_images  # noqa: E402
from src.inference import Member  # noqa: E402
from src.model import Net, build_model  # noqa: E402
from src.results import Evaluation  # noqa: E402
from src.step import make_step  # noqa: E402
from src.train import WeightAverage, make_optimizer, train_epoch  # noqa: E402

ARMS: dict[str, dict[str, Any]] = {
    "base": {},  # DEFAULT_START as it was before the study: crops of 35-100 % area, no cutout
    "cutout": {"cutout": 0.5},  # a square of half the side erased: CIFAR-10's best size
    "crop": {"crop_scale": 0.6},  # milder crops: a short schedule may underfit
    "crop_small": {"crop_scale": 0.15},  # harsher crops: a small set may overfit
}
HALF_LIVES = (0.02, 0.05, 0.15)  # of the training steps: the moving averages kept side by side


def train_and_score(root: Path, config: dict[str, Any], epochs: int) -> list[dict[str, Any]]:
    """Train `config` on train + val for `epochs`; one row per weights (raw, ema@h) with the
    test accuracy plain and flipped."""
    torch.set_num_threads(os.cpu_count() or 1)
    seed_everything(config["seed"])
    device = torch.device("cpu")
    data = open_trial_data(DataSpec(root), config, device, ("train", "val"))
    model = build_model(config, len(data.class_names), device)
    optimizer, schedule = make_optimizer(model, config, epochs, len(data.train))
    step = make_step(model, optimizer, Amp.for_device(device), config["label_smoothing"])
    steps = epochs * len(data.train)
    averages = {f"ema@{h}": WeightAverage(model, h * steps) for h in HALF_LIVES}

    def averaged_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = step(x, y)
        for average in averages.values():
            average.update()
        return loss

    began = time.perf_counter()
    for _ in range(epochs):
        train_epoch(model, data.train, optimizer, schedule, step=averaged_step)
    seconds = time.perf_counter() - began
    size = inference_size(config["image_size"])
    state = {**data.applying_state(), "inference_size": size}
    cached = load_cache(prepare_cache(scan_images(root), size))
    test = split_of(cached)["test"]
    images, labels = np.asarray(cached.images[test]), cached.labels[test]
    rows = []
    for weights, net in {"raw": model, **{k: a.model for k, a in averages.items()}}.items():
        member = Member(cast(Net, net.eval()), state)
        plain, flipped, _ = confusions([member], {size: images}, labels)
        result = Evaluation(data.class_names, plain, size, flipped)
        rows.append({"weights": weights, "plain": result.accuracy, "flip": result.flip_accuracy,
                     "train_seconds": round(seconds, 1), "images": len(labels)})  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> None:
    done = pd.read_csv(args.out) if args.out.is_file() else pd.DataFrame(columns=["arm", "seed"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for arm in args.arms:
            if ((done["arm"] == arm) & (done["seed"] == seed)).any():
                continue
            config = {**DEFAULT_START, "image_size": args.image_size, "seed": seed, **ARMS[arm]}
            rows = train_and_score(args.data_dir, config, args.epochs)
            table = pd.DataFrame([{"arm": arm, "seed": seed, "epochs": args.epochs, **r}
                                  for r in rows])  # fmt: skip
            table.to_csv(args.out, mode="a", header=not args.out.is_file(), index=False)
            print(table.to_string(index=False), flush=True)


def summarize(out: Path) -> None:
    """Per arm and weights: test accuracy mean ± sd over seeds, plain and flipped, and the gain
    over the same seed's base/raw/plain in points (paired)."""
    table = pd.read_csv(out)
    base = table[(table["arm"] == "base") & (table["weights"] == "raw")].set_index("seed")["plain"]
    table["gain"] = 100 * (table["plain"] - table["seed"].map(base))
    table["flip_gain"] = 100 * (table["flip"] - table["plain"])
    stats = table.groupby(["arm", "weights"]).agg(
        seeds=("seed", "count"), plain=("plain", "mean"), plain_sd=("plain", "std"),
        flip=("flip", "mean"), gain=("gain", "mean"), gain_sd=("gain", "std"),
        flip_gain=("flip_gain", "mean"), seconds=("train_seconds", "mean"),
    )  # fmt: skip
    print(stats.round(4).to_string())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers")
    p.add_argument("--epochs", type=int, default=25, help="the default run's final model: 19-28")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--arms", type=lambda s: s.split(","), default=list(ARMS))
    p.add_argument("--out", type=Path, default=ROOT / "logs/recipe/study.csv")
    p.add_argument("--summarize", action="store_true", help="print the table and stop")
    args = p.parse_args()
    if unknown := set(args.arms) - set(ARMS):
        p.error(f"unknown arms {sorted(unknown)}; known: {', '.join(ARMS)}")
    summarize(args.out) if args.summarize else run(args)


if __name__ == "__main__":
    main()
