"""Everything a run can be configured with, as plain data, and the checks it must pass.

`DEFAULT_START` is one known-reasonable CNN (every searcher evaluates it first, at the run's
--image-size), `SEARCH_SPACE` is what the searchers explore, and `RunSettings` holds the
experiment-level knobs. Settings check
themselves (`RunSettings.problems()`, `Grid.problems()`), so settings made in code (compare,
tests, benchmarks) pass the same checks as the command line's. Change the search in one place:
`SEARCH_SPACE` below.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from src.errors import HypertuneError

# One trial's hyperparameters. These are the values HyperOpt tries first and the values a
# fixed-epoch grid uses for every hyperparameter it does not vary.
DEFAULT_START: dict[str, Any] = {
    "num_conv_layers": 3,  # conv blocks; each halves the resolution (MaxPool 2x2)
    "start_filters": 32,  # channels of the first block, doubled per block
    "kernel_size": 3,  # conv kernel (odd, 'same' padding)
    "batchnorm": True,  # BatchNorm after each conv: faster, more stable optimisation
    "block": "residual",  # one of BLOCKS (src/model.py draws each); a 1x1-projected skip
    # around each conv gained 0.7 points over plain (journal entry 7)
    "fc_units": 128,  # width of the hidden fully connected layer
    "dropout": 0.3,  # dropout before the output layer
    "lr": 3e-3,  # peak AdamW learning rate (cosine-annealed to 0 over max_epochs)
    "weight_decay": 5e-4,  # decoupled AdamW weight decay: the main regulariser on 2.3k images
    "batch_size": 32,  # images per optimiser step
    "label_smoothing": 0.1,  # target mass spread over the other classes (journal entry 5)
    "jitter": 0.0,  # colour jitter: brightness/contrast/saturation x U(1 -/+ jitter); 0 = off,
    # as colour is what tells these flowers apart: 0.3 cost 2-4 points (journal entry 5)
    "crop_scale": 0.35,  # smallest area share of the random resized crop (src/data.py)
    "cutout": 0.0,  # side of the square erased from each training image, as a share of the
    # image's side (DeVries & Taylor 2017); 0 = off
}

# The hyperparameters of the training images' augmentation (src.data.BatchStream), in the
# order it reads them.
AUGMENTATION = ("jitter", "crop_scale", "cutout")

# Hyperparameters added after runs were saved, with the value those runs trained with: an
# older trial's or model's config reads as if it had said so (current_config). Not
# DEFAULT_START's values: those may change, what old runs trained with does not.
ADDED_LATER: dict[str, Any] = {"crop_scale": 0.35, "cutout": 0.0}

# What a conv block may be (src/model.py): plain (VGG), residual (ResNet's skip), se
# (residual + squeeze-excite gate), inception (four parallel branches, GoogLeNet).
BLOCKS = ("plain", "residual", "se", "inception")


def block_of(config: Mapping[str, Any]) -> str:
    """A configuration's block type. Configurations from before `block` existed (model files,
    checkpoints, summaries, space files) said `residual`: True is today's residual block,
    False plain."""
    if isinstance(config.get("block"), str):  # (a summary without the column reads NaN)
        return str(config["block"])
    return "residual" if config.get("residual", True) else "plain"


def with_blocks(values: dict[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """`values` keyed by hyperparameter (a trial's config, a space, pinned values, grid axes)
    from before `block` existed, `residual` renamed `block` in its place, its value converted
    by `convert` (a value, a list of values, a space entry): the one upgrade of old files."""
    return {
        ("block" if name == "residual" else name): (convert(v) if name == "residual" else v)
        for name, v in values.items()
    }


def as_block(residual: Any) -> str:
    return block_of({"residual": bool(residual)})


def current_config(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config in today's names (one saved before `block` existed says `residual`),
    with the values of hyperparameters added since it was saved (ADDED_LATER)."""
    return {**ADDED_LATER, **(with_blocks(config, as_block) if "block" not in config else config)}


# Learning-rate warm-up (linear, in epochs) before the per-step cosine decay to 0.
WARMUP_EPOCHS = 1


# What HyperOpt (TPE) searches. Values are (kind, arguments):
#   choice -> categorical, uniform / loguniform -> (low, high). Keys not listed keep DEFAULT_START.
# Weight decay is searched because with ~2.3k training images regularisation decides much of
# the validation accuracy; AdamW (decoupled decay) is fixed because it needs little lr tuning.
SEARCH_SPACE: dict[str, tuple[str, Any]] = {
    "num_conv_layers": ("choice", [2, 3, 4]),
    "start_filters": ("choice", [16, 32]),  # 64 costs 4x and did not pay (journal entry 5)
    "fc_units": ("choice", [64, 128, 256]),
    "dropout": ("uniform", (0.1, 0.5)),
    "lr": ("loguniform", (1e-4, 1e-2)),
    "weight_decay": ("loguniform", (1e-5, 1e-2)),
    "batch_size": ("choice", [16, 32]),
}

# Fixed split of the images: fractions of every class, and the seed that shuffles them.
# The test split is never seen during tuning.
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
SPLIT_SEED = 42
SPLITS = tuple(SPLIT_FRACTIONS)  # a pre-split folder's train/, val/ and test/, in this order
HELD_OUT_TEST = 0.15  # of a pre-split folder's train/ without test/: held out as its test split

DEFAULT_STORAGE = Path("logs/ray_results")  # experiment folders, relative to the working folder
LOCAL_TRACKING_STORE = Path("logs/mlflow")  # --mlflow without a URI: MLflow's database, artifacts
NAME_PATTERN = r"[\w.+-]+"  # experiment names (folder names): compare's runs use '+'

DEFAULT_REFIT_EPOCHS = 40  # epochs of a final model given neither a time budget nor a count
# The weights a final model file holds: "raw", as training left them, or "ema", their exponential
# moving average (src.train.WeightAverage), whose half-life is this share of its training steps.
FINAL_WEIGHTS = ("raw", "ema")
EMA_HALF_LIFE = 0.05
MIN_IMAGE_SIZE = 32  # 4 conv blocks halve it 4 times
MAX_IMAGE_SIZE = 512  # every image is cached at this size: 768 KiB each, 64x the work of 64 px
# A final model is applied (evaluate, predict) to images this many times the side it trained at
# (inference_size). Its random resized crops (area a ~ U(crop_scale, 1), src/data.py) magnified
# objects by 1/sqrt(a), 1.26x on average at crop_scale 0.35, against a whole image at the same
# side (Touvron et al. 2019, "FixRes"). On validation only long-trained models gained from it
# (journal entry 14): final models are applied at it; trials validate, and their checkpoints
# are applied, at their own side.
INFERENCE_SIZE_FACTOR = 1.25


# What a search space, --set and a grid axis may name: DEFAULT_START's hyperparameters and the side
# in px a trial's images are resized to (the run's --image-size unless one of those says
# otherwise; the long preset searches it: journal entry 13).
SEARCHABLE = [*DEFAULT_START, "image_size"]
# Every value a trial's config holds: the above and the seed of its torch/numpy RNGs.
HYPERPARAMETERS = [*SEARCHABLE, "seed"]

LONG_SPACE = str(Path(__file__).resolve().parent / "space_long.toml")  # the long preset's space

# Presets of `search` (--preset NAME): values for flags the user did not type. Wall times are
# for 2 CPU cores and the Flowers copy (README, Measured).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"time_budget": 10},  # minutes for search + final model (journal entry 11)
    # Longer trials, judged later (ASHA's epoch-2 rung stopped the start: entry 6), over
    # image size and depth, where an hour finds more accuracy (entry 13).
    "long": {"time_budget": 60, "max_epochs": 20, "grace_period": 4, "space": LONG_SPACE},
    # --smoke-test: generated images, checks an installation in well under a minute
    "smoke": {
        "time_budget": 0,  # no time limit: a fixed, small amount of work
        "num_samples": 4,
        "max_epochs": 3,
        "grace_period": 1,
        "image_size": 32,
        "refit_epochs": 2,
    },
}

