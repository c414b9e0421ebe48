"""The model a user takes home: the search's best configuration, trained from scratch on the
train + validation splits for longer, saved as one file and scored once on the test split.

    .venv/bin/python hypertune.py refit --name NAME     # what `search` runs at its end
    .venv/bin/python hypertune.py refit --name NAME --epochs 60 --image-size 96

Why refit: a trial trains on 70% of the images for at most --max-epochs, and ASHA stops most
trials earlier still; every learning curve of the searches in report.md still rises at its last
epoch. The configuration is chosen on validation accuracy; the refit then also learns from the
validation images, which is why it cannot be judged on them: the test split, untouched until
now, is read once at the end.

Safe to interrupt: after every epoch the training state goes to refit/checkpoint.pt (written
to a temporary file and renamed), and running the same command again continues from it.
final_model.pt appears, also by an atomic rename, only once training has finished.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from torch import nn

from src.budget import epochs_that_fit
from src.config import DEFAULT_REFIT_EPOCHS, EMA_HALF_LIFE, current_config, inference_size
from src.console import Ticker, clock
from src.data import TrialData, open_trial_data
from src.device import Amp, describe_device, graphs_wanted, local_device, seed_everything
from src.evaluate import evaluate_and_report, ranked_checkpoints
from src.inference import MODEL_FORMAT, member_state
from src.model import build_model, count_parameters
from src.results import (
    CHECKPOINT_FILE,
    Evaluation,
    ExperimentFolder,
    read_experiment_info,
    record_actual,
    refit_config,
    replacing,
)
from src.step import make_step
from src.train import (
    WeightAverage,
    load_training_state,
    make_optimizer,
    on_cpu,
    plain,
    train_epoch,
    training_state,
)


@dataclass(frozen=True)
class RefitPlan:
    """Everything that decides the refit model; a saved training state is only resumed when
    its plan is the same."""

    experiment: str  # experiment folder (absolute)
    config: dict[str, Any]  # the chosen trial's hyperparameters and the seed
    epochs: int
    why: str = ""  # which configuration this is, and why it was chosen
    weights: str = "raw"  # what the model file holds: one of src.config.FINAL_WEIGHTS

    @property
    def image_size(self) -> int:
        """The side it trains at: its config's (refit --image-size, else --refit-image-size,
        else the chosen trial's, else the run's --image-size: plan_refit)."""
        return int(self.config["image_size"])


def plan_refit(
    experiment: Path,
    epochs: int | None = None,
    image_size: int | None = None,
    seed: int | None = None,
    seconds: float | None = None,
) -> RefitPlan:
    """The experiment's chosen configuration (src.results.refit_config) and how long to train
    it: `epochs`, else the experiment's --refit-epochs, else the epochs of an interrupted refit
    of the same model, else as many as `seconds` hold at the pace measured here, else the
    default count. Unset values: the experiment's."""
    settings, spec, _ = read_experiment_info(experiment)
    chosen, why = refit_config(experiment, settings)
    size = image_size or settings.refit_image_size or chosen.get("image_size", settings.image_size)
    config = plain({**chosen, "image_size": size, "seed": settings.seed if seed is None else seed})
    epochs = epochs or settings.refit_epochs or interrupted_epochs(experiment, config)
    if not epochs and seconds:
        threads = os.cpu_count() or 1
        epochs = epochs_that_fit(config, spec, threads, seconds)
    epochs = epochs or DEFAULT_REFIT_EPOCHS
    return RefitPlan(str(experiment), config, epochs, why, settings.final_weights)


def interrupted_epochs(experiment: Path, config: dict[str, Any]) -> int | None:
    """The planned epochs of an interrupted refit of this configuration (and so size), if any:
    a time-budgeted refit continues with its plan rather than one measured anew."""
    state = resume_state(ExperimentFolder(experiment).refit_state)
    plan = current_plan((state or {}).get("plan", {}))
    same = plan.get("config") == config
    return int(plan["epochs"]) if same else None


def save_atomically(state: dict[str, Any], path: Path) -> None:
    """torch.save through src.results.replacing: a kill never leaves a half-written file."""
    with replacing(path) as tmp:
        torch.save(state, tmp)


def resume_state(path: Path, plan: RefitPlan | None = None) -> dict[str, Any] | None:
    """The saved training state (of this same `plan`, if given), or None (absent, other plan,
    unreadable)."""
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file is not worth failing for: start over
        logger.warning(f"Ignoring the unreadable refit state {path} ({err}); starting over.")
        return None
    return state if plan is None or current_plan(state.get("plan", {})) == asdict(plan) else None


