"""A folder of photos on disk in, one uint8 array in a cache out: whatever the folder holds.

1. `image_folder()` finds the images: a folder of `<class>/<image>` (its classes split by
   hypertune), a pre-split folder (`train/`, `val/` or `valid/` or `validation/`, and optionally
   `test/`, each of `<class>/<image>`: the splits kept as given), or Flowers through
   mads_datasets. Single sub-folders are descended into (`flowers/flower_photos/`). Hidden
   entries and what macOS adds to its archives (`.DS_Store`, `._photo.jpg`, `__MACOSX/`) are
   neither classes nor images: ignored, and counted in one line.
2. `read_image()` is the one decoder of every image hypertune reads (cache, predict, evaluate):
   any format Pillow decodes (a GIF's or TIFF's first frame), the suffix in any case and even
   wrong; whatever Pillow refuses, for any reason, is an unreadable file, never a crash. Pillow's
   decompression-bomb guard stays on: an image of over 179 million pixels is refused unread.
3. `prepare_cache()` decodes and resizes every image once into `images.npy` (N x 3 x S x S),
   keyed by the file list and the size, behind a file lock so that concurrent trials and
   processes build it exactly once, after checking that it fits on its disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from loguru import logger
from PIL import Image, ImageOps

from src.config import SPLIT_FRACTIONS, SPLIT_SEED, SPLITS
from src.errors import HypertuneError, space_for

# What Pillow decodes here; the suffix is matched in any case (.JPG), the content decides.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
CACHE_FORMAT = 3  # bump when the cache layout or decoding changes: old caches are then ignored
DEFAULT_CACHE_ROOT = Path.home() / ".cache" / "hypertune"
MADS_CACHE = Path.home() / ".cache" / "mads_datasets"  # where mads_datasets keeps Flowers
FREE_SPACE_MARGIN = 256 * 2**20  # bytes a cache leaves free on its disk, for everything else


class DataError(HypertuneError):
    """Input data that cannot be used; the message says what to do."""


class UnreadableImage(Exception):
    """A file Pillow cannot turn into an image; the message says why."""


@dataclass(frozen=True)
class ImageFolder:
    """The images below a data folder, in a fixed (sorted) order."""

    root: Path
    class_names: list[str]
    paths: list[Path]
    labels: np.ndarray  # int64, index into class_names
    splits: np.ndarray | None = None  # int8 index into SPLITS, where the folder came split

    def describe(self) -> str:
        """Which layout was found, for the start of a run."""
        found = f"{len(self.paths)} images of {len(self.class_names)} classes in {self.root}"
        if self.splits is None:
            return f"{found}: class folders, split {SPLIT_NOTE} by hypertune"
        counts = [f"{name}/ {int((self.splits == i).sum())}" for i, name in enumerate(SPLITS)]
        if (self.splits == SPLITS.index("test")).any():
            return f"{found}: pre-split, kept as given ({', '.join(counts[:3])})"
        return (
            f"{found}: pre-split ({', '.join(counts[:2])}, no test/): 15% of train/ is held "
            f"out as the test split that scores the final model"
        )


SPLIT_NOTE = (
    " / ".join(f"{100 * share:.0f}" for share in SPLIT_FRACTIONS.values())
    + f" train / val / test (stratified, seed {SPLIT_SEED})"
)


SAID: set[str] = set()  # what say_once has logged in this process


def say_once(level: str, message: str) -> None:
    """Logs `message` unless this process already has: a folder is scanned and decoded several
    times in a run (once per image size, again for the final model), its problems said once."""
    if message not in SAID:
        SAID.add(message)
        logger.log(level, message)


def ignored(entry: Path) -> bool:
    """Hidden files and folders (`.DS_Store`, `.ipynb_checkpoints/`) and what an archive made
    on macOS unpacks beside the photos (`__MACOSX/`, an AppleDouble `._photo.jpg` per photo,
    which is not an image) are neither classes nor images."""
    return entry.name.startswith(".") or entry.name == "__MACOSX"


def entries(folder: Path) -> list[Path]:
    """The files and sub-folders of `folder` that are not `ignored`, sorted."""
    return sorted(entry for entry in folder.iterdir() if not ignored(entry))


def class_dirs(folder: Path) -> list[Path]:
    """The sub-folders of `folder` that hold images."""
    return [d for d in entries(folder) if d.is_dir() and images_in(d)]


def images_in(folder: Path) -> list[Path]:
    return [f for f in entries(folder) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]


def split_folders(folder: Path) -> dict[str, Path] | None:
    """train/, a validation folder and maybe test/ of a pre-split folder; None if it is not."""
    found = {d.name.lower(): d for d in entries(folder) if d.is_dir()}
    splits = {
        split: next((found[name] for name in names if name in found), None)
        for split, names in SPLIT_FOLDERS.items()
    }
    if splits["train"] is None or splits["val"] is None:
        return None
    return {split: path for split, path in splits.items() if path is not None}


def find_root(data_dir: Path) -> tuple[Path, dict[str, Path] | None]:
    """The folder whose sub-folders are the classes (or the splits), and the split folders.

    Descends through single sub-folders so that both `flower_photos/` and its parent
    `flowers/` (the layout mads_datasets unpacks to, next to a README) are accepted.
    """
    folder = data_dir
    while folder.is_dir():
        if (splits := split_folders(folder)) or class_dirs(folder):
            return folder, splits
        subdirs = [d for d in entries(folder) if d.is_dir()]
        if len(subdirs) != 1:
            break
        folder = subdirs[0]
    raise DataError(
        f"No images found in {data_dir}. --data-dir must be a folder with one sub-folder per "
        f"class, each holding images (for example flowers/daisy/1.jpg), or a pre-split one with "
        f"train/ and val/ folders of that kind (train/daisy/1.jpg)."
    )


def classes_of(folder: Path) -> list[Path]:
    """The class folders of `folder`, refused where one is empty or there is only one."""
    found = class_dirs(folder)
    subdirs = [d for d in entries(folder) if d.is_dir()]
    if empty := [d.name for d in subdirs if d not in found]:
        raise DataError(
            f"Class folder(s) {', '.join(sorted(empty))} in {folder} hold no images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}). Add images or remove the folder(s): an "
            f"empty class cannot be learned or evaluated."
        )
    if len(found) < 2:
        only = f" ({found[0].name})" if found else ""
        raise DataError(
            f"{folder} holds images of only one class{only}; classification needs at least two "
            f"class folders."
        )
    return found


def scan_images(data_dir: Path) -> ImageFolder:
    """All images below `data_dir`, labelled by the name of their class folder."""
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} does not exist or is not a folder.")
    top = data_dir.resolve()  # absolute: trials run in their own folders
    root, splits = find_root(top)
    parts = splits or {"": root}
    per_part = {name: classes_of(folder) for name, folder in parts.items()}
    names = [readable(d.name) for d in next(iter(per_part.values()))]
    for part, dirs in per_part.items():
        if [readable(d.name) for d in dirs] != names:
            raise DataError(
                f"The split folders of {root} hold different classes: {part}/ has "
                f"{', '.join(readable(d.name) for d in dirs)}, train/ has {', '.join(names)}. "
                f"Each split needs the same class folders."
            )
    paths, labels, codes = [], [], []
    for part, dirs in per_part.items():
        for label, class_dir in enumerate(dirs):
            files = images_in(class_dir)
            paths += files
            labels += [label] * len(files)
            codes += [SPLITS.index(part) if part else -1] * len(files)
    split = np.array(codes, np.int8) if splits else None
    descended = [root, *(folder for folder in root.parents if folder.is_relative_to(top))]
    class_folders = [d for dirs in per_part.values() for d in dirs]
    say_ignored(top, {*descended, *parts.values(), *class_folders})
    return ImageFolder(root, names, paths, np.array(labels, np.int64), split)


def readable(name: str | Path) -> str:
    """A file or folder name as text that prints and saves anywhere: bytes that are not UTF-8
    (names from zips made on other systems, which Python keeps as lone surrogates) become
    U+FFFD. The file itself is still opened by its own name."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def say_ignored(top: Path, scanned: set[Path]) -> None:
    """Says how many `ignored` entries the scanned folders hold: an unzipped macOS archive
    holds one beside each photo, and whoever counts the files sees where the rest went."""
    if count := sum(ignored(entry) for folder in scanned for entry in folder.iterdir()):
        say_once(
            "INFO",
            f"Ignored {count} hidden or macOS files and folders in {top} (names starting with "
            f"'.', __MACOSX/): neither classes nor images.",
        )


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


