"""Images in, device-resident uint8 batches out.

1. `image_folder()` finds the images: any `<class>/*.jpg|png` folder, or Flowers through
   mads_datasets (downloaded into its cache when missing).
2. `prepare_cache()` decodes and resizes every image once into a uint8 array on disk
   (`images.npy`, N x 3 x S x S), keyed by the file list and the image size, behind a file lock so
   that concurrent trials and processes build it exactly once. Every trial memory-maps it.
3. `split_indices()` makes the stratified train / val / test split with a fixed seed.
4. `BatchStream` holds one split on the training device and yields shuffled, augmented (random
   resized crop + horizontal flip, batched on the device) and normalised float batches.

Per trial this replaces decoding 3303 JPEGs with one memory-mapped read
(see benchmarks/data_setup.py for the figures).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from loguru import logger
from PIL import Image, ImageOps

from src.config import SPLIT_FRACTIONS, SPLIT_SEED, HypertuneError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}  # what Pillow decodes here
CACHE_FORMAT = 2  # bump when the cache layout or decoding changes: old caches are then ignored
DEFAULT_CACHE_ROOT = Path.home() / ".cache" / "hypertune"
MADS_CACHE = Path.home() / ".cache" / "mads_datasets"  # where mads_datasets keeps Flowers
LUMA = torch.tensor([0.299, 0.587, 0.114])  # RGB weights of perceived brightness (ITU-R 601)


class DataError(HypertuneError):
    """Input data that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class ImageFolder:
    """The images of a `<class>/<image>` folder, in a fixed (sorted) order."""

    root: Path
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray  # int64, index into class_names


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(
        d
        for d in folder.iterdir()
        if d.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())
    )


def find_class_root(data_dir: Path) -> Path:
    """The folder whose sub-folders are the classes.

    Descends through single sub-folders so that both `flower_photos/` and its parent
    `flowers/` (the layout mads_datasets unpacks to, next to a README) are accepted.
    """
    folder = data_dir
    while folder.is_dir():
        if _class_dirs(folder):
            return folder
        subdirs = [d for d in folder.iterdir() if d.is_dir()]
        if len(subdirs) != 1:
            break
        folder = subdirs[0]
    raise DataError(
        f"No images found in {data_dir}. --data-dir must be a folder with one sub-folder per "
        f"class, each holding .jpg or .png images (for example flowers/daisy/1.jpg)."
    )


def scan_images(data_dir: Path) -> ImageFolder:
    """All images below `data_dir`, labelled by the name of their class folder."""
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} does not exist or is not a folder.")
    root = find_class_root(data_dir.resolve())  # absolute: trials run in their own folders
    class_dirs = _class_dirs(root)
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if empty := [d.name for d in subdirs if d not in class_dirs]:
        raise DataError(
            f"Class folder(s) {', '.join(sorted(empty))} in {root} hold no .jpg or .png images. "
            f"Add images or remove the folder(s): an empty class cannot be learned or evaluated."
        )
    if len(class_dirs) < 2:
        raise DataError(
            f"{root} holds images of only one class ({class_dirs[0].name}); classification "
            f"needs at least two class folders."
        )
    paths, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    return ImageFolder(root, [d.name for d in class_dirs], paths, np.array(labels, np.int64))


def flowers_dir(cache: Path = MADS_CACHE) -> Path:
    """Flowers through mads_datasets: downloaded into its cache on first use."""
    from mads_datasets import DatasetFactoryProvider, DatasetType

    factory = DatasetFactoryProvider.create_factory(DatasetType.FLOWERS, datadir=cache)
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(cache / "flowers.lock"):
        try:
            factory.download_data()
        except Exception as err:
            # mads_datasets creates the folder before downloading: an empty one would
            # make the next call believe the download had succeeded.
            subfolder = cache / "flowers"
            if subfolder.is_dir() and not any(subfolder.iterdir()):
                subfolder.rmdir()
            raise DataError(
                f"Could not download the Flowers dataset into the mads_datasets cache "
                f"({subfolder}): {type(err).__name__}: {err}. Without network access, point "
                f"--data-dir at a local copy (a folder of <class>/*.jpg, e.g. "
                f"--data-dir ../shared/data/flowers) or place flower_photos/ under {subfolder}."
            ) from None
    return cache / "flowers" / "flower_photos"


