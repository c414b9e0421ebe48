"""Tune overhead and concurrency: what a small real search costs beyond its trials' training.

    .venv/bin/python benchmarks/tune_overhead.py --data-dir ../shared/data/flowers

Runs a search of --trials trials x --epochs epochs (no early stopping) through
`src.search.run_experiment`, and compares its wall time with the trials' own training time
(Tune's `time_total_s`, summed) divided by the number of trials the resources allow at once:
the wall time a scheduler without overhead would need. Ray's start-up is timed apart.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402

from src import search  # noqa: E402
from src.config import DataSpec, RunSettings  # noqa: E402
from src.images import prepare_cache, scan_images  # noqa: E402
from src.search import (  # noqa: E402
    ConcurrencyMonitor,
    run_experiment,
    start_ray,
    trial_resources,
)


def measure(
    data_dir: Path, image_size: int, trials: int, epochs: int, reuse_actors: bool = True
) -> dict[str, float]:
    search.REUSE_ACTORS = reuse_actors
    folder = scan_images(data_dir)
    prepare_cache(folder, image_size)
    with tempfile.TemporaryDirectory() as storage:
        settings = RunSettings(
            name="bench", storage_path=Path(storage), data_dir=data_dir, image_size=image_size,
            num_samples=trials, max_epochs=epochs, grace_period=epochs,
        )  # fmt: skip
        start = time.perf_counter()
        start_ray(None)
        ray_start = time.perf_counter() - start
        allowed = trial_resources(settings, ray.cluster_resources()).concurrent
        monitor = ConcurrencyMonitor()
        start = time.perf_counter()
        table = run_experiment(settings, DataSpec(folder.root), monitor=monitor)
        wall = time.perf_counter() - start
        ray.shutdown()
    training = float(table["compute_seconds"].sum())
    return {
        "ray_start_s": ray_start,
        "wall_s": wall,
        "trial_training_s": training,
        "ideal_wall_s": training / allowed,
        "efficiency": training / allowed / wall,
        "max_running": monitor.max_running,
        "allowed": allowed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers")
    parser.add_argument("--image-size", type=int, default=32, help="square side in px")
    parser.add_argument("--trials", type=int, default=6, help="trials in the search")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument(
        "--no-reuse-actors", action="store_true", help="a new worker process for every trial"
    )
    args = parser.parse_args()
    r = measure(args.data_dir, args.image_size, args.trials, args.epochs, not args.no_reuse_actors)
    print(
        f"Ray start {r['ray_start_s']:.1f} s; search wall {r['wall_s']:.1f} s for "
        f"{r['trial_training_s']:.1f} s of trial training = {r['ideal_wall_s']:.1f} s at "
        f"{r['allowed']} at once: {100 * r['efficiency']:.0f}% efficient; "
        f"{r['max_running']} of {r['allowed']} allowed trials ran at once"
    )


if __name__ == "__main__":
    main()
