"""At which image size should a trained model be applied? Accuracy at 1x-1.5x its training side.

    .venv/bin/python benchmarks/inference_size.py --split val logs/ray_results/EXP ...
    .venv/bin/python benchmarks/inference_size.py --split test logs/ray_results/EXP ...

The training crops (src.data.random_resized_crop_flip: area 0.35-1 of the image, resized to
the full side) show the network objects larger than a whole image at the same side does
(Touvron et al. 2019, "FixRes"), so a model may score better on images resized to more pixels.
`--split val`: the last checkpoint of every trial under the given folders (trained on the
train split only; trials with fewer than --min-epochs epochs left out), scored on the
validation split: paired gains per factor, to choose the factor. `--split test`: every
final_model.pt under them on the test split, to see what the choice does to final models.
Read-only: nothing is written but the decoded image caches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.config import inference_size  # noqa: E402
from src.data import split_of  # noqa: E402
from src.evaluate import confusion_matrix  # noqa: E402
from src.images import load_cache, prepare_cache, scan_images  # noqa: E402
from src.inference import load_model  # noqa: E402
from src.results import (  # noqa: E402
    CHECKPOINT_FILE,
    MODEL_FILE,
    Evaluation,
    read_experiment_info,
)

FACTORS = (1.0, 1.125, 1.25, 1.375, 1.5)


def scores(model_path: Path, root: Path, split: str) -> dict[str, float]:
    """The model's training side and its accuracy on `split` of the images in `root`, resized
    to each factor of that side."""
    own = load_model(model_path, torch.device("cpu"))[0]  # an ensemble's own network
    state, trained = own.state, int(own.state["image_size"])
    row: dict[str, float] = {"trained_px": trained}
    for factor in FACTORS:
        size = inference_size(trained, factor)
        cached = load_cache(prepare_cache(scan_images(root), size))
        chosen = split_of(cached)[split]
        images, labels = np.asarray(cached.images[chosen]), cached.labels[chosen]
        at_size = [replace(own, state={**state, "inference_size": size})]
        confusion = confusion_matrix(at_size, {size: images}, labels)
        result = Evaluation(state["class_names"], confusion)
        row[f"x{factor:g}"] = result.accuracy
    return row


def models(folders: list[Path], split: str, min_epochs: int) -> list[tuple[Path, Path]]:
    """(model, its experiment folder) pairs: trials' last checkpoints or final models."""
    if split == "test":
        return [(m, m.parent) for f in folders for m in sorted(f.rglob(MODEL_FILE))]
    found = []
    for trial in sorted(t for f in folders for t in f.rglob("trial_*") if t.is_dir()):
        checkpoints = sorted(trial.glob("checkpoint_*"))
        if checkpoints:
            state = torch.load(checkpoints[-1] / CHECKPOINT_FILE, weights_only=True)
            if state["epoch"] >= min_epochs:
                found.append((checkpoints[-1], trial.parent))
    return found


def scored_models(doc: str, score: Callable[[Path, Path, str], dict[str, Any]]) -> pd.DataFrame:
    """The command line this benchmark and benchmarks/flip_tta.py share (folders, --split,
    --min-epochs; `doc`'s first line describes it), and a row of `score` per model found,
    each printed as it comes, then all of them."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("folders", type=Path, nargs="+", help="experiment folders, or folders of them")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--min-epochs", type=int, default=5, help="val: trials trained at least this")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    for model_path, experiment in models(args.folders, args.split, args.min_epochs):
        root = read_experiment_info(experiment)[1].root
        name = str(model_path.relative_to(experiment.parent))
        rows.append({"model": name, **score(model_path, root, args.split)})
        print(rows[-1], flush=True)
    if not rows:
        sys.exit(f"No {'trial checkpoint' if args.split == 'val' else 'final model'} found.")
    table = pd.DataFrame(rows)
    print(table.round(4).to_string(index=False))
    return table


def main() -> None:
    table = scored_models(__doc__, scores)
    for factor in FACTORS[1:]:
        gain = 100 * (table[f"x{factor:g}"] - table["x1"])
        print(
            f"x{factor:g}: mean gain {gain.mean():+.2f} points (sd {gain.std():.2f}, "
            f"n {len(gain)}); better in {(gain > 0).sum()}, worse in {(gain < 0).sum()}"
        )


if __name__ == "__main__":
    main()
