from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import trial_config

import src.images as images
from src.config import SPLIT_FRACTIONS, SPLIT_SEED
from src.data import (
    BatchStream,
    DataSpec,
    colour_jitter,
    cutout,
    open_trial_data,
    random_resized_crop_flip,
    split_indices,
    split_stats,
)
from src.images import (
    DataError,
    flowers_dir,
    load_cache,
    prepare_cache,
    scan_images,
    write_synthetic_images,
)


def test_labels_follow_class_folder_names(tmp_path: Path) -> None:
    write_synthetic_images(tmp_path / "outer" / "photos", classes=3, per_class=4)
    (tmp_path / "outer" / "README.md").write_text("a data set card next to the photos")
    folder = scan_images(tmp_path / "outer")  # descends into the single sub-folder
    assert folder.root == tmp_path / "outer" / "photos"
    assert folder.class_names == ["class_0", "class_1", "class_2"]
    assert len(folder.paths) == 12
    for path, label in zip(folder.paths, folder.labels, strict=True):
        assert path.parent.name == folder.class_names[label]


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "No images found"),
        ({"only": 3}, "only one class"),
        ({"daisy": 3, "tulips": 3, "roses": 0}, "roses in .* hold no images"),
    ],
)
def test_unusable_folders_are_refused(tmp_path: Path, layout: dict, message: str) -> None:
    (tmp_path / "data").mkdir()
    for name, count in layout.items():
        write_synthetic_images(tmp_path / "scratch", classes=1, per_class=count)
        (tmp_path / "scratch" / "class_0").rename(tmp_path / "data" / name)
    with pytest.raises(DataError, match=message):
        scan_images(tmp_path / "data")


def test_missing_flowers_download_names_data_dir_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no network")

    monkeypatch.setattr("mads_datasets.base.get_file", offline)
    with pytest.raises(DataError) as err:
        flowers_dir(tmp_path)
    assert "--data-dir" in str(err.value) and str(tmp_path / "flowers") in str(err.value)
    # No empty folder left behind that would pass for a finished download next time.
    assert not (tmp_path / "flowers").exists()


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    labels = np.repeat([0, 1, 2], [100, 40, 61])
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    split = split_indices(labels, fractions, seed=1)
    assert split.keys() == fractions.keys()
    joined = np.concatenate(list(split.values()))
    assert sorted(joined) == list(range(len(labels)))  # every image exactly once
    for name, fraction in fractions.items():
        for label, count in enumerate([100, 40, 61]):
            assert abs((labels[split[name]] == label).sum() - fraction * count) <= 1
    again = split_indices(labels, fractions, seed=1)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = split_indices(labels, fractions, seed=2)
    assert not np.array_equal(split["test"], other["test"])


def test_cache_holds_every_image_resized(image_dir: Path, tmp_path: Path) -> None:
    folder = scan_images(image_dir)
    cached = load_cache(prepare_cache(folder, 32, tmp_path))
    assert cached.images.shape == (len(folder.paths), 3, 32, 32)
    assert cached.images.dtype == np.uint8
    assert np.array_equal(cached.labels, folder.labels)
    assert cached.class_names == folder.class_names


def _prepare(args: tuple[Path, Path, Path, int]) -> str:
    """In a fresh (spawned) process: prepare the cache, noting in `log` this caller's arrival at
    the cache's lock and any build it runs. A build starts only once all `callers` have arrived
    at the lock: every caller tries while it runs."""
    image_dir, cache_root, log, callers = args
    lock, build = images.FileLock, images._build_cache

    def arriving_lock(*lock_args: Any, **kwargs: Any) -> Any:
        (log / f"arrived-{os.getpid()}").touch()
        return lock(*lock_args, **kwargs)

    def build_once_all_arrived(*build_args: Any) -> None:
        (log / f"built-{os.getpid()}").touch()
        deadline = time.monotonic() + 120  # only ends a run that hangs
        while len(list(log.glob("arrived-*"))) < callers:
            assert time.monotonic() < deadline, "the other callers never reached the lock"
            time.sleep(0.01)
        build(*build_args)

    images.FileLock = arriving_lock  # type: ignore[misc, assignment]
    images._build_cache = build_once_all_arrived  # type: ignore[assignment]
    return str(prepare_cache(scan_images(image_dir), 32, cache_root))


