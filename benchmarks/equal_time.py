"""The equal-time study: does searching earn its minutes? Each arm gets the same wall time.

    .venv/bin/python benchmarks/equal_time.py --minutes 10 --seeds 0,1,2 \
        --data-dir ../shared/data/flowers                       # ~1 hour on 2 CPU cores
    .venv/bin/python benchmarks/equal_time.py --minutes 60 --seeds 0 --preset long \
        --data-dir ../shared/data/flowers                       # ~2 hours
    .venv/bin/python benchmarks/equal_time.py --minutes 10 --seeds 0,1,2 --summarize

Arms (`--arms`): `search`, the default search under `--time-budget MINUTES` (the searcher's
share, then the final model); `start`, the same command with `--search-share 0`: no search,
the starting configuration trained for the whole budget; `blocks`, the search with the block
type added to the default space (benchmarks/space_blocks.toml); `se`, the default search with
every trial's block squeeze-excite (`--set block=se`: the start too). Runs alternate between
the arms (search, start, search, start, ...), so that a machine that slows down favours none.
A finished run is kept and an unfinished one started again, so an interrupted study goes on
where it stopped; a run that fails is reported and the study goes on.

Written to `<storage>/equal_time-<minutes>min/`: study.csv (one row per run: wall time, trials,
what the final model trained and why, its epochs, test accuracy), study.md (per arm: test
accuracy mean ± sd, wall time) and study.png (every run's test accuracy, by arm).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.config import block_of  # noqa: E402
from src.report import markdown_table  # noqa: E402
from src.results import EVALUATION_DIR, MODEL_FILE, plan_and_actual, read_summary  # noqa: E402

ARMS = {
    "search": [],
    "start": ["--search-share", "0"],
    # the default space plus the block type (journal entry 20)
    "blocks": ["--space", str(ROOT / "benchmarks" / "space_blocks.toml")],
    "se": ["--set", "block=se"],  # the default search, every trial (the start too) squeeze-excite
}


def run_once(args: argparse.Namespace, arm: str, seed: int, folder: Path) -> float | None:
    """One run of `arm` (skipped where it finished before); its wall time in seconds."""
    name = f"{arm}-seed{seed}"
    if (folder / name / MODEL_FILE).is_file():
        return None
    shutil.rmtree(folder / name, ignore_errors=True)  # an unfinished run of this study
    cmd = [
        sys.executable,
        str(ROOT / "hypertune.py"),
        "--data-dir",
        str(args.data_dir),
        "--preset",
        args.preset,
        "--time-budget",
        str(args.minutes),
        "--seed",
        str(seed),
        "--storage-path",
        str(folder),
        "--name",
        name,
        *ARMS[arm],
    ]
    print(f"{time.strftime('%H:%M:%S')} {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    with (folder / f"{name}.log").open("w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if code:
        print(f"{name} failed (exit code {code}): see {folder / name}.log", flush=True)
    return time.monotonic() - start


def describe(folder: Path, arm: str, seed: int, wall: float | None) -> dict[str, object]:
    experiment = folder / f"{arm}-seed{seed}"
    model = torch.load(experiment / MODEL_FILE, weights_only=True)
    test = json.loads((experiment / EVALUATION_DIR / "summary.json").read_text())
    trials = len(read_summary(experiment))
    plan, _ = plan_and_actual(experiment)
    return {
        "arm": arm,
        "seed": seed,
        "wall_seconds": wall,
        "trials": trials,
        "planned_trials": plan.get("trials"),  # the time plan's count (src/budget.py)
        "final_model": model["chosen"],
        "final_block": block_of(model["config"]),
        "refit_epochs": model["trained_on"]["epochs"],
        "test_accuracy": test["accuracy"],
        "test_images": test["images"],
        "test_px": test.get("image_size"),  # none recorded: at the side it trained at
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, required=True, help="the time budget of every run")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated")
    p.add_argument("--arms", default="search,start", help=f"from {', '.join(ARMS)}")
    p.add_argument("--preset", default="quick", help="search's preset (its trial settings)")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers")
    p.add_argument("--storage-path", type=Path, default=ROOT / "logs" / "ray_results")
    p.add_argument("--summarize", action="store_true", help="only read the runs there are")
    args = p.parse_args()
    folder = args.storage_path / f"equal_time-{args.minutes:g}min"
    folder.mkdir(parents=True, exist_ok=True)
    table_path = folder / "study.csv"
    walls = {}  # the wall times of runs made earlier, by (arm, seed)
    if table_path.is_file():
        walls = pd.read_csv(table_path).set_index(["arm", "seed"])["wall_seconds"].to_dict()
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm in args.arms.split(","):
            wall = None if args.summarize else run_once(args, arm, seed, folder)
            wall = wall if wall is not None else walls.get((arm, seed))
            if (folder / f"{arm}-seed{seed}" / MODEL_FILE).is_file():
                rows.append(describe(folder, arm, seed, wall))
    if not rows:
        raise SystemExit(f"No finished run in {folder} yet.")
    table = pd.DataFrame(rows)
    table.to_csv(table_path, index=False)
    per_arm = table.groupby("arm").agg(
        runs=("seed", "count"),
        test_mean=("test_accuracy", "mean"),
        test_sd=("test_accuracy", "std"),
        wall_minutes=("wall_seconds", lambda s: s.mean() / 60),
    )
    text = markdown_table(table) + "\n\n" + markdown_table(per_arm.reset_index()) + "\n"
    (folder / "study.md").write_text(text)
    plot(table, args.minutes).savefig(folder / "study.png", dpi=110, bbox_inches="tight")
    print(text)


def plot(table: pd.DataFrame, minutes: float) -> plt.Figure:
    """Each run's test accuracy (a dot per seed) and each arm's mean (a bar), side by side."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    arms = list(dict.fromkeys(table["arm"]))
    for x, arm in enumerate(arms):
        runs = table[table["arm"] == arm]
        ax.bar(x, runs["test_accuracy"].mean(), width=0.5, color="lightgrey")
        ax.scatter([x] * len(runs), runs["test_accuracy"], color="black", zorder=3, s=14)
    labels = {"search": "search, then\nthe final model", "start": "no search: the starting\n"
              "configuration throughout"}  # fmt: skip
    ax.set_xticks(range(len(arms)), [labels.get(a, a) for a in arms])
    low = table["test_accuracy"].min()
    ax.set_ylim(low - 0.03, table["test_accuracy"].max() + 0.01)
    ax.set_ylabel(f"test accuracy ({int(table['test_images'].iloc[0])} images)")
    ax.set_title(f"{minutes:g} minutes each, 2 CPU cores")
    return fig


if __name__ == "__main__":
    main()
