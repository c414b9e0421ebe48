"""GPU figures in one command: epoch time per image size and precision, and what 1, 2 or 4
trials sharing one device give, with every process's peak memory.

    make bench-gpu                                                  # cuda where there is one
    .venv/bin/python benchmarks/gpu.py --device cpu --sizes 32 --epochs 1 --images 60 \
        --trials 1,2                                                # the whole path, on a CPU
    .venv/bin/python benchmarks/gpu.py --data-dir ../shared/data/flowers    # on real photos

1. The start's training epoch (src.train.train_epoch on the trial's own BatchStream: the
   images on the device, augmented there) at each of --sizes, in every precision the device
   has (bf16 from compute capability 8.0, fp16 below it, fp32 always: src/device.py), the mean
   of --epochs timed epochs after a warm-up epoch, and the process's peak memory.
   Beside images/s, the arithmetic achieved (TFLOP/s: a training step's FLOPs per image,
   counted with torch.utils.flop_counter, times images/s) and how busy the GPU was while the
   epochs ran (benchmarks/gpu_busy.py, from nvidia-smi). Steps are CUDA graphs where
   HYPERTUNE_CUDA_GRAPH=1 (src/step.py): run it both ways to compare.
2. 1, 2 and 4 trials per device (what --gpus-per-trial 1, 0.5 and 0.25 ask for): that many
   worker processes, each with its own model and copy of the data, wait at a barrier until all
   have loaded and warmed up, then train --epochs epochs at once. The figure is images per
   second of all of them together, so a ratio above 1 means sharing pays; beside it each
   process's peak memory.
Without --data-dir a Flowers-sized folder of generated images (5 classes, --images each, 256 px)
is written first: one command measures everything on the first GPU lent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.gpu_busy import BusySampler  # noqa: E402
from src.config import DEFAULT_START, DataSpec  # noqa: E402
from src.data import open_trial_data  # noqa: E402
from src.device import Amp, describe_device, graphs_wanted  # noqa: E402
from src.images import cache_root, prepare_cache, scan_images, write_synthetic_images  # noqa: E402
from src.model import build_model  # noqa: E402
from src.step import make_step  # noqa: E402
from src.train import make_optimizer, train_epoch  # noqa: E402

BARRIER_TIMEOUT_S = 600  # how long a worker waits for the others to load and warm up


def peak_memory_mib(device: torch.device) -> float:
    """The process's peak memory: allocated on the GPU, or resident on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def train_timed(
    spec: DataSpec,
    size: int,
    device: torch.device,
    precision: str,
    epochs: int,
    barrier: Path | None = None,
    parties: int = 1,
) -> dict[str, float]:
    """A warm-up epoch at `size` px, then (after the barrier, where given) `epochs` timed ones:
    their wall-clock start and end, the images they trained on, the peak memory."""
    torch.manual_seed(0)
    if device.type == "cuda":  # the peak of this run, not of the ones before it
        torch.cuda.reset_peak_memory_stats(device)
    config = {**DEFAULT_START, "image_size": size, "seed": 0}
    data = open_trial_data(spec, config, device, full_batches=graphs_wanted(device))
    model = build_model(DEFAULT_START, len(data.class_names), device)
    optimizer, schedule = make_optimizer(model, DEFAULT_START, epochs + 1, len(data.train))
    amp = Amp(
        device.type, precision, Amp.for_device(device).scaler if precision == "fp16" else None
    )
    step = make_step(model, optimizer, amp, DEFAULT_START["label_smoothing"])
    train_epoch(model, data.train, optimizer, schedule, amp=amp, step=step)
    if barrier is not None:  # every worker loaded and warmed up: now all start together
        (barrier / str(os.getpid())).touch()
        waited_until = time.monotonic() + BARRIER_TIMEOUT_S
        while len(list(barrier.iterdir())) < parties:
            if time.monotonic() > waited_until:  # another worker died on the way
                raise SystemExit(f"the other workers did not reach the barrier in {barrier}")
            time.sleep(0.01)
    start = time.time()
    with BusySampler() as busy:
        for _ in range(epochs):
            train_epoch(model, data.train, optimizer, schedule, amp=amp, step=step)  # reads loss
    return {
        "start": start,
        "end": time.time(),
        "images": epochs * data.train.used,
        "peak_mib": peak_memory_mib(device),
        "busy": busy.median or math.nan,
    }


