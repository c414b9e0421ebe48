"""How well the time plan's cost model (src/budget.py CostModel) prices configurations it did not
time: predicted against measured epoch-time ratios for 64 -> 96 px and 3 -> 4 blocks.

    .venv/bin/python benchmarks/cost_model.py --data-dir ../shared/data/flowers

The plan times the starting configuration (64 px, 3 blocks) and the costliest of the space
(96 px, 4 blocks: the long preset's), and prices everything between from those two points. Here
every corner is timed --repeats times (batches as the plan times them, one thread as a trial
has), and the two middle corners, which the model never saw, are set against its price. The
same two-point model on FLOPs instead of elements written, and the plan before the cost model
(the start's pace scaled by pixels alone), are shown beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.budget import CostModel, batch_seconds  # noqa: E402
from src.config import DEFAULT_START, DataSpec  # noqa: E402
from src.images import prepare_cache, scan_images  # noqa: E402
from src.model import Net  # noqa: E402

CORNERS = [(64, 3), (96, 3), (64, 4), (96, 4)]  # (image size, blocks); first and last are timed


def flops(config: dict) -> float:
    """FLOPs of one training step per image, counted by torch on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    size = config["image_size"]
    with torch.device("meta"):
        model, x = Net(config, 5), torch.empty(1, 3, size, size)
        label = torch.zeros(1, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), label).backward()
    return float(counter.get_total_flops())


def two_point(work: dict, timed: dict) -> dict:
    """Seconds per batch through the first and last corner, linear in `work`."""
    first, last = CORNERS[0], CORNERS[-1]
    slope = (timed[last] - timed[first]) / (work[last] - work[first])
    return {c: timed[first] + slope * (work[c] - work[first]) for c in CORNERS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--repeats", type=int, default=3, help="timings per corner (median kept)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPUs)")
    args = p.parse_args()
    images = scan_images(Path(args.data_dir))
    configs = {}
    for size, blocks in CORNERS:
        prepare_cache(images, size)
        configs[size, blocks] = {**DEFAULT_START, "image_size": size, "num_conv_layers": blocks,
                                 "seed": 0}  # fmt: skip
    timed, counts = {}, (0, 0)
    spec = DataSpec(images.root)
    for corner, config in configs.items():
        runs = [batch_seconds(config, spec, args.threads, device=torch.device("cpu"))
                for _ in range(args.repeats)]  # fmt: skip
        timed[corner] = statistics.median(run[0] for run in runs)
        counts = runs[0][1:]
    first, last = CORNERS[0], CORNERS[-1]
    model = CostModel.fit([(configs[first], timed[first]), (configs[last], timed[last])], *counts)
    print(f"cost model: {model.per_batch * 1e3:.1f} ms per batch + "
          f"{model.per_element * 1e9:.2f} s per 10^9 elements written "
          f"(through {first} and {last})\n")  # fmt: skip
    by_flops = two_point({c: flops(configs[c]) for c in CORNERS}, timed)
    print("| corner (px, blocks) | s per batch, timed | measured ratio | cost model (elements) "
          "| on FLOPs | pixels only |\n| --- | --- | --- | --- | --- | --- |")  # fmt: skip
    for corner in CORNERS:
        measured = timed[corner] / timed[first]
        predicted = model.batch_seconds(configs[corner]) / model.batch_seconds(configs[first])
        pixels = (corner[0] / first[0]) ** 2
        print(f"| {corner} | {timed[corner]:.3f} | {measured:.2f} | {predicted:.2f} | "
              f"{by_flops[corner] / timed[first]:.2f} | {pixels:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