# How `search` proposes configurations (--searcher) and stops or changes trials (--scheduler);
# src/search.py says what each one is. Default: ASHA + HyperOpt.


@dataclass(frozen=True)
class SearcherTraits:
    """What a searcher does with what it has seen: the time plan reads it here."""

    learns: bool  # proposes from what scored well (after a random start): later trials score
    # higher than random draws, and ASHA lets more of them go on (src/budget.py asha_epochs)


SEARCHER_TRAITS = {
    "hyperopt": SearcherTraits(learns=True),  # TPE
    "random": SearcherTraits(learns=False),
    "de": SearcherTraits(learns=True),  # differential evolution: mutates the better members
    "bohb": SearcherTraits(learns=True),  # TPE-like kernel density on HyperBand's results
}
SEARCHERS = tuple(SEARCHER_TRAITS)


@dataclass(frozen=True)
class SchedulerTraits:
    """What a scheduler does to trials: the search, the time plan and analysis read it here."""

    first_rung: str | None  # where it may first stop a trial, then every reduction_factor-fold
    # later: "grace_period" (ASHA), "epoch 1" (HyperBand's most aggressive bracket); None: never
    one_bracket: bool  # every trial is judged at the same rungs as it reaches them (ASHA)
    clones: bool  # copies trials into others from their checkpoints (PBT): every one is kept


