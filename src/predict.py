"""Apply a final model to new photos: the class and its probability for every image.

    .venv/bin/python hypertune.py predict --name NAME photo.jpg more_photos/
    .venv/bin/python hypertune.py predict --model final_model.pt photos/ --top-k 3 --output p.csv

Images are prepared as for evaluation (src.images.read_image: upright, the shorter side resized
to the side the model records, src.inference.applied_size, centre-cropped), normalised
with the statistics stored in the model. Folders are walked. Where the folders images sit in
are named like the model's classes (daisy/1.jpg, or test/daisy/1.jpg in a pre-split folder),
they are taken as the true labels and the accuracy is printed too. An unreadable image gets an
error row that says why; the others are still predicted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.device import local_device
from src.images import IMAGE_SUFFIXES, DataError, UnreadableImage, read_image, readable
from src.inference import Member, averaged, load_final_model, sizes_of
from src.results import write_atomically

BATCH = 64  # images decoded and classified at a time: bounded memory for any folder size


@dataclass(frozen=True)
class Photo:
    path: Path
    label: str | None  # the class folder it sits in, where that names one of the model's classes


def images_below(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def labelled_photos(folder: Path, classes: list[str]) -> list[Photo]:
    """The images below `folder`, each labelled by the folder it sits in where that is named
    like one of the model's classes, at any depth (daisy/1.jpg, test/daisy/1.jpg). Folders of
    images partly named so and partly not hold classes the model does not know: refused."""
    found = images_below(folder)
    if not found:
        raise DataError(
            f"The folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    holders = {path.parent for path in found if path.parent != folder}
    known = {d for d in holders if readable(d.name) in classes}
    if known and (unknown := sorted({readable(d.name) for d in holders - known})):
        raise DataError(
            f"{folder} has class folders the model was not trained on: {', '.join(unknown)}. "
            f"The model knows {', '.join(classes)}. Pass a folder whose sub-folders are only "
            f"these classes, or one of unlabelled images."
        )
    return [
        Photo(path, readable(path.parent.name) if path.parent in known else None) for path in found
    ]


def collect_photos(inputs: list[Path], classes: list[str]) -> list[Photo]:
    """Every image named or found below the inputs, with its true label where the folder
    layout gives one."""
    photos = []
    for item in inputs:
        if item.is_file():
            photos.append(Photo(item, None))
        elif item.is_dir():
            photos += labelled_photos(item, classes)
        else:
            raise DataError(f"{item} does not exist: pass image files or folders of images.")
    return photos


def decoded(photos: list[Photo], sizes: list[int]) -> list[dict[int, np.ndarray] | str]:
    """Each photo's pixels at each of `sizes` (an ensemble's members may differ), or why it
    could not be read."""
    out: list[dict[int, np.ndarray] | str] = []
    for photo in photos:
        try:
            out.append({size: read_image(photo.path, size) for size in sizes})
        except UnreadableImage as err:
            out.append(f"not a readable image ({err})")
    return out


def predict(members: list[Member], photos: list[Photo], top_k: int) -> pd.DataFrame:
    """One row per photo: predicted class and probability (averaged over an ensemble's
    members), the next top_k - 1 classes, the true class where known, and an error for files
    that are not readable images."""
    classes, sizes = members[0].state["class_names"], sizes_of(members)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(photos), BATCH):
        batch = photos[start : start + BATCH]
        pixels_or_errors = decoded(batch, sizes)
        readable_ones = [d for d in pixels_or_errors if not isinstance(d, str)]
        probs: Iterator[np.ndarray] = iter([])
        if readable_ones:
            pixels = {size: np.stack([d[size] for d in readable_ones]) for size in sizes}
            probs = iter(averaged(members, pixels))
        for photo, read in zip(batch, pixels_or_errors, strict=True):
            row: dict[str, Any] = {"path": readable(photo.path), "true_class": photo.label or ""}
            if isinstance(read, str):
                rows.append({**row, "error": read})
                continue
            p = next(probs)
            order = np.argsort(-p)[:top_k]
            row |= {"class": classes[order[0]], "probability": float(p[order[0]]), "error": ""}
            for rank, i in enumerate(order[1:], start=2):
                row |= {f"class_{rank}": classes[i], f"probability_{rank}": float(p[i])}
            rows.append(row)
    table = pd.DataFrame(rows)
    return table[[c for c in table if c not in ("true_class", "error")] + ["true_class", "error"]]


def accuracy_note(table: pd.DataFrame) -> str | None:
    """Accuracy and per-class recall over the labelled, readable photos; None if none."""
    known = table[(table["true_class"] != "") & (table["error"] == "")]
    if known.empty:
        return None
    hit = known["class"] == known["true_class"]
    recall = hit.groupby(known["true_class"]).mean()
    per_class = ", ".join(f"{name} {value:.2f}" for name, value in recall.items())
    return f"accuracy {hit.mean():.4f} on {len(known)} labelled images (recall: {per_class})"


def run_predict(model_path: Path, inputs: list[Path], top_k: int) -> pd.DataFrame:
    members = load_final_model(model_path, local_device())
    classes = members[0].state["class_names"]
    return predict(members, collect_photos(inputs, classes), min(top_k, len(classes)))


def predict_and_report(
    model_path: Path, inputs: list[Path], top_k: int, output: Path | None
) -> pd.DataFrame:
    """Predict, print one row per file (and the accuracy where labels are known), and write
    the table to `output` if given."""
    table = run_predict(model_path, inputs, top_k)
    shown = table.drop(columns=[c for c in ("true_class", "error") if not table[c].any()])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    unreadable = int((table["error"] != "").sum())
    if unreadable:
        print(f"{unreadable} of {len(table)} files were not readable images (error rows).")
    if note := accuracy_note(table):
        print(note)
    if output:
        write_atomically(output, table.to_csv(index=False))
        print(f"written: {output}")
    return table