def current_plan(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved plan as today's RefitPlan says it: states from before the size lived in the
    config alone said it twice; from before final weights could be averaged, they were raw;
    their configs lack the hyperparameters added since (config.current_config)."""
    plan = {"weights": "raw", **{k: v for k, v in saved.items() if k != "image_size"}}
    return {**plan, "config": current_config(plan["config"])} if "config" in plan else plan


def refit(plan: RefitPlan, command: str, seconds: float | None = None) -> Evaluation:
    """Train, save `<experiment>/final_model.pt` (recording `command`, the command line that
    asked for it), evaluate it once on the test split. With `seconds`, the epochs are planned
    again once the first has been timed, to end training within them."""
    experiment = Path(plan.experiment)
    settings, spec, _ = read_experiment_info(experiment)
    torch.set_num_threads(os.cpu_count() or 1)  # one process: every core
    seed_everything(plan.config["seed"])
    device = local_device()
    data = open_trial_data(spec, plan.config, device, ("train", "val"), graphs_wanted(device))
    files = ExperimentFolder(experiment)
    state_path = files.refit_state
    began = time.monotonic()
    deadline = None if seconds is None else began + seconds
    planned = plan.epochs
    members = ensemble_members(experiment, settings.ensemble - 1, data.class_names)  # (no cost)
    model, average, plan, trained = train(plan, data, state_path, deadline)
    kept = model if average is None else average.model
    model_path = files.model
    file = model_file(kept, plan, data, spec.root, trained, command)
    save_atomically({**file, "members": members}, model_path)
    state_path.unlink()
    record_actual(experiment, "final_model", {
        "members": 1 + len(members),  # networks averaged: the final model and trials as trained
        "members_asked": settings.ensemble,  # --ensemble: more than the search kept is said
        "planned_epochs": planned,  # from the pace timed before training
        "epochs": plan.epochs,  # re-planned every epoch from the pace measured so far
        "planned_seconds": None if seconds is None else round(seconds, 1),
        "seconds": round(time.monotonic() - began, 1),  # set-up, training, saving
        "train_seconds": round(trained, 1),
    })  # fmt: skip
    test = evaluate_and_report(experiment, model_path, None, out=files.evaluation)
    record_actual(experiment, "test", {
        "accuracy": test.accuracy,
        "flip_accuracy": test.flip_accuracy,  # each test photo scored with its mirror too
        "images": int(test.confusion.sum()),
        "ms_per_photo": round(1000 * (test.seconds_per_image or 0), 3),  # all members, here
    })  # fmt: skip
    return test


def ensemble_members(experiment: Path, count: int, classes: list[str]) -> list[dict[str, Any]]:
    """The `count` best trials' checkpoints as trained (src.evaluate.ranked_checkpoints), as a
    model file keeps its other members (src.inference.member_state): they cost no training,
    the search paid for them. Fewer where the search kept fewer, with a warning that says so."""
    members: list[dict[str, Any]] = []
    other_classes = 0
    for checkpoint in ranked_checkpoints(experiment) if count > 0 else []:
        state = torch.load(checkpoint / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        if state["class_names"] != classes:  # the data folder changed since the search
            other_classes += 1
        elif len(members) < count:
            members.append(member_state(state))
    if len(members) < count:
        skipped = f" ({other_classes} of another set of classes left out)" if other_classes else ""
        logger.warning(
            f"--ensemble {count + 1} asks for {count} trials beside the final model; the search "
            f"kept checkpoints of {len(members)} usable ones{skipped}, so the ensemble has "
            f"{len(members) + 1} network(s)."
        )
    return members


def train(
    plan: RefitPlan, data: TrialData, state_path: Path, deadline: float | None = None
) -> tuple[nn.Module, WeightAverage | None, RefitPlan, float]:
    """The model trained for plan.epochs (continuing from `state_path` where it holds this
    plan), saving its state there after every epoch; also the average of its weights (where
    the plan keeps "ema" weights), the plan it followed (with a `deadline`, its epochs are
    those that fit once the first epoch is timed) and the training seconds."""
    model = build_model(plan.config, len(data.class_names), data.device)
    optimizer, schedule = make_optimizer(model, plan.config, plan.epochs, len(data.train))
    amp = Amp.for_device(data.device)
    step = make_step(model, optimizer, amp, plan.config["label_smoothing"])
    average = WeightAverage(model, 0) if plan.weights == "ema" else None
    state_path.parent.mkdir(exist_ok=True)
    done, seconds = 0, 0.0
    if saved := resume_state(state_path, plan):
        done, seconds = load_training_state(saved, model, optimizer, schedule), saved["seconds"]
        if average is not None:
            average.model.load_state_dict(saved["average"])
        logger.info(f"Refit: continuing from epoch {done} of {plan.epochs} ({state_path})")
    logger.info(
        f"Refit: {plan.why}; {count_parameters(model):,} parameters, "
        f"{data.train.num_images} images (train + val) at {plan.image_size} px, "
        f"{plan.epochs} epochs on {describe_device(data.device)} ({amp.precision})"
    )
    ticker, epoch, ends = Ticker(), done, [time.monotonic()]
    while epoch < plan.epochs:
        epoch, start = epoch + 1, time.perf_counter()
        if average is not None:  # a share of the steps planned now (replan may move them)
            average.half_life = EMA_HALF_LIFE * plan.epochs * len(data.train)
        loss = train_epoch(model, data.train, optimizer, schedule, amp=amp, step=step,
                           average=average)  # fmt: skip
        seconds += time.perf_counter() - start
        ends.append(time.monotonic())
        if deadline is not None:
            plan = replan(plan, schedule, epoch, deadline, pace(ends))
        state = training_state(epoch, model, optimizer, schedule)
        if average is not None:
            state["average"] = on_cpu(average.model.state_dict())
        save_atomically({**state, "plan": asdict(plan), "seconds": seconds}, state_path)
        left = (plan.epochs - epoch) * seconds / epoch
        ticker.show(
            f"refit epoch {epoch}/{plan.epochs} | train_loss {loss:.4f} | {clock(seconds)} "
            f"elapsed, ~{clock(left)} left",
            force=epoch == plan.epochs,
        )
    ticker.close()
    return model, average, plan, seconds


def pace(ends: list[float]) -> float:
    """Wall seconds per epoch from the times epochs ended (the first entry: the start). The
    first epoch is left out once there are others: it also pays for warming up."""
    steady = ends[1:] if len(ends) > 2 else ends
    return (steady[-1] - steady[0]) / (len(steady) - 1)


def replan(
    plan: RefitPlan, schedule: Any, epoch: int, deadline: float, seconds_per_epoch: float
) -> RefitPlan:
    """After `epoch`: the plan with as many epochs as fit before `deadline` at the measured
    pace, its cosine schedule stretched or shortened to match. Done after every epoch, the
    changes are an epoch or two, and barely move the learning rate."""
    fits = epoch + int(max(deadline - time.monotonic(), 0) // seconds_per_epoch)
    if fits == plan.epochs:
        return plan
    if epoch == 1:  # later changes show in the progress line
        logger.info(f"Refit: {fits} epochs fit the time left ({seconds_per_epoch:.1f} s each)")
    (factor,) = schedule.lr_lambdas
    factor.total = factor.total // plan.epochs * fits
    return replace(plan, epochs=fits)


def model_file(
    model: nn.Module,
    plan: RefitPlan,
    data: TrialData,
    data_root: Path,
    seconds: float,
    command: str,
) -> dict[str, Any]:
    """Everything `predict` needs, and where the model came from: plain values and tensors
    only, so that it loads with torch.load(weights_only=True). `model`: the weights the plan
    keeps (raw, or their average)."""
    return {
        "format": MODEL_FORMAT,
        "model": on_cpu(model.state_dict()),  # loads on any machine, GPU-trained or not
        "weights": plan.weights,  # raw, or their moving average (ema): src.config.FINAL_WEIGHTS
        "config": plan.config,
        **data.applying_state(),
        "inference_size": inference_size(plan.image_size),  # long-trained: applied larger
        "trained_on": {
            "data_root": str(data_root),
            "splits": ["train", "val"],
            "images": data.train.num_images,
            "epochs": plan.epochs,
            "train_seconds": round(seconds, 1),
            "device": describe_device(data.device),
            "precision": Amp.for_device(data.device).precision,
            "ema_half_life": EMA_HALF_LIFE if plan.weights == "ema" else None,  # share of steps
        },
        "experiment": Path(plan.experiment).name,
        "chosen": plan.why,
        "command": command,
    }
