"""Whatever a folder of photos holds: every kind of file and layout is used or refused clearly."""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import trial_config
from loguru import logger
from PIL import Image

import src.images as images
from src.config import DataSpec
from src.data import open_trial_data, split_of
from src.images import (
    DataError,
    UnreadableImage,
    load_cache,
    prepare_cache,
    read_image,
    scan_images,
    write_synthetic_images,
)
from src.pipeline import prepared_data


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A small file whose header claims side x side pixels: Pillow refuses it on sight with a
    DecompressionBombError (not an OSError), before decoding anything."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_an_unreadable_file_not_a_crash(tmp_path: Path) -> None:
    folder = write_synthetic_images(tmp_path / "images", classes=2, per_class=4)
    bomb = bomb_png(folder / "class_0" / "huge.png")
    with pytest.raises(UnreadableImage, match="DecompressionBombError"):
        read_image(bomb, 32)
    cached = load_cache(prepare_cache(scan_images(folder), 32, tmp_path / "cache"))
    assert len(cached.labels) == 8  # the bomb skipped and counted, the rest cached


def test_file_kinds_people_have_are_decoded_whatever_their_suffix_says(tmp_path: Path) -> None:
    folder = write_synthetic_images(tmp_path / "images", classes=2, per_class=2)
    source = Image.open(folder / "class_0" / "000.png").convert("RGB")
    source.save(folder / "class_0" / "upper.JPG")
    source.save(folder / "class_0" / "anim.gif", save_all=True, append_images=[source.rotate(90)])
    source.save(folder / "class_1" / "scan.tif")
    source.save(folder / "class_1" / "scan2.TIFF")
    source.save(folder / "class_1" / "png_really.jpg", format="PNG")  # the suffix lies
    (folder / "class_1" / "notes.txt").write_text("not an image and not listed")
    found = scan_images(folder)
    assert len(found.paths) == 4 + 5
    cached = load_cache(prepare_cache(found, 32, tmp_path / "cache"))
    assert len(cached.labels) == 9  # every one decoded
    # A GIF's first frame: close to its source (a GIF has 256 colours), far from frame two.
    first = read_image(folder / "class_0" / "anim.gif", 32).astype(int)
    source_pixels = read_image(folder / "class_0" / "000.png", 32).astype(int)
    second = np.asarray(source.rotate(90).resize((32, 32))).transpose(2, 0, 1).astype(int)
    assert np.abs(first - source_pixels).mean() < np.abs(first - second).mean() / 2


def test_a_phone_photo_is_read_upright(tmp_path: Path) -> None:
    wide = Image.new("RGB", (64, 32), (200, 0, 0))
    wide.paste((0, 0, 200), (32, 0, 64, 32))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: "rotate 90° clockwise to display", a phone upright
    wide.save(tmp_path / "phone.png", exif=exif)
    wide.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "as_shown.png")
    assert np.array_equal(read_image(tmp_path / "phone.png", 16),
                          read_image(tmp_path / "as_shown.png", 16))  # fmt: skip