def step_flops(size: int, device: torch.device) -> float:
    """FLOPs of one training step (forward, loss, backward) per image of the start's CNN at
    `size` px, counted by torch on a batch of DEFAULT_START's size."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = DEFAULT_START["batch_size"]
    model = build_model(DEFAULT_START, 5, device)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    counter = FlopCounterMode(display=False)
    with counter:
        loss = torch.nn.functional.cross_entropy(
            model(x), torch.zeros(batch, dtype=torch.long, device=device)
        )
        loss.backward()
    return counter.get_total_flops() / batch


def busy_share(median: float) -> str:
    return "n/a" if math.isnan(median) else f"{median:.0f}%"


def precisions(device: torch.device) -> list[str]:
    mixed = Amp.for_device(device).precision
    return [mixed, "fp32"] if mixed != "fp32" else ["fp32"]


def shared(args: argparse.Namespace, spec: DataSpec, size: int, trials: int) -> dict[str, float]:
    """`trials` worker processes on one device, at `size` px, started together at a barrier."""
    with tempfile.TemporaryDirectory() as barrier:
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--data-dir",
            str(spec.root),
            "--device",
            args.device,
            "--sizes",
            str(size),
            "--epochs",
            str(args.epochs),
            "--barrier",
            barrier,
            "--parties",
            str(trials),
        ]
        workers = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(trials)]
        outputs = [w.communicate()[0] for w in workers]
    if any(w.returncode for w in workers):  # one failed: the others would wait forever
        raise SystemExit(f"a worker of the {trials}-trial run failed; its error is above")
    runs = [json.loads(output.splitlines()[-1]) for output in outputs]
    span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {
        "images_per_s": sum(r["images"] for r in runs) / span,
        "peak_mib": max(r["peak_mib"] for r in runs),
    }


def data_folder(args: argparse.Namespace) -> Path:
    if args.data_dir:
        return Path(args.data_dir)
    # One folder per size of the set, reused: its decoded caches are reused with it.
    folder = cache_root() / f"bench-gpu-images-{args.images}"
    if not folder.is_dir():
        print(f"generating {5 * args.images} images of 256 px in {folder}", flush=True)
        cache_root().mkdir(parents=True, exist_ok=True)  # a fresh machine has none yet
        staging = Path(tempfile.mkdtemp(prefix="bench-gpu-", dir=cache_root()))
        write_synthetic_images(staging, classes=5, per_class=args.images, size=256)
        staging.rename(folder)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="a folder of <class>/*.jpg; default: generated images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", default="64,128,224", help="image sizes in px, comma-separated")
    p.add_argument("--epochs", type=int, default=10, help="timed epochs after a warm-up epoch")
    p.add_argument("--trials", default="1,2,4", help="trials per device to compare")
    p.add_argument("--images", type=int, default=660, help="generated images per class")
    p.add_argument("--worker", action="store_true", help="internal: one trial of part 2")
    p.add_argument("--barrier", help="internal: the folder workers meet in")
    p.add_argument("--parties", type=int, default=1, help="internal: workers at the barrier")
    args = p.parse_args()
    device, sizes = torch.device(args.device), [int(s) for s in args.sizes.split(",")]
    if args.worker:  # part 2: train, then say when and how much
        spec = DataSpec(scan_images(Path(args.data_dir)).root)
        run = train_timed(
            spec, sizes[0], device, precisions(device)[0], args.epochs, Path(args.barrier),
            args.parties,
        )  # fmt: skip
        print(json.dumps(run))
        return
    images = scan_images(data_folder(args))
    print(f"device: {describe_device(device)}; {len(images.paths)} images\n")
    graphs = os.environ.get("HYPERTUNE_CUDA_GRAPH") == "1" and device.type == "cuda"
    print(f"steps: {'CUDA graphs' if graphs else 'eager'}\n")
    print("| size | precision | s per epoch | images/s | TFLOP/s | GPU busy | peak memory (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        prepare_cache(images, size)
        flops = step_flops(size, device)
        for precision in precisions(device):
            run = train_timed(DataSpec(images.root), size, device, precision, args.epochs)
            seconds = run["end"] - run["start"]
            rate = run["images"] / seconds
            print(
                f"| {size} | {precision} | {seconds / args.epochs:.2f} | {rate:,.0f} | "
                f"{rate * flops / 1e12:.2f} | {busy_share(run['busy'])} | {run['peak_mib']:,.0f} |",
                flush=True,
            )
    size = sizes[min(1, len(sizes) - 1)]
    print(
        f"\n| trials per device ({size} px) | images/s, all together | vs 1 | peak memory per "
        "process (MiB) |\n| --- | --- | --- | --- |"
    )
    one = None
    for trials in [int(t) for t in args.trials.split(",")]:
        run = shared(args, DataSpec(images.root), size, trials)
        one = one or run["images_per_s"]
        print(
            f"| {trials} | {run['images_per_s']:,.0f} | {run['images_per_s'] / one:.2f}x | "
            f"{run['peak_mib']:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