SCHEDULER_TRAITS = {
    "asha": SchedulerTraits(first_rung="grace_period", one_bracket=True, clones=False),
    "fifo": SchedulerTraits(first_rung=None, one_bracket=False, clones=False),
    "pbt": SchedulerTraits(first_rung=None, one_bracket=False, clones=True),
    "hyperband": SchedulerTraits(first_rung="epoch 1", one_bracket=False, clones=False),
}
SCHEDULERS = tuple(SCHEDULER_TRAITS)
# Pairs that only work together: the partner each needs, and why. An untyped partner flag
# follows (--searcher bohb alone means hyperband); a typed, different one is refused.
PAIRED: dict[str, tuple[str, str]] = {
    "bohb": ("hyperband", "BOHB's model learns from HyperBand's brackets"),
    "hyperband": ("bohb", "HyperBandForBOHB feeds BOHB's model"),
    # PBT changes hyperparameters mid-trial: a model-based searcher would learn from configs
    # that no longer describe the trials, so PBT's first population is drawn at random.
    "pbt": ("random", "PBT changes hyperparameters mid-trial, which misleads a model"),
}
# What PBT may change while a trial runs (from its checkpoint); the architecture never.
PBT_MUTABLE = ("lr", "weight_decay", "dropout")

# Search methods of `hypertune.py compare`: scheduler+searcher pairs as above, a grid, and
# `start`: no search, the starting configuration trained for the whole budget (before
# 2026-12-07 called `baseline`, which --methods still takes: src.flags.comparison_from).
COMPARE_METHODS = (
    "start", "asha+hyperopt", "asha+random", "asha+de", "hyperband+bohb", "pbt+random",
    "fifo+random", "grid",
)  # fmt: skip
# What `compare` runs unless --methods says otherwise: the yardstick and one method per
# searcher (journal entry 10).
COMPARE_DEFAULT = (
    "start", "hyperband+bohb", "pbt+random", "asha+de", "asha+hyperopt", "asha+random",
)  # fmt: skip

METRIC = "val_accuracy"  # what ASHA and HyperOpt optimise
MODE = "max"
METRICS = {"val_accuracy": "max", "val_loss": "min", "train_loss": "min"}  # analysable, best


