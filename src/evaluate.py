"""How good is the winner really: a checkpoint evaluated once on images it never saw.

By default the best checkpoint of an experiment's best trial is scored on the held-out test
split of the experiment's own data (never used while tuning). `--data-dir` scores it on any
folder of `<class>/*.jpg|png` whose classes are the training classes. The checkpoint carries
the model config, image size, normalisation and class names, so nothing else is needed. Images
are resized to the side the model records (src.inference.applied_size: larger than it trained
at).

    .venv/bin/python hypertune.py evaluate --name NAME
    .venv/bin/python hypertune.py evaluate --name NAME --data-dir other_photos/
    .venv/bin/python hypertune.py evaluate \
        --checkpoint logs/ray_results/NAME/trial_X/checkpoint_000009
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from loguru import logger

from src.config import METRIC
from src.data import split_of
from src.device import local_device
from src.images import CachedImages, DataError, load_cache, prepare_cache, scan_images
from src.inference import Member, averaged, load_model, sizes_of
from src.results import (
    CHECKPOINT_FILE,
    EVALUATION_SUMMARY,
    Evaluation,
    ExperimentFolder,
    ranked,
    read_experiment_info,
    read_summary,
    trial_history,
    write_atomically,
)


def best_checkpoint(experiment: Path) -> Path:
    """The checkpoint at the best epoch of the experiment's best trial."""
    if not (summary := ExperimentFolder(experiment).summary).is_file():
        raise DataError(
            f"{experiment} has no {summary.name}: it is not a finished hypertune experiment "
            f"(resume it with --resume, or pass --checkpoint)."
        )
    if (checkpoint := next(ranked_checkpoints(experiment), None)) is None:
        raise DataError(f"No trial of {experiment} kept a checkpoint; nothing to evaluate.")
    return checkpoint


def ranked_checkpoints(experiment: Path) -> Iterator[Path]:
    """Each trial's checkpoint at its best epoch, best trial first, read as asked for; trials
    that kept none, and an experiment without trials (no search: a summary without paths, or
    none), give none."""
    folder = ExperimentFolder(experiment)
    table = read_summary(experiment) if folder.summary.is_file() else pd.DataFrame()
    for path in ranked(table)["path"] if "path" in table else []:
        if (checkpoint := trial_checkpoint(Path(path))) is not None:
            yield checkpoint


def trial_checkpoint(trial: Path) -> Path | None:
    """The checkpoint folder at the trial's best epoch, or None where it kept none."""
    checkpoints = sorted(trial.glob(f"checkpoint_*/{CHECKPOINT_FILE}"))
    if not checkpoints or not len(history := trial_history(trial)):
        return None
    scores = dict(zip(history["checkpoint_dir_name"], history[METRIC], strict=True))
    # A checkpoint whose row a kill -9 cut from progress.csv ranks last, not a crash.
    return max(checkpoints, key=lambda c: float(scores.get(c.parent.name, -1))).parent


def counts(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Counts of [true class, predicted class]."""
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return confusion


def confusion_matrix(
    members: list[Member], pixels: dict[int, np.ndarray], labels: np.ndarray
) -> np.ndarray:
    """Counts of [true class, predicted class] over the images (`pixels`: at each member's
    side, src.inference.averaged)."""
    return counts(averaged(members, pixels).argmax(1), labels, len(members[0].state["class_names"]))


def confusions(
    members: list[Member], pixels: dict[int, np.ndarray], labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """confusion_matrix plain and with flip test-time augmentation, each image's probabilities
    averaged with its mirror image's (the model trained on mirrored photos too:
    src.data.random_resized_crop_flip): two passes; and the plain pass's seconds per image."""
    began = time.perf_counter()
    plain = averaged(members, pixels)
    seconds = (time.perf_counter() - began) / max(len(labels), 1)
    mirrored = averaged(members, {size: images[..., ::-1] for size, images in pixels.items()})
    n = len(members[0].state["class_names"])
    return (
        counts(plain.argmax(1), labels, n),
        counts((plain + mirrored).argmax(1), labels, n),
        seconds,
    )


def test_split(
    experiment: Path, sizes: list[int]
) -> tuple[dict[int, np.ndarray], np.ndarray, list[str]]:
    """The held-out test images of the experiment's own data, at each of `sizes`."""
    _, data_spec, _ = read_experiment_info(experiment)
    caches = caches_at(data_spec.root, sizes)
    first = caches[sizes[0]]  # every size holds the same files, labels and split
    test = split_of(first)["test"]
    pixels = {size: np.asarray(cached.images[test]) for size, cached in caches.items()}
    return pixels, first.labels[test], first.class_names


