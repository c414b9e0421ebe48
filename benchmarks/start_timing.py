"""Issue 40: the plan times the starting configuration 15-20 % slower than its trial then trains
(journal entries 20 and 23). Is it the timing's few batches, or timing two trials as two threads
of one process where Ray runs them as two processes?

    .venv/bin/python benchmarks/start_timing.py --data-dir ../shared/data/flowers

Seconds per training batch of the starting configuration, one torch thread each, two at once:
- `plan`: as the plan times it (src.budget.batch_seconds: two threads of this process, one
  warm-up batch, TIMED_BATCHES timed);
- `plan, N batches`: the same, timing --batches batches;
- `processes`: two processes, each training whole epochs as a trial does (src.train.train_epoch),
  the second epoch's pace: what the plan is trying to predict;
- `plan, Ray just started` and `... N s later`: the plan's timing right after Ray has started
  (src.search.start_ray), as a search times it today, and once Ray has settled.
With `--as-run`, in a run's order instead (journal entry 33): Ray started first in a process
that has trained nothing yet, then `--rounds` of the plan's timing back to back, each with the
seconds since Ray started, against the same processes training.
Run it on a quiet machine: everything else shares the two cores.

    .venv/bin/python benchmarks/start_timing.py --as-run --rounds 6
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import src.budget as budget  # noqa: E402
from src.config import DEFAULT_START, DataSpec  # noqa: E402
from src.data import open_trial_data  # noqa: E402
from src.model import build_model  # noqa: E402
from src.search import start_ray  # noqa: E402
from src.train import make_optimizer, train_epoch  # noqa: E402


def trained_pace(root: Path, config: dict, epochs: int) -> float:
    """Seconds per training batch of a trial's last of `epochs` epochs, in this process."""
    torch.set_num_threads(1)
    data = open_trial_data(DataSpec(root), config, torch.device("cpu"))
    model = build_model(config, len(data.class_names), torch.device("cpu"))
    optimizer, schedule = make_optimizer(model, config, epochs, len(data.train))
    for _ in range(epochs):
        start = time.perf_counter()
        train_epoch(model, data.train, optimizer, schedule)
        seconds = time.perf_counter() - start
    return seconds / len(data.train)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers")
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--settle", type=float, default=20.0, help="seconds to wait after Ray starts")
    p.add_argument("--as-run", action="store_true", help="Ray first, then --rounds timings")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    config = {**DEFAULT_START, "image_size": 64, "seed": 0}
    spec = DataSpec(args.data_dir)
    if args.as_run:
        as_run(spec, config, args)
        return
    plan = budget.batch_seconds(config, spec, 1, together=2)[0]
    budget.TIMED_BATCHES = args.batches
    longer = budget.batch_seconds(config, spec, 1, together=2)[0]
    budget.TIMED_BATCHES = 6
    start_ray(None, False)
    after_ray = budget.batch_seconds(config, spec, 1, together=2)[0]
    time.sleep(args.settle)
    settled = budget.batch_seconds(config, spec, 1, together=2)[0]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paces = pool.starmap(trained_pace, [(args.data_dir, config, args.epochs)] * 2)
    truth = sum(paces) / 2
    print(f"seconds per batch, start, 2 at once: processes training {truth:.4f} ({paces})")
    print(f"plan (threads, 1 warm-up, 6 timed)  {plan:.4f}: {plan / truth:.2f}x the trained pace")
    print(f"plan, {args.batches} batches             {longer:.4f}: {longer / truth:.2f}x")
    print(f"plan, Ray just started         {after_ray:.4f}: {after_ray / truth:.2f}x")
    print(f"plan, {args.settle:.0f} s after Ray started   {settled:.4f}: {settled / truth:.2f}x")


def as_run(spec: DataSpec, config: dict, args: argparse.Namespace) -> None:
    """The plan's timing in a run's order: Ray started, then rounds of it back to back."""
    began = time.perf_counter()
    start_ray(None, False)
    rounds = []
    for _ in range(args.rounds):
        at = time.perf_counter() - began
        rounds.append((at, budget.batch_seconds(config, spec, 1, together=2)[0]))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        paces = pool.starmap(trained_pace, [(args.data_dir, config, args.epochs)] * 2)
    truth = sum(paces) / 2
    print(f"seconds per batch, start, 2 at once: processes training {truth:.4f} ({paces})")
    for at, pace in rounds:
        print(f"round at {at:5.1f} s after Ray's start: {pace:.4f}, {pace / truth:.2f}x")


if __name__ == "__main__":
    main()
