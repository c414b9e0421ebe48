"""A whole time-budgeted run on the GPU, with how busy the card was: the plan beside what ran.

    .venv/bin/python benchmarks/gpu_search.py --data-dir ../shared/data/flowers --minutes 5
    HYPERTUNE_CUDA_GRAPH=1 .venv/bin/python benchmarks/gpu_search.py ...    # graphed steps
    bash .gpu/run.sh python3 benchmarks/gpu_search.py --data-dir /tmp/flowers/flower_photos

Runs `hypertune.py search --time-budget MINUTES` (any further arguments are passed on, e.g.
`--gpus-per-trial 0.25`) while benchmarks/gpu_busy.py samples nvidia-smi, and prints the run's
closing "plan vs run" lines (trials, epochs and minutes planned and run, slots busy) with the
GPU's busy share over the whole run and the final model's test accuracy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.gpu_busy import BusySampler  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--minutes", type=float, default=5)
    args, rest = p.parse_known_args()
    storage = Path(tempfile.mkdtemp(prefix="gpu-search-"))
    command = [sys.executable, str(ROOT / "hypertune.py"), "search", "--name", "gpu",
               "--storage-path", str(storage), "--data-dir", args.data_dir,
               "--time-budget", str(args.minutes), *rest]  # fmt: skip
    with BusySampler() as busy:
        run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"the run failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    closing = run.stdout.splitlines()
    start = next(i for i, line in enumerate(closing) if line.startswith("plan vs run"))
    print("\n".join(line for line in closing[start:] if line.startswith(" ") or "plan" in line))
    evaluation = json.loads((storage / "gpu/refit/evaluation/summary.json").read_text())
    print(f"{busy.describe()}; final model test accuracy {evaluation['accuracy']:.3f}")
    print(f"results: {storage / 'gpu'}")


if __name__ == "__main__":
    main()