def method_problem(searcher: str, scheduler: str, space: dict[str, Any]) -> str | None:
    """Why --searcher cannot go with --scheduler (or with the search space), or None."""
    pairs = (("searcher", searcher, scheduler), ("scheduler", scheduler, searcher))
    for flag, name, other in pairs:
        partner, why = PAIRED.get(name, (other, ""))
        if partner != other:
            return (
                f"--{flag} {name} needs {partner} as its partner, got {other} ({why}). Leave the "
                f"partner flag out and it follows."
            )
    if scheduler == "pbt" and not set(PBT_MUTABLE) & set(space):
        return f"--scheduler pbt mutates {', '.join(PBT_MUTABLE)}, but the space searches none."
    return None


def resolve_method(searcher: str | None, scheduler: str | None) -> tuple[str, str]:
    """The searcher and scheduler from what was typed (None: not typed): the partner of a
    paired method follows (--searcher bohb alone means hyperband), the rest are the defaults."""
    if searcher is None and scheduler in PAIRED:
        searcher = PAIRED[scheduler][0]
    if scheduler is None and searcher in PAIRED:
        scheduler = PAIRED[searcher][0]
    return searcher or RunSettings.searcher, scheduler or RunSettings.scheduler


def asha_rungs(max_epochs: int, grace_period: int, reduction_factor: int) -> tuple[int, ...]:
    """The epochs below max_epochs at which ASHA may stop a trial: grace_period *
    reduction_factor^k, as in Ray's single bracket (tests/test_progress.py checks Ray's own)."""
    rungs, rung = [], grace_period
    while rung < max_epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return tuple(rungs)


def scheduler_rungs(
    scheduler: str, max_epochs: int, grace_period: int, reduction_factor: int
) -> tuple[int, ...]:
    """The epochs at which `scheduler` may stop a trial (HyperBand: in its most aggressive
    bracket); none for one that never stops a trial."""
    first = SCHEDULER_TRAITS[scheduler].first_rung
    if first is None:
        return ()
    return asha_rungs(max_epochs, grace_period if first == "grace_period" else 1, reduction_factor)


def inference_size(image_size: int, factor: float = INFERENCE_SIZE_FACTOR) -> int:
    """The side, in px, a model trained at `image_size` is applied at (within the cache's
    limit); recorded in its checkpoints and model file (src.data.TrialData.applying_state)."""
    return min(round(image_size * factor), MAX_IMAGE_SIZE)


def tracking_uri(typed: str) -> str:
    """--mlflow's value as a tracking URI: a URI as typed (http://host:port), a SQLite file's
    made absolute (so that --resume from another folder finds the same store), none: the local
    store (a SQLite file under logs/, no server)."""
    sqlite = "sqlite:///"
    if typed and not typed.startswith(sqlite):
        return typed
    path = Path(typed.removeprefix(sqlite)) if typed else LOCAL_TRACKING_STORE / "mlflow.db"
    return f"{sqlite}{path.resolve()}"


def value_type(name: str) -> type:
    """The type of hyperparameter `name`'s values (one of SEARCHABLE)."""
    return int if name == "image_size" else type(DEFAULT_START[name])


def parse_value(name: str, text: str) -> Any:
    """A value for hyperparameter `name`, typed like its DEFAULT_START value."""
    kind = value_type(name)
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise HypertuneError(f"{name} takes true or false, got {text!r}")
        return text.lower() == "true"
    try:
        return kind(text)
    except ValueError:
        raise HypertuneError(f"{name} takes {kind.__name__} values, got {text!r}") from None


def parse_assignment(text: str, many: bool) -> tuple[str, Any]:
    """NAME=VALUE (or NAME=V1,V2,... when `many`) for a known hyperparameter."""
    name, _, values = text.partition("=")
    if name not in SEARCHABLE or not values:
        raise HypertuneError(
            f"{text!r} is not NAME=VALUE{',...' if many else ''} for a known hyperparameter; "
            f"the names are {', '.join(SEARCHABLE)}"
        )
    parsed = [parse_value(name, v) for v in values.split(",")]
    return name, parsed if many else parsed[0]


