"""Which cost feature explains an experiment's measured epoch times: elements written or FLOPs.

    .venv/bin/python benchmarks/cost_fit.py logs/ray_results/plan-default-s0

For every trial of the experiment, `seconds_per_epoch` (experiment_summary.csv) against a part
per step plus a part per image's feature (src.model.forward_elements, or training FLOPs counted
by torch), fitted by least squares over all trials; prints each model's rms relative error.
Journal entry 17 chose elements written for the plan's cost model (src/budget.py) from this.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cost_model import flops  # noqa: E402
from src.budget import batches_per_epoch  # noqa: E402
from src.config import DEFAULT_START  # noqa: E402
from src.model import SHAPE_KEYS, forward_elements  # noqa: E402
from src.results import SUMMARY_FILE  # noqa: E402


def main() -> None:
    table = pd.read_csv(Path(sys.argv[1]) / SUMMARY_FILE)
    train, val = 2312, 495  # the Flowers copy's splits (README)
    steps: list[float] = []
    seconds: list[float] = []
    features: dict[str, list[float]] = {"elements": [], "FLOPs": []}
    for _, row in table.iterrows():
        config = {**DEFAULT_START, **{k: type(DEFAULT_START[k])(row[k]) for k in SHAPE_KEYS}}
        config["image_size"] = int(row.get("image_size", 64))
        size = int(row["batch_size"])
        steps.append(batches_per_epoch(train, val, size))
        seconds.append(row["seconds_per_epoch"])
        features["elements"].append(forward_elements(config, config["image_size"]))
        features["FLOPs"].append(flops(config))
    images = train + val / 3
    for name, values in features.items():
        design = np.stack([steps, images * np.array(values)], 1)
        coef = np.linalg.lstsq(design, seconds, rcond=None)[0]
        error = design @ coef / np.array(seconds) - 1
        print(
            f"{name}: rms relative error {np.sqrt(np.mean(error**2)):.1%} over {len(table)} trials"
        )


if __name__ == "__main__":
    main()