def read_image(path: Path, size: int) -> np.ndarray:
    """RGB uint8 (3, size, size): upright (EXIF orientation applied), the shorter side resized to
    `size`, centre-cropped. Raises UnreadableImage, saying why, for anything Pillow refuses."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale where possible
            upright = ImageOps.exif_transpose(img.convert("RGB"))
            square = ImageOps.fit(upright, (size, size), Image.Resampling.BILINEAR)
    except Exception as err:  # OSError, DecompressionBombError, ValueError, SyntaxError, ...
        raise UnreadableImage(f"{type(err).__name__}: {err}") from None
    return np.asarray(square).transpose(2, 0, 1)


def decode_image(path: Path, size: int) -> np.ndarray | None:
    """read_image, or None for a file that is not a readable image."""
    try:
        return read_image(path, size)
    except UnreadableImage:
        return None


def cache_key(folder: ImageFolder, image_size: int) -> str:
    """Changes whenever a file is added, removed or modified, or the size changes."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{image_size}:".encode())
    digest.update(os.fsencode(folder.root.resolve()))  # a name's own bytes, UTF-8 or not
    for path in folder.paths:
        stat = path.stat()
        digest.update(os.fsencode(path.relative_to(folder.root)))
        digest.update(f":{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{folder.root.name}-{image_size}px-{digest.hexdigest()[:16]}"


def pixel_moments(pixels: np.ndarray) -> np.ndarray:
    """(2, 3): per channel, the mean of x and of x^2 for x = pixel / 255, exact (from counts)."""
    counts = np.stack([np.bincount(channel.ravel(), minlength=256) for channel in pixels])
    x = np.arange(256) / 255
    return np.stack([counts @ x, counts @ (x * x)]) / counts[0].sum()


def _build_cache(folder: ImageFolder, image_size: int, target: Path) -> None:
    """Decodes into a temporary folder, renamed to `target` when complete: a crash never leaves
    a half-written cache behind, and a failed build (a full disk) leaves no files either."""
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with space_for(target.parent, "the image cache"):
            _write_cache(folder, image_size, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, target)


def _write_cache(folder: ImageFolder, image_size: int, tmp: Path) -> None:
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
        say_once(
            "WARNING",
            f"Skipped {int((~keep).sum())} of {len(keep)} files in {folder.root} that are not "
            f"readable images.",
        )
        np.save(tmp / "images.npy", images[keep])
    del images
    np.save(tmp / "labels.npy", folder.labels[keep])
    np.save(tmp / "moments.npy", moments[keep])
    if folder.splits is not None:
        np.save(tmp / "splits.npy", folder.splits[keep])
    meta = {"class_names": folder.class_names, "image_size": image_size, "root": str(folder.root)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def cache_root() -> Path:
    return Path(os.environ.get("HYPERTUNE_CACHE", DEFAULT_CACHE_ROOT))


def space_problem(folder: ImageFolder, image_size: int, root: Path) -> str | None:
    """Why the cache of these images cannot fit on the disk of `root`, or None."""
    needed = len(folder.paths) * 3 * image_size**2
    free = shutil.disk_usage(root).free
    if needed + FREE_SPACE_MARGIN <= free:
        return None
    return (
        f"The image cache of {len(folder.paths)} images at {image_size} px needs "
        f"{needed / 2**30:.2f} GiB, but the disk that holds {root} has {free / 2**30:.2f} GiB "
        f"free. Choose a smaller --image-size, free some space, or point HYPERTUNE_CACHE at a "
        f"disk with room."
    )


def prepare_cache(folder: ImageFolder, image_size: int, root: Path | None = None) -> Path:
    """The cache folder for these images at this size, built once (by whoever gets the lock)."""
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / cache_key(folder, image_size)
    with FileLock(f"{target}.lock"):
        problem = cache_problem(target, image_size) if target.exists() else "missing"
        if problem:
            if too_big := space_problem(folder, image_size, root):
                raise DataError(too_big)
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
    splits: np.ndarray | None  # int8 (N,) index into SPLITS for a pre-split folder, else None


def load_cache(cache_dir: Path) -> CachedImages:
    meta = json.loads((cache_dir / "meta.json").read_text())
    splits = cache_dir / "splits.npy"
    return CachedImages(
        # Copy-on-write: writable for torch, yet never written, so the pages stay shared.
        np.load(cache_dir / "images.npy", mmap_mode="c"),
        np.load(cache_dir / "labels.npy"),
        np.load(cache_dir / "moments.npy"),
        meta["class_names"],
        np.load(splits) if splits.is_file() else None,
    )


def smoke_images() -> Path:
    """The generated photos of --smoke-test, written once beside the caches, so that each
    smoke test reuses their decoded cache instead of leaving a new one behind."""
    folder = cache_root() / "smoke-images"
    if not folder.is_dir():
        cache_root().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="smoke-images-", dir=cache_root()))
        write_synthetic_images(staging)
        try:
            staging.rename(folder)
        except OSError:  # another smoke test wrote them first
            shutil.rmtree(staging)
    return folder


def write_synthetic_images(
    root: Path,
    classes: int = 3,
    per_class: int = 20,
    size: int = 40,
    seed: int = 0,
    palette_seed: int | None = None,
) -> Path:
    """A small `<class>/<i>.png` folder that a CNN can learn: each class is a square of its own
    colour, placed at random on noise. The colours come from `palette_seed` (default: `seed`),
    the rest from `seed`: the same palette with another seed gives new images of the same
    classes. Used by --smoke-test and the tests (no download)."""
    palette = np.random.default_rng(seed if palette_seed is None else palette_seed).integers(
        60, 255, (classes, 3)
    )
    rng = np.random.default_rng(seed)
    if palette_seed is not None:
        rng = np.random.default_rng([seed, palette_seed])  # not the palette's own stream
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