def trial_config_problem(config: dict[str, Any], image_size: int) -> str | None:
    """Why the CNN of `config` (src/model.py) cannot be built or trained at `image_size`, or
    None. Checked before Ray starts: one clear message instead of a trial crashing on a worker."""
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        return f"image_size must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} px, got {image_size}."
    layers = config["num_conv_layers"]
    if layers < 1 or image_size < 2**layers:
        return (
            f"num_conv_layers={layers} does not fit {image_size} px images: each block halves "
            f"the image, so {layers} blocks need at least {2 ** max(layers, 1)} px (1 to "
            f"{image_size.bit_length() - 1} blocks fit)."
        )
    if (block := block_of(config)) not in BLOCKS:
        return f"block must be one of {', '.join(BLOCKS)}, got {block!r}."
    if block == "inception" and config["start_filters"] < 4:
        return (
            f"an inception block needs start_filters of 4 or more, got {config['start_filters']}."
        )
    if config["kernel_size"] < 1 or config["kernel_size"] % 2 == 0:
        return f"kernel_size must be odd and positive, got {config['kernel_size']}."
    if not 0 <= config["dropout"] < 1:
        return f"dropout must be in [0, 1), got {config['dropout']}."
    positive = ("start_filters", "fc_units", "batch_size", "lr")
    if bad := [f"{k}={config[k]}" for k in positive if not config[k] > 0]:
        return f"{', '.join(bad)}: these must be positive."
    if config["weight_decay"] < 0:
        return f"weight_decay cannot be negative, got {config['weight_decay']}."
    if not 0 < (crop := config["crop_scale"]) <= 1:
        return f"crop_scale (a share of the image's area) must be in (0, 1], got {crop}."
    if not 0 <= (side := config["cutout"]) < 1:
        return f"cutout (a share of the image's side) must be in [0, 1), got {side}."
    return None


def start_point(settings: RunSettings) -> dict[str, Any] | None:
    """The starting configuration's values of the searched hyperparameters: where every search
    starts, and the yardstick its best trial is measured against. None where the space (a
    --space file) does not contain it."""
    space, start = settings.space, start_config(settings)
    point = {name: start[name] for name in space}
    inside = all(
        point[name] in args if kind == "choice" else args[0] <= point[name] <= args[1]
        for name, (kind, args) in space.items()
    )
    return point if inside else None


def start_config(settings: RunSettings) -> dict[str, Any]:
    """The starting configuration of a run: DEFAULT_START at --image-size, with what --set pinned.
    Every search begins with it, and its trial is the yardstick of the rest."""
    return {**DEFAULT_START, "image_size": settings.image_size, **settings.fixed}


def is_start_point(config: dict[str, Any], point: dict[str, Any] | None) -> bool:
    """Whether a trial's `config` is the starting point (floats compared to a relative 1e-9: a
    searcher may hand DEFAULT_START's values back through its own number types)."""
    if point is None:
        return False
    config = current_config(config)
    return all(
        math.isclose(config[k], v, rel_tol=1e-9) if isinstance(v, float) else config[k] == v
        for k, v in point.items()
    )


def first_problem(*checks: str | None) -> str | None:
    return next((problem for problem in checks if problem), None)


def at_least(flag: str, value: int, low: int = 1) -> str | None:
    return f"--{flag} must be at least {low}, got {value}." if value < low else None


