"""The time plan of finished runs replayed with today's forecast (src/budget.py search_forecast):
for each experiment folder under the given folders, the trials and epochs its plan recorded, the
forecast from the same measured paces and the seconds its search had, and what ran
(hypertune.json's plan and actual.search). No training; prints in a second.

    .venv/bin/python benchmarks/plan_replay.py logs/ray_results/e20/equal_time-10min
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.budget import expected_epochs, search_forecast, trial_seconds  # noqa: E402
from src.results import plan_and_actual, read_experiment_info  # noqa: E402


def replay(folder: Path) -> tuple[int, float, int, float, int, int] | None:
    """(recorded plan's trials and epochs, the forecast's, what ran), or None for a folder
    without a plan and a search."""
    plan, actual = plan_and_actual(folder)
    if not plan or "search" not in actual or not plan.get("concurrent"):
        return None
    settings, _, _ = read_experiment_info(folder)
    ran = actual["search"]
    start = (settings.max_epochs, trial_seconds(settings.max_epochs, plan["epoch_seconds"]))
    pace = plan["trial_epoch_seconds"]
    others = ((epochs, trial_seconds(epochs, pace)) for epochs in expected_epochs(settings))
    trials, epochs = search_forecast(ran["seconds"], plan["concurrent"], start, others)
    return plan["trials"], plan["epochs"], trials, epochs, ran["trials"], ran["epochs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="experiments, or folders of them")
    args = parser.parse_args()
    found = [f.parent for root in args.folders for f in sorted(root.glob("**/hypertune.json"))]
    print(f"{'experiment':24} {'recorded plan':>15} {'forecast now':>15} {'ran':>11}  trials")
    for folder in found:
        if (row := replay(folder)) is not None:
            then, then_epochs, now, now_epochs, ran, ran_epochs = row
            print(
                f"{folder.name:24} {then:4d} tr {then_epochs:5.1f} ep {now:4d} tr "
                f"{now_epochs:5.1f} ep {ran:3d} tr {ran_epochs:3d} ep  {now / ran - 1:+.0%}"
            )


if __name__ == "__main__":
    main()
