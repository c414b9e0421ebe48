"""Per-trial data set-up: hypertune's uint8 cache vs mads_datasets' own `create_dataset`.

    .venv/bin/python benchmarks/data_setup.py --data-dir ../shared/data/flowers --sizes 64 224

Every measurement runs in a fresh process, so its memory is that of one trial alone.
"time" is the wall time of the set-up call. Memory is read after the set-up and, for
hypertune, after one pass over every train and val batch (so touched data counts), relative to
the process after its imports (torch alone is a few hundred MB in both paths):
"private MB" is the process's own memory (RssAnon), "shared MB" the page-cache pages of the
memory-mapped cache it touched (RssFile; one copy serves every trial on the machine), and
"peak MB" its whole peak RSS. The one-time cache build is reported apart: it is paid once per
machine and image size, not per trial.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

# The build runs first so that the per-trial set-up finds a warm cache.
PATHS = {
    "build": "hypertune cache build (once)",
    "ours": "hypertune per-trial set-up",
    "mads": "mads_datasets create_dataset",
}


def memory_mb() -> dict[str, float]:
    """RssAnon (private) and RssFile (file-backed, shareable) of this process, in MB."""
    fields = dict(line.split(":") for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def measure(kind: str, data_dir: Path, size: int) -> dict[str, float]:
    """Runs in the child process: one set-up of `kind`, timed, with memory figures."""
    import torch

    from src.config import DEFAULT_START, DataSpec
    from src.data import open_trial_data
    from src.images import prepare_cache, scan_images

    torch.set_num_threads(1)  # as in a 1-CPU trial

    def mads() -> object:
        from mads_datasets.factories import FlowersDatasetFactory
        from mads_datasets.settings import flowersdatasetsettings

        settings = flowersdatasetsettings.model_copy(update={"img_size": (size, size)})
        # mads_datasets expects <datadir>/flowers/flower_photos: the copy's grandparent.
        factory = FlowersDatasetFactory(settings, datadir=scan_images(data_dir).root.parents[1])
        return factory.create_dataset()

    def build() -> object:
        return prepare_cache(scan_images(data_dir), size)

    def ours() -> object:
        config = {**DEFAULT_START, "image_size": size, "batch_size": 32, "seed": 0}
        return open_trial_data(DataSpec(scan_images(data_dir).root), config, torch.device("cpu"))

    setup = {"mads": mads, "build": build, "ours": ours}[kind]
    before = memory_mb()
    start = time.perf_counter()
    result = setup()
    seconds = time.perf_counter() - start
    if kind == "ours":  # touch every image a trial uses, as an epoch does
        for stream in (result.train, result.val):  # type: ignore[attr-defined]
            for _ in stream:
                pass
    after = memory_mb()
    return {
        "seconds": seconds,
        "private_mb": after["RssAnon"] - before["RssAnon"],
        "shared_mb": after["RssFile"] - before["RssFile"],
        "peak_mb": peak_rss_mb(),
    }


def in_child(kind: str, data_dir: Path, size: int, cache: str) -> dict[str, float]:
    env = {**os.environ, "HYPERTUNE_CACHE": cache}
    cmd = [sys.executable, __file__, "--child", kind, "--data-dir", str(data_dir)]
    out = subprocess.run(
        [*cmd, "--sizes", str(size)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(data_dir: Path, size: int, cache: str) -> dict[str, dict[str, float]]:
    """Every path at one size, each in a fresh process, plus the per-trial ratios."""
    rows = {kind: in_child(kind, data_dir, size, cache) for kind in PATHS}
    mads, ours = rows["mads"], rows["ours"]
    rows["ratio"] = {
        "faster": mads["seconds"] / ours["seconds"],
        "less_private": mads["private_mb"] / max(ours["private_mb"], 1),
        "less_with_shared": mads["private_mb"] / (ours["private_mb"] + ours["shared_mb"]),
    }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=ROOT.parent / "shared/data/flowers", help="images"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="image sizes")
    parser.add_argument("--child", choices=list(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.data_dir, args.sizes[0])))
        return
    print(
        f"{'size':>5} {'path':<30} {'time s':>8} {'private MB':>11} {'shared MB':>10} "
        f"{'peak MB':>8}"
    )
    with tempfile.TemporaryDirectory() as cache:  # a cold cache: the build is measured too
        for size in args.sizes:
            rows = compare(args.data_dir, size, cache)
            for kind, name in PATHS.items():
                r = rows[kind]
                print(
                    f"{size:>5} {name:<30} {r['seconds']:>8.3f} {r['private_mb']:>11.0f} "
                    f"{r['shared_mb']:>10.0f} {r['peak_mb']:>8.0f}"
                )
            ratio = rows["ratio"]
            print(
                f"{size:>5} per trial: {ratio['faster']:.0f}x faster set-up; "
                f"{ratio['less_private']:.0f}x less private memory "
                f"({ratio['less_with_shared']:.1f}x counting the shared pages as the trial's own)"
            )


if __name__ == "__main__":
    main()