def image_size_problem(flag: str, size: int | None) -> str | None:
    if size is not None and size < MIN_IMAGE_SIZE:
        return (
            f"--{flag} must be at least {MIN_IMAGE_SIZE} px (4 conv blocks halve it 4 times), "
            f"got {size}."
        )
    if size is not None and size > MAX_IMAGE_SIZE:
        return (
            f"--{flag} must be at most {MAX_IMAGE_SIZE} px, got {size}: every image is decoded "
            f"into the cache at that size ({3 * MAX_IMAGE_SIZE**2 // 1024} KiB each at "
            f"{MAX_IMAGE_SIZE} px) and trained at it, {(MAX_IMAGE_SIZE // 64) ** 2}x the work "
            f"of 64 px, while this CNN's at most 4 pooling blocks gain little from more pixels."
        )
    return None


def searched_size_problem(space: dict[str, Any]) -> str | None:
    """Why the space cannot search image_size as it says, or None: every size is an image
    cache of its own, decoded before the search starts, so only a list of sizes will do."""
    kind, values = space.get("image_size", ("choice", [64]))
    if kind != "choice" or not all(type(v) is int for v in values):  # bool is an int too
        return f"image_size is searched as a choice of whole pixel sizes only, got {kind} {values}."
    return None


def name_taken(name: str, storage_path: Path) -> str:
    """The refusal of a new experiment whose folder exists: nothing of another run is touched."""
    return (
        f"An experiment named {name!r} already exists in {storage_path}. Choose another --name, "
        f"or move the old folder away."
    )


@dataclass(frozen=True)
class DataSpec:
    """What a trial needs to find its data; small, so Ray ships it to every trial and node. The
    side the images are read at is a trial's (config["image_size"]): one carrier, from the
    settings (start_config) or the space, through the trial to its checkpoint and model file."""

    root: Path  # the folder whose sub-folders are the classes, or the splits (src/images.py)


