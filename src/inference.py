"""A trained model applied to images: loading a model file or checkpoint, the side images are
resized to, and normalising pixels as in training. Used by predict and evaluate; no Ray, no
plotting, so that applying a model starts fast. A model file may hold an ensemble (`refit
--ensemble K`): its own network and the others under "members", each with its own side and
normalisation; their probabilities are averaged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src.images import DataError
from src.model import Net, build_model
from src.results import CHECKPOINT_FILE

BATCH = 256  # images classified at a time: bounded memory for any number of images

MODEL_FORMAT = "hypertune-model/1"  # stored in a model file; tells it apart from other .pt files


@dataclass(frozen=True)
class Member:
    """One network of a model (an ensemble's member, or the only one) and the state that says
    how images are prepared for it."""

    model: Net
    state: dict[str, Any]

    @property
    def size(self) -> int:
        return applied_size(self.state)


def model_from_state(state: dict[str, Any], device: torch.device) -> tuple[Net, dict[str, Any]]:
    model = build_model(state["config"], len(state["class_names"]), device)
    model.load_state_dict(state["model"])
    return model.eval(), state


def members_of(state: dict[str, Any], device: torch.device) -> list[Member]:
    """The networks a loaded file holds: its own, then an ensemble's other members."""
    return [Member(*model_from_state(s, device)) for s in [state, *state.get("members", [])]]


def member_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What an ensemble file keeps of a trial's checkpoint: its weights and what applying it
    needs (src.data.TrialData.applying_state), not what continuing its training would."""
    return {k: v for k, v in checkpoint.items() if k not in ("optimizer", "schedule", "epoch")}


def load_model(path: Path, device: torch.device) -> list[Member]:
    """A trial's checkpoint folder, or a model file (final_model.pt), ready to predict; a
    DataError that says so for anything else."""
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    try:
        return members_of(torch.load(file, map_location=device, weights_only=True), device)
    except Exception as err:  # not a file torch reads, or not one of ours
        raise DataError(
            f"{path} is not a hypertune checkpoint or model file ({type(err).__name__}: "
            f"{err}). Pass a trial's checkpoint_* folder or a final_model.pt."
        ) from None


def load_final_model(path: Path, device: torch.device) -> list[Member]:
    """A model file written by `hypertune.py refit`, or a DataError that says what is wrong."""
    if not path.is_file():
        raise DataError(
            f"There is no model file {path}. A model is written by `hypertune.py refit "
            f"--name NAME` (and at the end of every search) as logs/ray_results/NAME/"
            f"final_model.pt; pass that file with --model, or the experiment with --name."
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        state = {"format": f"unreadable by torch.load ({type(err).__name__})"}
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found != MODEL_FORMAT:
        raise DataError(
            f"{path} is not a hypertune model file (format {found!r}, expected "
            f"{MODEL_FORMAT!r}). Use the final_model.pt that `hypertune.py refit` wrote; "
            f"a trial checkpoint can be scored with `hypertune.py evaluate --checkpoint`."
        )
    return members_of(state, device)


def applied_size(state: dict[str, Any]) -> int:
    """The side, in px, images are resized to for the model of `state`: what a final model
    records (src.config.inference_size), else its training side: a trial's checkpoint, which
    trained too briefly to gain from larger images, or a model file saved before it recorded
    one (applied as it was scored then)."""
    return int(state.get("inference_size") or state["image_size"])


def normalised(state: dict[str, Any], pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images (N, 3, S, S) as the model saw them in training: scaled to [0, 1],
    normalised with the statistics stored in `state`, channels-last."""
    mean = torch.tensor(state["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(state["std"], device=device).view(1, 3, 1, 1)
    x = (torch.from_numpy(np.ascontiguousarray(pixels)).to(device).float() / 255 - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def probabilities(model: Net, state: dict[str, Any], pixels: np.ndarray) -> np.ndarray:
    """Class probabilities of uint8 images (N, 3, S, S), BATCH images at a time."""
    device = next(model.parameters()).device
    chunks = [
        torch.softmax(model(normalised(state, pixels[i : i + BATCH], device)), 1).cpu().numpy()
        for i in range(0, len(pixels), BATCH)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, len(state["class_names"])))


def sizes_of(members: list[Member]) -> list[int]:
    """The sides images are read at for these members: one decode per side."""
    return sorted({m.size for m in members})


def averaged(members: list[Member], pixels: dict[int, np.ndarray]) -> np.ndarray:
    """The members' class probabilities averaged, each member given the images at its side
    (`pixels`: the same images at every side of sizes_of)."""
    return np.mean([probabilities(m.model, m.state, pixels[m.size]) for m in members], axis=0)