def test_cache_is_built_once_under_concurrent_callers(image_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    # spawn, not fork: forking a process that holds torch's threads can deadlock the child.
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        paths = pool.map(_prepare, [(image_dir, tmp_path / "cache", log, 4)] * 4)
    assert len(set(paths)) == 1
    assert len(list(log.glob("arrived-*"))) == 4  # four processes, all at the lock at once
    assert len(list(log.glob("built-*"))) == 1
    assert len(load_cache(Path(paths[0])).labels) == 60


def test_changed_folder_or_size_gets_a_new_cache(tmp_path: Path) -> None:
    images = write_synthetic_images(tmp_path / "images", classes=2, per_class=5)
    first = prepare_cache(scan_images(images), 32, tmp_path / "cache")
    assert prepare_cache(scan_images(images), 32, tmp_path / "cache") == first
    assert prepare_cache(scan_images(images), 36, tmp_path / "cache") != first
    (images / "class_0" / "000.png").unlink()
    rebuilt = prepare_cache(scan_images(images), 32, tmp_path / "cache")
    assert rebuilt != first and len(load_cache(rebuilt).labels) == 9


def test_unreadable_files_are_skipped(tmp_path: Path) -> None:
    images = write_synthetic_images(tmp_path / "images", classes=2, per_class=5)
    (images / "class_1" / "broken.jpg").write_bytes(b"not a jpeg")
    cached = load_cache(prepare_cache(scan_images(images), 32, tmp_path / "cache"))
    assert len(cached.labels) == 10 and list(np.bincount(cached.labels)) == [5, 5]


def test_augmentation_keeps_shape_and_range() -> None:
    x = torch.rand(16, 3, 24, 24)
    out = random_resized_crop_flip(x, torch.Generator().manual_seed(0), (0.35, 1.0))
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)
    again = random_resized_crop_flip(x, torch.Generator().manual_seed(0), (0.35, 1.0))
    assert torch.equal(out, again)


def test_full_size_crop_is_identity_or_mirror() -> None:
    x = torch.rand(32, 3, 8, 8)
    out = random_resized_crop_flip(x, torch.Generator().manual_seed(1), (1.0, 1.0), (1.0, 1.0))
    same = (out - x).abs().amax((1, 2, 3)) < 1e-5
    mirrored = (out - x.flip(3)).abs().amax((1, 2, 3)) < 1e-5
    assert torch.all(same ^ mirrored)
    assert 4 < mirrored.sum() < 28  # about half are flipped


def test_split_stats_are_the_split_images_channel_stats(image_dir: Path, tmp_path: Path) -> None:
    cached = load_cache(prepare_cache(scan_images(image_dir), 32, tmp_path))
    subset = np.arange(0, 60, 3)
    mean, std = split_stats(cached.moments, subset)
    pixels = cached.images[subset] / 255
    assert np.allclose(mean, pixels.mean((0, 2, 3)), atol=1e-6)
    assert np.allclose(std, pixels.std((0, 2, 3)), atol=1e-6)


def test_an_epoch_visits_every_image_once() -> None:
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 3, 2, 2).clone()
    labels = torch.arange(20)
    split = torch.arange(5, 15)  # a stream sees only its split's images
    zero, one = torch.zeros(3), torch.ones(3)
    train = BatchStream(images, labels, split, 4, zero, one, train=True, seed=0)
    seen = torch.cat([y for _, y in train])
    assert len(train) == 3 and sorted(seen.tolist()) == list(range(5, 15))
    assert seen.tolist() != list(range(5, 15))  # shuffled
    val = BatchStream(images, labels, split, 4, zero, one, train=False, seed=0)
    batches = list(val)
    assert torch.cat([y for _, y in batches]).tolist() == list(range(5, 15))  # in order
    assert torch.allclose(batches[0][0][:, 0, 0, 0] * 255, torch.arange(5.0, 9.0))  # as stored