@dataclass(frozen=True)
class RunSettings:
    """Experiment-level settings: the same for every trial of one experiment (image_size: the
    starting configuration's, and every trial's unless the space or --set says otherwise)."""

    name: str  # experiment folder under storage_path
    storage_path: Path  # where Ray writes results (absolute)
    data_dir: Path | None  # folder of <class>/*.jpg; None = Flowers via mads_datasets
    image_size: int = 64  # square side in px; 64 keeps CPU trials at minutes, not hours
    num_samples: int | None = 10  # trials to run; None: as many as the time budget allows
    max_epochs: int = 10  # epochs of a trial that ASHA never stops
    grace_period: int = 2  # epochs every trial gets before ASHA may stop it
    reduction_factor: int = 3  # ASHA keeps the top 1/reduction_factor at each rung
    gpus_per_trial: float = 0.5  # two trials share one GPU
    cpus_per_trial: int = 1  # also the torch thread count of a trial
    seed: int = 0  # seeds the searcher and every trial's torch/numpy
    max_failures: int = 1  # retries of a trial that raised, from its last checkpoint
    address: str | None = None  # existing Ray cluster, or None for a local one
    refit: bool = True  # train the final model after a search (--no-refit: False)
    refit_epochs: int | None = DEFAULT_REFIT_EPOCHS  # final model; None: what the budget leaves
    time_budget: float | None = None  # minutes for search + final model; None: no limit
    search_share: float = 0.4  # of a time budget, what the search may use; 0: no search
    refit_image_size: int | None = None  # the final model's image size; None: the chosen trial's
    final_weights: str = "raw"  # what the final model file holds: one of FINAL_WEIGHTS
    ensemble: int = 1  # networks of the model file: the final model and the best K-1 trials
    verbose: bool = False  # Ray's own console output instead of hypertune's progress line
    searcher: str = "hyperopt"  # proposes configurations: one of SEARCHERS
    scheduler: str = "asha"  # stops (asha, hyperband) or mutates (pbt) trials: SCHEDULERS
    space: dict[str, Any] = field(default_factory=lambda: dict(SEARCH_SPACE))  # --space FILE
    fixed: dict[str, Any] = field(default_factory=dict)  # --set NAME=VALUE: pinned, not searched
    mlflow: str | None = None  # MLflow tracking URI (--mlflow, src/tracking.py); None: not tracked

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSettings:
        paths = {k: Path(values[k]) if values[k] else None for k in ("storage_path", "data_dir")}
        return cls(**{**values, **paths})

    def problems(self, grid: Grid | None = None) -> str | None:
        """The first reason these settings cannot run (with `grid`, as that grid), or None.
        Ranges first, then how values combine, then every trial configuration the model must
        build. The messages name the command-line flags that set each value."""
        counts = ("max_epochs", "cpus_per_trial", "num_samples", "grace_period", "refit_epochs",
                  "ensemble")  # fmt: skip
        counted = [name for name in counts if getattr(self, name) is not None]
        return first_problem(
            self.budget_problem(),
            (
                f"--max-failures cannot be negative, got {self.max_failures}."
                if self.max_failures < 0
                else None
            ),
            *(at_least(name.replace("_", "-"), getattr(self, name)) for name in counted),
            self.grace_problem() if grid is None else None,
            at_least("reduction-factor", self.reduction_factor, 2),
            (
                f"--gpus-per-trial must be 0 or more, got {self.gpus_per_trial}."
                if not 0 <= self.gpus_per_trial < math.inf
                else None
            ),
            image_size_problem("image-size", self.image_size),
            image_size_problem("refit-image-size", self.refit_image_size),
            (
                None
                if self.final_weights in FINAL_WEIGHTS
                else f"--final-weights must be one of {', '.join(FINAL_WEIGHTS)}, "
                f"got {self.final_weights!r}."
            ),
            (
                None
                if re.fullmatch(NAME_PATTERN, self.name)
                else (
                    f"--name may hold letters, digits, '_', '.', '+' and '-' only, "
                    f"got {self.name!r}."
                )
            ),
            method_problem(self.searcher, self.scheduler, self.space) if grid is None else None,
            searched_size_problem(self.space) if grid is None else None,
            self.configs_problem(grid),
        )

    def budget_problem(self) -> str | None:
        if self.time_budget is None:
            if self.num_samples is None or self.refit_epochs is None:
                return "Without --time-budget, give --num-samples and --refit-epochs."
            if self.search_share == 0:  # the share splits a budget; without one it means nothing
                return (
                    "--search-share 0 (no search) needs a --time-budget to train the starting "
                    "configuration for; without a budget, --num-samples decides the search."
                )
            return None
        if not 0 < self.time_budget < math.inf:
            return f"--time-budget must be a positive number of minutes, got {self.time_budget}."
        if not 0 <= self.search_share < 1 and self.refit:
            return (
                f"--search-share must be at least 0 and below 1, got {self.search_share}: the "
                f"final model needs the rest of the time (--no-refit: none)."
            )
        if self.search_share == 0 and not self.refit:
            return "--search-share 0 with --no-refit leaves nothing to do: no search, no model."
        return None

    def grace_problem(self) -> str | None:
        if self.grace_period > self.max_epochs:
            return (
                f"--grace-period ({self.grace_period}) cannot exceed --max-epochs "
                f"({self.max_epochs}): no trial would ever reach it."
            )
        return None

    def configs_problem(self, grid: Grid | None) -> str | None:
        """The first trial configuration the model cannot train, or None: every cell of a grid;
        for a search, the pinned values with each choice and each range bound of the space."""
        if grid is None:
            start = start_config(self)
            values = [(k, v) for k, (_, options) in self.space.items() for v in options]
            configs = [{**start, k: v} for k, v in values] or [start]  # [start]: all pinned
            # Depth and size limit each other: the deepest network at the smallest size.
            _, depths = self.space.get("num_conv_layers", ("choice", [start["num_conv_layers"]]))
            smallest = min(self.searched_sizes() or [start["image_size"]])
            configs.append({**start, "num_conv_layers": max(depths), "image_size": smallest})
            # Inception splits a block's channels four ways: the fewest filters with it.
            _, blocks = self.space.get("block", ("choice", [start["block"]]))
            _, filters = self.space.get("start_filters", ("choice", [start["start_filters"]]))
            if "inception" in blocks:
                configs.append({**start, "block": "inception", "start_filters": min(filters)})
        else:
            configs = grid.configs(self.image_size)
        refit_sizes = [self.refit_image_size] if self.refit_image_size else []
        problems = (
            trial_config_problem(c, size)
            for c in configs
            for size in [c["image_size"], *refit_sizes]
        )
        return first_problem(*problems)

    def image_sizes(self, grid: Grid | None = None) -> list[int]:
        """Every image size a trial of this run (as `grid`, if given) may train at (with the
        final model's, src.pipeline.cached_sizes: those decoded before any trial starts)."""
        configs = grid.configs(self.image_size) if grid else [start_config(self)]
        searching = grid is None and not (self.time_budget and self.search_share == 0)
        searched = self.searched_sizes() if searching else []
        return sorted({*(c["image_size"] for c in configs), *searched})

    @property
    def budget_seconds(self) -> float:
        """--time-budget in seconds: the one place minutes become seconds."""
        assert self.time_budget is not None, "a run without a time budget has no seconds"
        return self.time_budget * 60

    def rungs(self) -> tuple[int, ...]:
        """The epochs at which this run's scheduler may stop a trial (config.scheduler_rungs)."""
        return scheduler_rungs(
            self.scheduler, self.max_epochs, self.grace_period, self.reduction_factor
        )

    def searched_sizes(self) -> list[int]:
        """The image sizes the space chooses from; empty where it does not search image_size."""
        return list(self.space.get("image_size", ("choice", []))[1])


