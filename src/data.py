"""Cached images in, device-resident batches out: the splits, augmentation and streams.

1. `split_of()` gives the train / val / test indices: a pre-split folder's own, else a
   stratified split with a fixed seed (`split_indices`). The test split is never used while
   tuning; only the refit's final evaluation reads it.
2. `BatchStream` holds one split on the training device and yields shuffled, augmented (random
   resized crop + horizontal flip, batched on the device) and normalised float batches.
3. `open_trial_data()` puts both together for one trial (or the refit) over the shared cache
   that src/images.py built.

Per trial this replaces decoding 3303 JPEGs with one memory-mapped read
(see benchmarks/data_setup.py for the figures).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from src.config import (
    AUGMENTATION,
    DEFAULT_START,
    HELD_OUT_TEST,
    SPLIT_FRACTIONS,
    SPLIT_SEED,
    SPLITS,
    DataSpec,
)
from src.images import CachedImages, load_cache, prepare_cache, scan_images

LUMA = torch.tensor([0.299, 0.587, 0.114])  # RGB weights of perceived brightness (ITU-R 601)
# Validation batch on a GPU: a forward pass without gradients, so memory allows far more than a
# training batch, and fewer, larger launches keep the card busy (issue 31).
GPU_EVAL_BATCH = 1024


def split_indices(
    labels: np.ndarray, fractions: dict[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Stratified split: every class is shuffled with `seed` and cut by `fractions`."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        bounds = np.round(np.cumsum(list(fractions.values())) * len(members)).astype(int)
        for name, chunk in zip(fractions, np.split(members, bounds[:-1]), strict=True):
            parts[name].append(chunk)
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def split_of(cached: CachedImages) -> dict[str, np.ndarray]:
    """Indices of the train, val and test images: a pre-split folder's own (without test/,
    HELD_OUT_TEST of train/ is held out, stratified), else split_indices with SPLIT_SEED."""
    if cached.splits is None:
        return split_indices(cached.labels, SPLIT_FRACTIONS, SPLIT_SEED)
    given = {name: np.flatnonzero(cached.splits == i) for i, name in enumerate(SPLITS)}
    if len(given["test"]):
        return given
    train = given["train"]
    held = split_indices(cached.labels[train], {"train": 1 - HELD_OUT_TEST, "test": HELD_OUT_TEST},
                         SPLIT_SEED)  # fmt: skip
    return {"train": train[held["train"]], "val": given["val"], "test": train[held["test"]]}


def split_problem(cached: CachedImages, root: Path) -> str | None:
    """Why these images cannot train and judge a model, or None: every split needs images and
    the training split every class (not so where most files of a class were unreadable, or a
    class has only a few images)."""
    split = split_of(cached)
    if empty := [name for name, indices in split.items() if not len(indices)]:
        return (
            f"The {' and '.join(empty)} split(s) of {root} would hold no readable image "
            f"({len(cached.labels)} readable in all). Add images: hypertune keeps 15% of each "
            f"class for validation and 15% for the test, so a class needs about 7 at least."
        )
    trained = set(cached.labels[split["train"]].tolist())
    if missing := [n for i, n in enumerate(cached.class_names) if i not in trained]:
        return f"No readable training image of class(es) {', '.join(missing)} in {root}."
    return None


def split_stats(moments: np.ndarray, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the images `indices` (pixels scaled to [0, 1]), exact, from
    the per-image moments stored in the cache: no pixel is touched."""
    mean, mean_square = moments[indices].mean(0)  # every image has the same pixel count
    std = np.sqrt(np.maximum(mean_square - mean**2, 1e-12))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def random_resized_crop_flip(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Per image: a random crop (area fraction in `scale`, aspect in `ratio`) resized back to
    full size, mirrored with probability 1/2. One affine_grid + grid_sample for the whole batch.
    """
    n, dev = x.shape[0], x.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, device=dev, generator=generator) * (high - low) + low

    area, aspect = uniform(*scale), uniform(math.log(ratio[0]), math.log(ratio[1])).exp()
    width = (area * aspect).sqrt().clamp(max=1.0)  # fractions of the full side
    height = (area / aspect).sqrt().clamp(max=1.0)
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = width * flip
    theta[:, 1, 1] = height
    theta[:, 0, 2] = uniform(-1, 1) * (1 - width)  # crop centre, in [-1, 1] image coordinates
    theta[:, 1, 2] = uniform(-1, 1) * (1 - height)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def cutout(x: torch.Tensor, side: float, generator: torch.Generator) -> torch.Tensor:
    """Per image: a square of `side` x the image's side set to 0 (the training mean, on
    normalised pixels), centred anywhere in the image, so that it may lie partly outside, as in
    DeVries & Taylor 2017. One mask for the whole batch, no loop over images."""
    n, _, h, w = x.shape
    dev = x.device
    centre = torch.rand(n, 2, 1, device=dev, generator=generator)  # (row, column) in [0, 1)
    half = side / 2
    rows = ((torch.arange(h, device=dev) + 0.5) / h - centre[:, 0]).abs() < half  # (n, h)
    cols = ((torch.arange(w, device=dev) + 0.5) / w - centre[:, 1]).abs() < half  # (n, w)
    erased = rows[:, None, :, None] & cols[:, None, None, :]
    return x.masked_fill(erased, 0.0)


def colour_jitter(
    x: torch.Tensor, strength: float, generator: torch.Generator, luma: torch.Tensor = LUMA
) -> torch.Tensor:
    """Per image: brightness, contrast and saturation each scaled by a factor drawn from
    [1 - strength, 1 + strength]; pixels in [0, 1] in and out. Batched on x's device, where
    `luma` should already be (a copy per batch would be a host-to-device transfer per step)."""
    n, dev = x.shape[0], x.device

    def factor() -> torch.Tensor:
        u = torch.rand(n, 1, 1, 1, device=dev, generator=generator)
        return 1 + strength * (2 * u - 1)

    x = x * factor()
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    grey = (x * luma.to(dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return ((x - grey) * factor() + grey).clamp(0, 1)


class BatchStream:
    """One split of the images; iterating yields one epoch of normalised float batches,
    shuffled and augmented when `train`. Everything happens on the images' device. With
    `full_batches`, every batch has batch_size images (what a CUDA graph's static input needs:
    src/step.py): an epoch leaves out the last len % batch_size images of its shuffle, other
    ones every epoch."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
        batch_size: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        train: bool,
        seed: int,
        augment: dict[str, float] | None = None,
        full_batches: bool = False,
    ) -> None:
        self.images, self.labels, self.indices = images, labels, indices
        self.batch_size, self.train = batch_size, train
        augment = {**{name: DEFAULT_START[name] for name in AUGMENTATION}, **(augment or {})}
        self.jitter, self.crop_scale = augment["jitter"], augment["crop_scale"]
        self.cutout = augment["cutout"]
        # Fewer images than one batch: the one batch there is.
        self.used = len(indices)
        if full_batches and len(indices) >= batch_size:
            self.used -= len(indices) % batch_size
        dev = images.device
        self.mean, self.std = mean.view(1, 3, 1, 1).to(dev), std.view(1, 3, 1, 1).to(dev)
        self.luma = LUMA.to(dev)  # once: colour_jitter needs it on the device every batch
        self.generator = torch.Generator(device=dev).manual_seed(seed)

    @property
    def num_images(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return math.ceil(self.used / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices
        if self.train:
            shuffle = torch.randperm(len(order), device=order.device, generator=self.generator)
            order = order[shuffle]
        for idx in order[: self.used].split(self.batch_size):
            x = self.images[idx].float() / 255
            if self.train:
                x = random_resized_crop_flip(x, self.generator, (self.crop_scale, 1.0))
                if self.jitter > 0:
                    x = colour_jitter(x, self.jitter, self.generator, self.luma)
            x = (x - self.mean) / self.std
            if self.train and self.cutout > 0:
                x = cutout(x, self.cutout, self.generator)
            x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


@dataclass(frozen=True)
class TrialData:
    """The training stream of one trial (or of a refit) and the split it is judged on, on its
    device. The test split stays out of tuning: only a refit's final evaluation reads it."""

    train: BatchStream
    val: BatchStream | None  # None for a refit, which trains on train + val
    class_names: list[str]
    image_size: int
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.train.images.device

    def applying_state(self) -> dict[str, Any]:
        """What a checkpoint needs to apply its model to new images: the classes, the side it
        trained at (and is applied at: src.inference.applied_size), and the normalisation."""
        return {
            "class_names": self.class_names,
            "image_size": self.image_size,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }


def open_trial_data(
    spec: DataSpec,
    config: dict[str, Any],
    device: torch.device,
    fit_on: tuple[str, ...] = ("train",),
    full_batches: bool = False,
) -> TrialData:
    """Streams over the shared cache (built once per node and size) of the images of `spec`, as
    trial `config` reads them (its image_size, batch_size, seed and AUGMENTATION): training on the
    splits `fit_on` (normalised with their statistics), validation on "val" unless it is
    trained on.

    On CPU the images stay the memory-mapped cache: trials on one machine share its pages and
    a batch copies only its own images. On a GPU the whole array is uploaded once (the test
    split's images travel along but are never indexed), validation runs in GPU_EVAL_BATCH
    batches, and training batches are all full where steps are CUDA graphs."""
    image_size, batch_size, seed = config["image_size"], config["batch_size"], config["seed"]
    augment = {name: config[name] for name in AUGMENTATION}
    cached = load_cache(prepare_cache(scan_images(spec.root), image_size))
    split = split_of(cached)
    fit = np.sort(np.concatenate([split[name] for name in fit_on]))
    images = torch.from_numpy(cached.images).to(device)
    labels = torch.from_numpy(cached.labels).to(device)
    mean, std = split_stats(cached.moments, fit)

    def stream(indices: np.ndarray, train: bool) -> BatchStream:
        on_device = torch.from_numpy(indices).to(device)
        size = batch_size if train or device.type != "cuda" else GPU_EVAL_BATCH
        full = train and full_batches
        return BatchStream(images, labels, on_device, size, mean, std, train, seed, augment, full)

    return TrialData(
        train=stream(fit, train=True),
        val=None if "val" in fit_on else stream(split["val"], train=False),
        class_names=cached.class_names,
        image_size=image_size,
        mean=mean,
        std=std,
    )