def image_folder(data_dir: Path | None) -> ImageFolder:
    return scan_images(data_dir if data_dir is not None else flowers_dir())


def decode_image(path: Path, size: int) -> np.ndarray | None:
    """RGB uint8 (3, size, size): shorter side resized to `size`, centre-cropped.
    None for a file that is not a readable image."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale where possible
            square = ImageOps.fit(img.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    except (OSError, ValueError):  # PIL's UnidentifiedImageError is an OSError
        return None
    return np.asarray(square).transpose(2, 0, 1)


def cache_key(folder: ImageFolder, image_size: int) -> str:
    """Changes whenever a file is added, removed or modified, or the size changes."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{image_size}:{folder.root.resolve()}".encode())
    for path in folder.paths:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder.root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{folder.root.name}-{image_size}px-{digest.hexdigest()[:16]}"


def pixel_moments(pixels: np.ndarray) -> np.ndarray:
    """(2, 3): per channel, the mean of x and of x^2 for x = pixel / 255, exact (from counts)."""
    counts = np.stack([np.bincount(channel.ravel(), minlength=256) for channel in pixels])
    x = np.arange(256) / 255
    return np.stack([counts @ x, counts @ (x * x)]) / counts[0].sum()


def _build_cache(folder: ImageFolder, image_size: int, target: Path) -> None:
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    images = np.lib.format.open_memmap(
        tmp / "images.npy", "w+", np.uint8, (len(folder.paths), 3, image_size, image_size)
    )
    keep = np.zeros(len(folder.paths), bool)
    moments = np.zeros((len(folder.paths), 2, 3))

    def decode(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        pixels = decode_image(path, image_size)
        return None if pixels is None else (pixels, pixel_moments(pixels))

    # PIL and numpy release the GIL while decoding, resizing and summing: threads use every core.
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for i, decoded in enumerate(pool.map(decode, folder.paths)):
            if decoded is not None:
                (images[i], moments[i]), keep[i] = decoded, True
    images.flush()
    if not keep.all():
        logger.warning(
            f"Skipped {int((~keep).sum())} of {len(keep)} files in {folder.root} that are not "
            f"readable images."
        )
        np.save(tmp / "images.npy", images[keep])
    del images
    np.save(tmp / "labels.npy", folder.labels[keep])
    np.save(tmp / "moments.npy", moments[keep])
    meta = {"class_names": folder.class_names, "image_size": image_size, "root": str(folder.root)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, target)  # atomic: a crash never leaves a half-written cache behind


def prepare_cache(folder: ImageFolder, image_size: int, cache_root: Path | None = None) -> Path:
    """The cache folder for these images at this size, built once (by whoever gets the lock)."""
    cache_root = cache_root or Path(os.environ.get("HYPERTUNE_CACHE", DEFAULT_CACHE_ROOT))
    cache_root.mkdir(parents=True, exist_ok=True)
    target = cache_root / cache_key(folder, image_size)
    with FileLock(f"{target}.lock"):
        problem = cache_problem(target, image_size) if target.exists() else "missing"
        if problem:
            if problem != "missing":
                logger.warning(f"Rebuilding the image cache {target}: {problem}")
                shutil.rmtree(target)
            logger.info(f"Decoding {len(folder.paths)} images at {image_size}px into {target}")
            _build_cache(folder, image_size, target)
    return target


def cache_problem(cache_dir: Path, image_size: int) -> str | None:
    """Why the cache cannot be used (damaged or inconsistent files), or None."""
    try:
        cached = load_cache(cache_dir)
    except (OSError, ValueError, KeyError) as err:  # missing, truncated or unparsable files
        return f"{type(err).__name__}: {err}"
    n = len(cached.labels)
    if cached.images.shape != (n, 3, image_size, image_size) or cached.moments.shape != (n, 2, 3):
        return f"inconsistent shapes {cached.images.shape}, {cached.moments.shape}, {n} labels"
    return None


@dataclass(frozen=True)
class CachedImages:
    images: np.ndarray  # uint8 (N, 3, S, S), memory-mapped
    labels: np.ndarray  # int64 (N,)
    moments: np.ndarray  # float64 (N, 2, 3): per image and channel, mean of x and of x^2
    class_names: list[str]


def load_cache(cache_dir: Path) -> CachedImages:
    meta = json.loads((cache_dir / "meta.json").read_text())
    return CachedImages(
        # Copy-on-write: writable for torch, yet never written, so the pages stay shared.
        np.load(cache_dir / "images.npy", mmap_mode="c"),
        np.load(cache_dir / "labels.npy"),
        np.load(cache_dir / "moments.npy"),
        meta["class_names"],
    )


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


def split_stats(moments: np.ndarray, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the images `indices` (pixels scaled to [0, 1]), exact, from
    the per-image moments stored in the cache: no pixel is touched."""
    mean, mean_square = moments[indices].mean(0)  # every image has the same pixel count
    std = np.sqrt(np.maximum(mean_square - mean**2, 1e-12))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


def random_resized_crop_flip(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
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
    shuffled and augmented when `train`. Everything happens on the images' device."""

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
        jitter: float = 0.0,
    ) -> None:
        self.images, self.labels, self.indices = images, labels, indices
        self.batch_size, self.train, self.jitter = batch_size, train, jitter
        dev = images.device
        self.mean, self.std = mean.view(1, 3, 1, 1).to(dev), std.view(1, 3, 1, 1).to(dev)
        self.luma = LUMA.to(dev)  # once: colour_jitter needs it on the device every batch
        self.generator = torch.Generator(device=dev).manual_seed(seed)

    @property
    def num_images(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        return math.ceil(self.num_images / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices
        if self.train:
            shuffle = torch.randperm(len(order), device=order.device, generator=self.generator)
            order = order[shuffle]
        for idx in order.split(self.batch_size):
            x = self.images[idx].float() / 255
            if self.train:
                x = random_resized_crop_flip(x, self.generator)
                if self.jitter > 0:
                    x = colour_jitter(x, self.jitter, self.generator, self.luma)
            x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


@dataclass(frozen=True)
class DataSpec:
    """What a trial needs to find its data; small, so Ray ships it to every trial and node."""

    root: Path  # class-root folder (see find_class_root)
    image_size: int


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

    def describe(self) -> dict[str, Any]:
        """What a checkpoint needs to preprocess new images the same way."""
        return {
            "class_names": self.class_names,
            "image_size": self.image_size,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }


def open_trial_data(
    spec: DataSpec,
    batch_size: int,
    seed: int,
    device: torch.device,
    jitter: float = 0.0,
    fit_on: tuple[str, ...] = ("train",),
) -> TrialData:
    """Streams over the shared cache (built once per node and size): training on the splits
    `fit_on` (normalised with their statistics), validation on "val" unless it is trained on.

    On CPU the images stay the memory-mapped cache: trials on one machine share its pages and
    a batch copies only its own images. On a GPU the whole array is uploaded once; the test
    split's images travel along but are never indexed."""
    cached = load_cache(prepare_cache(scan_images(spec.root), spec.image_size))
    split = split_indices(cached.labels, SPLIT_FRACTIONS, SPLIT_SEED)
    fit = np.sort(np.concatenate([split[name] for name in fit_on]))
    images = torch.from_numpy(cached.images).to(device)
    labels = torch.from_numpy(cached.labels).to(device)
    mean, std = split_stats(cached.moments, fit)

    def stream(indices: np.ndarray, train: bool) -> BatchStream:
        on_device = torch.from_numpy(indices).to(device)
        return BatchStream(images, labels, on_device, batch_size, mean, std, train, seed, jitter)

    return TrialData(
        train=stream(fit, train=True),
        val=None if "val" in fit_on else stream(split["val"], train=False),
        class_names=cached.class_names,
        image_size=spec.image_size,
        mean=mean,
        std=std,
    )


def write_synthetic_images(
    root: Path, classes: int = 3, per_class: int = 20, size: int = 40, seed: int = 0
) -> Path:
    """A small `<class>/<i>.png` folder that a CNN can learn: each class is a differently
    coloured and placed square on noise. Used by --smoke-test and the tests (no download)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(60, 255, (classes, 3))
    for label in range(classes):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (size, size, 3))
            side = rng.integers(size // 3, size // 2)
            top, left = rng.integers(0, size - side, 2)
            pixels[top : top + side, left : left + side] = palette[label] + rng.integers(-30, 30, 3)
            image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
            image.save(root / f"class_{label}" / f"{i:03d}.png")
    return root
