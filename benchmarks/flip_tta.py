"""Flip test-time augmentation, paired: each model scored on the same images plain and with
every image's probabilities averaged with its mirror image's (src.inference.probabilities).

    .venv/bin/python benchmarks/flip_tta.py --split val logs/ray_results/EXP ...
    .venv/bin/python benchmarks/flip_tta.py --split test logs/ray_results/EXP ...

`--split val`: the last checkpoint of every trial under the given folders (trained on the train
split only, at least --min-epochs epochs), on the validation split; `--split test`: every
final_model.pt under them on the test split. Each at the side it is applied at
(src.inference.applied_size). Prints one row per model and the paired gain in points: the
evidence for or against making the flip the default of `predict`. Read-only, as
benchmarks/inference_size.py, whose choice of models it shares.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inference_size import models  # noqa: E402
from src.data import split_of  # noqa: E402
from src.evaluate import confusions  # noqa: E402
from src.images import load_cache, prepare_cache, scan_images  # noqa: E402
from src.inference import applied_size, load_model  # noqa: E402
from src.results import Evaluation, read_experiment_info  # noqa: E402


def scores(model_path: Path, root: Path, split: str) -> dict[str, float | None]:
    """The model's accuracy on `split` of the images in `root`, plain and with the flip."""
    model, state = load_model(model_path, torch.device("cpu"))
    size = applied_size(state)
    cached = load_cache(prepare_cache(scan_images(root), size))
    chosen = split_of(cached)[split]
    images, labels = np.asarray(cached.images[chosen]), cached.labels[chosen]
    plain, flipped = confusions(model, state, images, labels)
    result = Evaluation(state["class_names"], plain, size, flipped)
    return {"px": size, "images": len(labels), "plain": result.accuracy,
            "flip": result.flip_accuracy}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="experiment folders, or folders of them")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--min-epochs", type=int, default=5, help="val: trials trained at least this")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    for model_path, experiment in models(args.folders, args.split, args.min_epochs):
        root = read_experiment_info(experiment)[1].root
        name = str(model_path.relative_to(experiment.parent))
        rows.append({"model": name, **scores(model_path, root, args.split)})
        print(rows[-1], flush=True)
    if not rows:
        sys.exit(f"No {'trial checkpoint' if args.split == 'val' else 'final model'} found.")
    table = pd.DataFrame(rows)
    print(table.round(4).to_string(index=False))
    gain = 100 * (table["flip"] - table["plain"])
    print(
        f"flip: mean gain {gain.mean():+.2f} points (sd {gain.std():.2f}, n {len(gain)}, "
        f"se {gain.std() / np.sqrt(len(gain)):.2f}); better in {(gain > 0).sum()}, worse in "
        f"{(gain < 0).sum()}, equal in {(gain == 0).sum()}"
    )


if __name__ == "__main__":
    main()
