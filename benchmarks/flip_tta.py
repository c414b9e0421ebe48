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

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inference_size import scored_models  # noqa: E402
from src.data import split_of  # noqa: E402
from src.evaluate import confusions  # noqa: E402
from src.images import load_cache, prepare_cache, scan_images  # noqa: E402
from src.inference import load_model, sizes_of  # noqa: E402
from src.results import Evaluation  # noqa: E402


def scores(model_path: Path, root: Path, split: str) -> dict[str, Any]:
    """The model's accuracy on `split` of the images in `root`, plain and with the flip."""
    members = load_model(model_path, torch.device("cpu"))
    pixels: dict[int, np.ndarray] = {}
    for size in sizes_of(members):
        cached = load_cache(prepare_cache(scan_images(root), size))
        chosen = split_of(cached)[split]
        pixels[size], labels = np.asarray(cached.images[chosen]), cached.labels[chosen]
    plain, flipped, _ = confusions(members, pixels, labels)
    size = members[0].size
    result = Evaluation(members[0].state["class_names"], plain, size, flipped)
    return {"px": size, "images": len(labels), "plain": result.accuracy,
            "flip": result.flip_accuracy}  # fmt: skip


def main() -> None:
    table = scored_models(__doc__, scores)
    gain = 100 * (table["flip"] - table["plain"])
    print(
        f"flip: mean gain {gain.mean():+.2f} points (sd {gain.std():.2f}, n {len(gain)}, "
        f"se {gain.std() / np.sqrt(len(gain)):.2f}); better in {(gain > 0).sum()}, worse in "
        f"{(gain < 0).sum()}, equal in {(gain == 0).sum()}"
    )


if __name__ == "__main__":
    main()
