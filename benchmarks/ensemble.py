"""Does `--ensemble K` pay? Every final model under the given folders scored on its test split
alone and averaged with the K-1 best trials of its own search as trained (what `--ensemble K`
puts in the model file: src.refit.ensemble_members), paired on the same images. Read-only;
nothing is trained, so the members cost no minutes of the run's budget, only passes per photo.

    .venv/bin/python benchmarks/ensemble.py logs/ray_results/EXP ... [--max-k 3]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.evaluate import confusions, ranked_checkpoints, test_split  # noqa: E402
from src.inference import load_model, sizes_of  # noqa: E402
from src.results import MODEL_FILE, Evaluation  # noqa: E402


def scores(experiment: Path, max_k: int) -> dict[str, float]:
    """Test accuracy of the final model with 0 .. max_k-1 trials beside it, and ms per photo."""
    cpu = torch.device("cpu")
    members = load_model(experiment / MODEL_FILE, cpu)[:1]
    best = itertools.islice(ranked_checkpoints(experiment), max_k - 1)
    members += [load_model(checkpoint, cpu)[0] for checkpoint in best]
    row: dict[str, float] = {}
    for k in range(1, len(members) + 1):
        pixels, labels, classes = test_split(experiment, sizes_of(members[:k]))
        plain, _, seconds = confusions(members[:k], pixels, labels)
        row[f"k{k}"] = Evaluation(classes, plain).accuracy
        row[f"k{k}_ms"] = 1000 * seconds
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="experiments, or folders holding them")
    p.add_argument("--max-k", type=int, default=3, help="largest ensemble scored")
    args = p.parse_args()
    torch.set_num_threads(1)  # the cost per photo on one core, in batches as evaluate scores
    runs = sorted({m.parent for f in args.folders for m in [*f.rglob(MODEL_FILE)]})
    table = pd.DataFrame([{"run": r.name, **scores(r, args.max_k)} for r in runs])
    print(table.round(4).to_string(index=False))
    for k in range(2, args.max_k + 1):
        gain = 100 * (table[f"k{k}"] - table["k1"])
        print(
            f"K={k}: paired gain {gain.mean():+.2f} points (sd {gain.std():.2f}, n {len(gain)}); "
            f"better in {(gain > 0).sum()}, worse in {(gain < 0).sum()}; "
            f"{table[f'k{k}_ms'].mean():.2f} ms per photo against {table['k1_ms'].mean():.2f}"
        )
    print(f"mean test accuracy, K=1: {table['k1'].mean():.4f}", flush=True)


if __name__ == "__main__":
    main()