def folder_images(
    data_dir: Path, sizes: list[int], classes: list[str]
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """The images of a user's folder at each of `sizes`, labelled in the checkpoint's class
    order: all of them, or of a pre-split folder its test split (what a search on it would
    hold out)."""
    caches = caches_at(data_dir, sizes)
    first = caches[sizes[0]]  # every size holds the same files, labels and split
    if sorted(first.class_names) != sorted(classes):
        missing = sorted(set(classes) - set(first.class_names))
        extra = sorted(set(first.class_names) - set(classes))
        raise DataError(
            f"The classes of {data_dir} do not match the model's. Missing: "
            f"{', '.join(missing) or 'none'}; not trained on: {', '.join(extra) or 'none'}. "
            f"Use a folder with exactly these class folders: {', '.join(classes)}."
        )
    remap = np.array([classes.index(name) for name in first.class_names])
    chosen = split_of(first)["test"] if first.splits is not None else slice(None)
    pixels = {size: np.asarray(cached.images[chosen]) for size, cached in caches.items()}
    return pixels, remap[first.labels[chosen]]


def caches_at(root: Path, sizes: list[int]) -> dict[int, CachedImages]:
    """The decoded images of the folder `root` at each of `sizes` (the folder scanned once)."""
    folder = scan_images(root)
    return {size: load_cache(prepare_cache(folder, size)) for size in sizes}


def plot_confusion(result: Evaluation, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sns.heatmap(result.confusion, annot=True, fmt="d", cmap="Blues", ax=ax,
                xticklabels=result.class_names, yticklabels=result.class_names)  # fmt: skip
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return fig


def evaluate(checkpoint: Path, data_dir: Path | None, experiment: Path | None) -> Evaluation:
    """Score `checkpoint` on `data_dir`, or else on the test split of `experiment`'s data."""
    members = load_model(checkpoint, local_device())
    classes, sizes = members[0].state["class_names"], sizes_of(members)
    if data_dir is not None:
        pixels, labels = folder_images(data_dir, sizes, classes)
    elif experiment is not None:
        pixels, labels, test_classes = test_split(experiment, sizes)
        if test_classes != classes:
            raise DataError(f"The classes of {experiment}'s data changed since training.")
    else:
        raise DataError("Say what to evaluate on: --name NAME (its test split) or --data-dir.")
    plain, flipped, seconds = confusions(members, pixels, labels)
    return Evaluation(classes, plain, members[0].size, flipped, len(members), seconds)


def write_evaluation(result: Evaluation, folder: Path, title: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    table = result.per_class()
    paths = [folder / "confusion_matrix.png", folder / "per_class.csv", folder / EVALUATION_SUMMARY]
    fig = plot_confusion(result, f"{title}\naccuracy {result.accuracy:.3f}")
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    plt.close(fig)
    table.to_csv(paths[1], index=False)
    summary = {
        "accuracy": result.accuracy,
        "flip_accuracy": result.flip_accuracy,  # each image scored with its mirror image too
        "images": int(result.confusion.sum()),
        "image_size": result.image_size,  # of the model's own network (an ensemble's first)
        "members": result.members,  # networks averaged (refit --ensemble)
        "title": title,
        "confusion": result.confusion.tolist(),
        "class_names": result.class_names,
    }
    write_atomically(paths[2], json.dumps(summary, indent=1))
    return paths


def evaluate_and_report(
    experiment: Path | None,
    checkpoint: Path | None,
    data_dir: Path | None,
    out: Path | None = None,
) -> Evaluation:
    """Evaluate, print accuracy and per-class precision / recall, and write the figures into
    `out`, by default into the experiment folder (or the checkpoint's trial folder):
    evaluation/ for the test split, evaluation-<folder>/ for another folder. `checkpoint` is a
    trial's checkpoint folder or a model file; None means the experiment's final model where it
    has one, else its best checkpoint."""
    if checkpoint is None:
        if experiment is None:
            raise DataError("Nothing to evaluate: give an experiment or a checkpoint.")
        final = ExperimentFolder(experiment).model
        checkpoint = final if final.is_file() else best_checkpoint(experiment)
    result = evaluate(checkpoint, data_dir, experiment)
    on = "the test split" if data_dir is None else str(data_dir)
    title = f"{checkpoint.parent.name}/{checkpoint.name} on {on}"
    folder = "evaluation" if data_dir is None else f"evaluation-{data_dir.name}"
    out = out or (experiment or checkpoint.parent) / folder
    paths = write_evaluation(result, out, title)
    logger.info(
        f"Evaluation of {title}: accuracy {result.accuracy:.4f} ({result.flip_accuracy:.4f} "
        f"with flip TTA) on {result.confusion.sum()} images at {result.image_size} px\n"
        f"{result.per_class().round(3).to_string(index=False)}\n"
        f"written: {', '.join(str(p) for p in paths)}"
    )
    return result