@dataclass(frozen=True)
class Grid:
    """A fixed-epoch grid: two hyperparameters varied, every other one fixed."""

    axes: dict[str, list[Any]]  # exactly two names (x first, then y) -> values to try
    repeats: int = 1  # seeds per cell: seed, seed + 1, ...
    fixed: dict[str, Any] = field(default_factory=dict)  # overrides of DEFAULT_START
    chosen: str = ""  # why these axes, where hypertune chose them (grid --from-experiment alone)

    def base(self, image_size: int) -> dict[str, Any]:
        """What every cell shares: DEFAULT_START at `image_size`, with the grid's fixed values."""
        return {**DEFAULT_START, "image_size": image_size, **self.fixed}

    def configs(self, image_size: int) -> list[dict[str, Any]]:
        """Every cell's hyperparameters, at `image_size` unless the grid sets it."""
        cells = itertools.product(*self.axes.values())
        return [{**self.base(image_size), **dict(zip(self.axes, c, strict=True))} for c in cells]

    def problems(self) -> str | None:
        if len(self.axes) < 2:
            return f"--x and --y must name two different hyperparameters, got {list(self.axes)}."
        return at_least("repeats", self.repeats)


@dataclass(frozen=True)
class Comparison:
    """`hypertune.py compare`: search methods side by side on one search space, each run
    `seeds` times, every run stopped once its trials have trained `budget` epochs in all."""

    methods: tuple[str, ...] = COMPARE_DEFAULT
    seeds: int = 3  # runs of every method: seeds seed, seed + 1, ...
    budget: int = 40  # training epochs per run, every epoch of every trial counted

    def problems(self, max_epochs: int) -> str | None:
        """Why the comparison cannot run with trials of `max_epochs`, or None."""
        if unknown := set(self.methods) - set(COMPARE_METHODS):
            names = ", ".join(COMPARE_METHODS)
            return f"Unknown method(s) {', '.join(sorted(unknown))}; choose from {names}."
        if self.budget < max_epochs:
            return (
                f"--budget {self.budget} epochs cannot pay for one full trial of --max-epochs "
                f"{max_epochs}; raise --budget or lower --max-epochs."
            )
        return at_least("seeds", self.seeds)
