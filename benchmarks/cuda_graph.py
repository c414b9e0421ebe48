"""The check that must pass on a real GPU before CUDA graphs become the default (src/step.py),
and what they buy: the same seed trained eager and graphed on the same batches.

    .venv/bin/python benchmarks/cuda_graph.py --data-dir ../shared/data/flowers   # on a GPU
    .venv/bin/python benchmarks/cuda_graph.py --device cpu --steps 20 --size 32 \
        --variants eager                                                   # the path, on a CPU

1. Agreement: --steps steps of the start's CNN (dropout 0: a graph draws its dropout masks
   from other random offsets than eager steps do) on one list of augmented batches, eager and
   graphed. Their losses must agree within --tolerance (relative, on the mean of every 20
   steps: bf16 and cuDNN's kernel choices differ a little step by step), and the graphed run's
   learning rate must equal the schedule's at every step (a replay that froze it would train on
   at the rate of its capture). Exit status 1 where either fails.
2. Speed: images/s of the steady steps of each --variants: eager, graph (src/step.py) and
   compile (torch.compile(mode="reduce-overhead"), its compile time reported apart: a trial of
   a few seconds pays it every time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.config import DEFAULT_START, DataSpec  # noqa: E402
from src.data import open_trial_data  # noqa: E402
from src.device import Amp, describe_device, seed_everything  # noqa: E402
from src.images import prepare_cache, scan_images, write_synthetic_images  # noqa: E402
from src.model import build_model  # noqa: E402
from src.step import GraphedStep, make_step  # noqa: E402
from src.train import make_optimizer  # noqa: E402

CONFIG = {**DEFAULT_START, "dropout": 0.0}


def batches(spec: DataSpec, size: int, device: torch.device, steps: int) -> list[tuple[Any, Any]]:
    """`steps` augmented full batches at `size` px, made once, fed to every variant alike."""
    data = open_trial_data(spec, {**CONFIG, "image_size": size, "seed": 0}, device)
    made: list[tuple[Any, Any]] = []
    while len(made) < steps:
        made += [(x, y) for x, y in data.train if len(y) == CONFIG["batch_size"]]
    return made[:steps]


def train(
    variant: str, feed: list[tuple[Any, Any]], device: torch.device, classes: int
) -> dict[str, Any]:
    """Losses, learning rates and timings of one variant over `feed`."""
    os.environ["HYPERTUNE_CUDA_GRAPH"] = "1" if variant == "graph" else "0"
    seed_everything(0)
    model = build_model(CONFIG, classes, device)
    optimizer, schedule = make_optimizer(model, CONFIG, epochs=1, steps_per_epoch=len(feed))
    amp = Amp.for_device(device)
    forward: Any = torch.compile(model, mode="reduce-overhead") if variant == "compile" else model
    step = make_step(forward, optimizer, amp, CONFIG["label_smoothing"])
    losses, rates, ends = [], [], []
    for x, y in feed:
        losses.append(step(x, y))
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return {
        "losses": [float(loss) for loss in losses],
        "rates": [float(rate) for rate in rates],
        "expected_rates": [CONFIG["lr"] * f for f in schedule_factors(schedule, len(feed))],
        "ends": ends,
        "graphed": isinstance(step, GraphedStep) and not step.failed,
    }


def schedule_factors(schedule: Any, steps: int) -> list[float]:
    (factor,) = schedule.lr_lambdas
    return [factor(i) for i in range(1, steps + 1)]


def agreement(eager: dict[str, Any], graphed: dict[str, Any], tolerance: float) -> dict[str, Any]:
    def windows(values: list[float]) -> list[float]:
        return [statistics.fmean(values[i : i + 20]) for i in range(0, len(values), 20)]

    worst = max(
        abs(a - b) / max(abs(a), 1e-8)
        for a, b in zip(windows(eager["losses"]), windows(graphed["losses"]), strict=True)
    )
    rate_error = max(
        abs(a - b) for a, b in zip(graphed["rates"], graphed["expected_rates"], strict=True)
    )
    return {
        "loss_relative_difference": worst,
        "lr_max_abs_error": rate_error,
        "passed": worst <= tolerance and rate_error <= 1e-6 * CONFIG["lr"] and graphed["graphed"],
    }


def speed(run: dict[str, Any], batch: int, skip: int) -> float:
    """Images per second over the steps after the first `skip` (warm-up, capture, compile)."""
    ends = run["ends"][skip:]
    return batch * (len(ends) - 1) / (ends[-1] - ends[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="a folder of <class>/*.jpg; default: generated images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=64, help="image side in px")
    p.add_argument("--steps", type=int, default=400, help="training steps per variant")
    p.add_argument("--variants", default="eager,graph,compile")
    p.add_argument("--tolerance", type=float, default=0.05, help="relative loss difference")
    args = p.parse_args()
    device = torch.device(args.device)
    root = (
        Path(args.data_dir)
        if args.data_dir
        else write_synthetic_images(
            Path(os.environ.get("TMPDIR", "/tmp")) / "cuda-graph-images", classes=5, per_class=60
        )
    )
    images = scan_images(root)
    prepare_cache(images, args.size)
    feed = batches(DataSpec(images.root), args.size, device, args.steps)
    classes = len(images.class_names)
    runs = {v: train(v, feed, device, classes) for v in args.variants.split(",")}
    skip = min(10, args.steps // 2)
    report: dict[str, Any] = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "size": args.size,
        "steps": args.steps,
        "images_per_s": {v: round(speed(r, CONFIG["batch_size"], skip)) for v, r in runs.items()},
    }
    if "compile" in runs:
        ends = runs["compile"]["ends"]
        report["compile_first_steps_s"] = round(ends[skip] - ends[0], 1)
    if {"eager", "graph"} <= runs.keys():
        report["agreement"] = agreement(runs["eager"], runs["graph"], args.tolerance)
    print(json.dumps(report, indent=1))
    if not report.get("agreement", {"passed": True})["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
