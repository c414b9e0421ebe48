"""`make bench`: every benchmark in one run; a table on screen and in benchmarks/RESULTS.md
(with date, machine, commit and versions) and benchmarks/results.json.

    .venv/bin/python benchmarks/run.py --data-dir ../shared/data/flowers   # ~15 min, 2 CPUs
    .venv/bin/python benchmarks/run.py --data-dir ../shared/data/flowers --skip-e2e  # ~3 min

Each comparison is measured side by side in this one run, so a noisy machine still compares
fairly. The end-to-end figure runs the default search (`python hypertune.py`) as a user would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import data_setup, train_loop, tune_overhead  # noqa: E402

OPTIMISATIONS = Path(__file__).with_name("OPTIMISATIONS.md")  # hand-written, kept as is


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":")[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{cpu}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "commit": commit,
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
        f"ray {ray.__version__}",
    }


def end_to_end(data_dir: Path) -> dict[str, float]:
    """The default main job (search + final model), as `python hypertune.py --data-dir DIR`
    runs it."""
    with tempfile.TemporaryDirectory() as storage:
        cmd = [sys.executable, str(ROOT / "hypertune.py"), "--data-dir", str(data_dir),
               "--storage-path", storage, "--name", "e2e"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        wall = time.perf_counter() - start
        summary = pd.read_csv(Path(storage) / "e2e" / "experiment_summary.csv")
        test = json.loads((Path(storage) / "e2e/refit/evaluation/summary.json").read_text())
    return {
        "wall_s": wall,
        "best_val_accuracy": float(summary["best_val_accuracy"].max()),
        "test_accuracy": float(test["accuracy"]),
    }


def tables(results: dict[str, Any]) -> str:
    lines = ["| benchmark | figure | target |", "| --- | --- | --- |"]
    for size, rows in results["data"].items():
        ours, mads, ratio = rows["ours"], rows["mads"], rows["ratio"]
        lines.append(
            f"| 1. data set-up per trial, {size} px | hypertune {ours['seconds']:.2f} s, "
            f"{ours['private_mb']:.0f} MB private + {ours['shared_mb']:.0f} MB shared cache "
            f"pages; mads_datasets {mads['seconds']:.2f} s, {mads['private_mb']:.0f} MB: "
            f"**{ratio['faster']:.0f}x faster, {ratio['less_private']:.0f}x less private memory** "
            f"({ratio['less_with_shared']:.1f}x counting shared pages); one-time cache build "
            f"{rows['build']['seconds']:.1f} s | >= 20x, >= 10x |"
        )
    loop = results["loop"]
    lines.append(
        f"| 2. training loop, 64 px, 1 thread, the start's CNN | real loop "
        f"{loop['real_img_s']:.0f} img/s vs model only {loop['model_only_img_s']:.0f} img/s: "
        f"**{100 * loop['ratio']:.0f}%** | >= 90% |"
    )
    tune = results["tune"]
    lines.append(
        f"| 3. Tune overhead, 6 trials x 2 epochs, 32 px | wall {tune['wall_s']:.1f} s vs "
        f"{tune['ideal_wall_s']:.1f} s of training per slot: **{100 * tune['efficiency']:.0f}%"
        f" efficient**; {tune['max_running']} of {tune['allowed']} allowed trials at once; Ray "
        f"start {tune['ray_start_s']:.1f} s | |"
    )
    e2e = results.get("e2e")
    figure = (
        f"**{e2e['wall_s'] / 60:.1f} min**, best val_accuracy {e2e['best_val_accuracy']:.3f}, "
        f"final model test accuracy **{e2e['test_accuracy']:.3f}**"
        if e2e
        else "not run here (--skip-e2e); README.md, 'Measured', has a timed default run"
    )
    lines.append(
        f"| 4. default main job, Flowers: search + final model | {figure} | <= 20 min, >= 0.80 |"
    )
    lines.append(
        "| 5. GPU epoch time, 128 px, 2 trials per GPU | not measured: no GPU lent; "
        "`make bench-gpu` (benchmarks/gpu.py) measures it where there is one | <= 1 s |"
    )
    return "\n".join(lines)


def write_results(results: dict[str, Any], command: str) -> str:
    meta = results["meta"]
    text = (
        f"# Benchmark results\n\nWritten by `{command}` on {meta['date']}.\n"
        f"Machine: {meta['machine']}; GPU: {meta['gpu']}. Commit {meta['commit']}; "
        f"{meta['versions']}.\n\n{tables(results)}\n"
    )
    if OPTIMISATIONS.exists():
        text += "\n" + OPTIMISATIONS.read_text()
    Path(__file__).with_name("RESULTS.md").write_text(text)
    Path(__file__).with_name("results.json").write_text(json.dumps(results, indent=1))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the ~11 min default run")
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: rewrite RESULTS.md from results.json and OPTIMISATIONS.md",
    )
    args = parser.parse_args()
    if args.render:
        saved = json.loads(Path(__file__).with_name("results.json").read_text())
        print(write_results(saved, saved["meta"]["command"]))
        return
    data_dir = args.data_dir.resolve()
    results: dict[str, Any] = {"meta": machine()}
    with tempfile.TemporaryDirectory() as cache:
        results["data"] = {size: data_setup.compare(data_dir, size, cache) for size in (64, 224)}
    results["loop"] = train_loop.measure(data_dir, image_size=64, threads=1, epochs=2)
    results["tune"] = tune_overhead.measure(data_dir, image_size=32, trials=6, epochs=2)
    if not args.skip_e2e:
        results["e2e"] = end_to_end(data_dir)
    command = ".venv/bin/python benchmarks/run.py" + (" --skip-e2e" * args.skip_e2e)
    results["meta"]["command"] = command
    print(write_results(results, command))


if __name__ == "__main__":
    main()