def test_trial_data_is_normalised_and_excludes_test(image_dir: Path) -> None:
    trial = open_trial_data(DataSpec(image_dir), trial_config(batch_size=8), torch.device("cpu"))
    assert trial.val is not None
    assert trial.train.num_images == 42 and trial.val.num_images == 9  # 70% / 15% of 60
    labels = np.repeat([0, 1, 2], 20)
    test = split_indices(labels, SPLIT_FRACTIONS, SPLIT_SEED)["test"]
    used = set(trial.train.indices.tolist()) | set(trial.val.indices.tolist())
    assert len(used) == 51 and used.isdisjoint(test.tolist())
    # Normalised with the training split's own channel statistics, computed here from pixels.
    cached = load_cache(prepare_cache(scan_images(image_dir), 32))
    train_pixels = cached.images[trial.train.indices.numpy()] / 255
    mean, std = train_pixels.mean((0, 2, 3)), train_pixels.std((0, 2, 3))
    val_pixels = cached.images[trial.val.indices.numpy()] / 255
    expected = (val_pixels - mean[:, None, None]) / std[:, None, None]
    x = torch.cat([x for x, _ in trial.val])  # validation: in order, not augmented
    assert np.allclose(x.numpy(), expected, atol=1e-5)
    assert trial.applying_state()["class_names"] == ["class_0", "class_1", "class_2"]


def test_refit_data_trains_on_train_and_val_never_test(image_dir: Path) -> None:
    config, cpu = trial_config(batch_size=8), torch.device("cpu")
    refit = open_trial_data(DataSpec(image_dir), config, cpu, fit_on=("train", "val"))
    tuning = open_trial_data(DataSpec(image_dir), config, cpu)
    assert refit.val is None and tuning.val is not None
    test = split_indices(np.repeat([0, 1, 2], 20), SPLIT_FRACTIONS, SPLIT_SEED)["test"]
    fit = set(refit.train.indices.tolist())
    assert fit == set(tuning.train.indices.tolist()) | set(tuning.val.indices.tolist())
    assert fit.isdisjoint(test.tolist())
    assert not torch.equal(refit.mean, tuning.mean)  # statistics of the images it trains on


def test_colour_jitter_keeps_range_and_varies_per_image() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 16, 16)
    out = colour_jitter(x, 0.4, generator)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    change = (out - x).abs().mean((1, 2, 3))
    assert (change > 1e-3).all() and change.std() > 0
    assert torch.allclose(colour_jitter(x, 0.0, generator), x, atol=1e-6)


def test_cutout_erases_one_square_of_its_side_per_image_in_every_channel() -> None:
    x = torch.ones(64, 3, 16, 16)
    out = cutout(x, 0.5, torch.Generator().manual_seed(0))
    erased = out[:, 0] == 0
    assert torch.equal(out == 0, erased[:, None].expand_as(out))  # all channels alike
    assert torch.equal(out[~(out == 0)], x[~(out == 0)])  # the rest untouched
    rows, cols = erased.any(2).sum(1), erased.any(1).sum(1)
    assert torch.equal(erased.sum((1, 2)), rows * cols)  # one rectangle per image
    assert rows.max() == cols.max() == 8  # half of 16 px where the square lies inside
    assert (rows * cols).min() < 64  # partly outside the image elsewhere
    assert len({tuple(e.nonzero()[0].tolist()) for e in erased}) > 10  # placed anywhere
    assert torch.equal(cutout(x, 0.0, torch.Generator()), x)


@pytest.mark.parametrize("side, erases", [(0.0, False), (0.5, True)])
def test_a_training_stream_cuts_out_as_its_config_says(side: float, erases: bool) -> None:
    images = torch.full((8, 3, 16, 16), 255, dtype=torch.uint8)
    labels, split = torch.zeros(8, dtype=torch.long), torch.arange(8)
    zero, one = torch.zeros(3), torch.ones(3)
    augment = {"cutout": side, "crop_scale": 1.0}
    train = BatchStream(images, labels, split, 8, zero, one, True, 0, augment)
    val = BatchStream(images, labels, split, 8, zero, one, False, 0, augment)
    (x, _), (v, _) = next(iter(train)), next(iter(val))
    assert bool((x == 0).any()) is erases
    assert not (v == 0).any()  # validation images are never augmented


def test_the_crops_smallest_area_reaches_the_training_stream() -> None:
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    labels, split = torch.zeros(8, dtype=torch.long), torch.arange(8)
    zero, one = torch.zeros(3), torch.ones(3)

    def first_batch(crop_scale: float) -> torch.Tensor:
        augment = {"crop_scale": crop_scale}
        return next(iter(BatchStream(images, labels, split, 8, zero, one, True, 0, augment)))[0]

    assert torch.equal(first_batch(0.35), first_batch(0.35))  # the same seed, the same crops
    assert not torch.allclose(first_batch(0.35), first_batch(0.9))  # other areas drawn