def test_a_cache_that_cannot_fit_on_its_disk_is_refused_before_it_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_synthetic_images(tmp_path / "images", classes=2, per_class=4)
    full = shutil._ntuple_diskusage(total=10**9, used=10**9, free=10**6)  # type: ignore[attr-defined]
    monkeypatch.setattr(images.shutil, "disk_usage", lambda path: full)
    with pytest.raises(DataError, match=r"needs 0\.00 GiB, but the disk that holds .* has"):
        prepare_cache(scan_images(folder), 32, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*px*[!k]"))  # nothing half built


def pre_split(root: Path, parts: dict[str, int], classes: int = 3) -> Path:
    """root/<part>/class_<k>/*.png with `parts[part]` images per class."""
    for seed, (part, per_class) in enumerate(parts.items()):
        write_synthetic_images(root / part, classes, per_class, 32, seed=seed)
    return root


def test_a_pre_split_folder_keeps_its_splits(tmp_path: Path) -> None:
    root = pre_split(tmp_path / "set", {"train": 10, "valid": 4, "test": 3})
    found = scan_images(root)
    assert found.class_names == ["class_0", "class_1", "class_2"]
    assert "pre-split, kept as given (train/ 30, val/ 12, test/ 9)" in found.describe()
    split = split_of(load_cache(prepare_cache(found, 32, tmp_path / "cache")))
    named = {name: {found.paths[i].parts[-3] for i in split[name]} for name in split}
    assert named == {"train": {"train"}, "val": {"valid"}, "test": {"test"}}
    assert [len(split[name]) for name in ("train", "val", "test")] == [30, 12, 9]
    data = open_trial_data(DataSpec(found.root), trial_config(batch_size=8), torch.device("cpu"))
    assert data.train.num_images == 30 and data.val is not None and data.val.num_images == 12


def test_without_test_a_share_of_train_is_held_out_and_said(tmp_path: Path) -> None:
    root = pre_split(tmp_path / "set", {"train": 20, "val": 4})
    found = scan_images(root / "..")  # from its parent: single folders are descended into
    assert "no test/): 15% of train/ is held out" in found.describe()
    split = split_of(load_cache(prepare_cache(found, 32, tmp_path / "cache")))
    assert len(split["test"]) == 9 and len(split["train"]) == 51 and len(split["val"]) == 12
    assert set(split["test"]).isdisjoint(split["train"])


def test_splits_with_different_classes_are_refused(tmp_path: Path) -> None:
    root = pre_split(tmp_path / "set", {"train": 4, "val": 2})
    (root / "val" / "class_2").rename(root / "val" / "tulips")
    with pytest.raises(DataError, match="val/ has class_0, class_1, tulips, train/ has"):
        scan_images(root)


def test_splits_left_without_readable_images_are_refused_before_any_trial(tmp_path: Path) -> None:
    root = pre_split(tmp_path / "set", {"train": 6, "val": 2})
    for image in (root / "val").rglob("*.png"):
        image.write_bytes(b"damaged")  # every validation image unreadable
    with pytest.raises(DataError, match=r"val split.* would hold no readable image"):
        prepared_data(root, 32)


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """The messages logged while the test runs."""
    messages: list[str] = []
    handler = logger.add(messages.append, format="{message}")
    yield messages
    logger.remove(handler)


def unzipped_on_a_mac(clean: Path, target: Path, with_folder: bool) -> Path:
    """`clean` as an archive made on macOS unpacks into `target`: `target/<clean's name>/` (or
    its contents, where they were archived without it) with an AppleDouble `._<photo>` (junk
    bytes, no image) beside each photo and again under `target/__MACOSX/`, a `.DS_Store` in
    every folder, and a hidden `.ipynb_checkpoints/` holding a photo beside the classes (or
    the splits)."""
    inside = target / clean.name if with_folder else target
    shutil.copytree(clean, inside)
    macosx = target / "__MACOSX" / inside.relative_to(target)
    for photo in clean.rglob("*.png"):
        relative = photo.relative_to(clean).parent
        for folder in (inside / relative, macosx / relative):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"._{photo.name}").write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
    for folder in [target, inside, *(d for d in inside.rglob("*") if d.is_dir())]:
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (inside / ".ipynb_checkpoints").mkdir()
    shutil.copy(next(clean.rglob("*.png")), inside / ".ipynb_checkpoints")
    return target


@pytest.mark.parametrize(
    "layout, with_folder, ignored",
    # Outside __MACOSX/: 2 entries beside the folder, 2 in it (3 in all without the folder), a
    # .DS_Store in each split folder, and a .DS_Store and a ._ file per photo in each class.
    [
        ("classes", True, 2 + 2 + 2 * (1 + 7)),
        ("classes", False, 3 + 2 * (1 + 7)),  # __MACOSX/ beside the class folders
        ("pre-split", True, 2 + 2 + 3 + 2 * (1 + 4) + 4 * (1 + 2)),
    ],
)
def test_a_folder_unzipped_on_a_mac_is_its_photos_and_classes_and_nothing_else(
    tmp_path: Path, logged: list[str], layout: str, with_folder: bool, ignored: int
) -> None:
    if layout == "classes":
        clean = write_synthetic_images(tmp_path / "photos", classes=2, per_class=7)
    else:
        clean = pre_split(tmp_path / "photos", {"train": 4, "val": 2, "test": 2}, classes=2)
    mac = unzipped_on_a_mac(clean, tmp_path / "unzipped", with_folder)
    prepared_data(mac, 32, also=[24])
    expected, found = scan_images(clean), scan_images(mac)  # found: as the trials scan again
    assert found.class_names == expected.class_names
    assert [p.relative_to(found.root) for p in found.paths] == [
        p.relative_to(expected.root) for p in expected.paths
    ]
    assert np.array_equal(found.labels, expected.labels)
    assert np.array_equal(np.asarray(found.splits), np.asarray(expected.splits))  # or both None
    assert f"Data: {len(expected.paths)} images of 2 classes in {found.root}" in "".join(logged)
    assert [line for line in logged if "Ignored" in line] == [
        f"Ignored {ignored} hidden or macOS files and folders in {mac} (names starting with "
        f"'.', __MACOSX/): neither classes nor images.\n"
    ]
    assert not [line for line in logged if "Skipped" in line]  # no ._ file was tried as an image


def test_unreadable_files_are_said_once_however_many_sizes_are_decoded(
    tmp_path: Path, logged: list[str]
) -> None:
    folder = write_synthetic_images(tmp_path / "images", classes=2, per_class=4)
    for damaged in ("class_0/000.png", "class_1/001.png"):
        (folder / damaged).write_bytes(b"damaged")
    found = scan_images(folder)
    for size in (32, 24):
        assert len(load_cache(prepare_cache(found, size, tmp_path / "cache")).labels) == 6
    assert [line for line in logged if "Skipped" in line] == [
        f"Skipped 2 of 8 files in {found.root} that are not readable images.\n"
    ]
