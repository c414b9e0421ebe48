"""Everything a run can be configured with, as plain data.

`BASELINE` is one known-reasonable CNN (HyperOpt evaluates it first), `SEARCH_SPACE` is
what HyperOpt explores, and `RunSettings` holds the experiment-level knobs that the CLI sets.
Change the search in one place: `SEARCH_SPACE` below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# One trial's hyperparameters. These are the values HyperOpt tries first and the values a
# fixed-epoch grid uses for every hyperparameter it does not vary.
BASELINE: dict[str, Any] = {
    "num_conv_layers": 3,  # conv blocks; each halves the resolution (MaxPool 2x2)
    "start_filters": 32,  # channels of the first block, doubled per block
    "kernel_size": 3,  # conv kernel (odd, 'same' padding)
    "batchnorm": True,  # BatchNorm after each conv: faster, more stable optimisation
    "residual": True,  # a (1x1-projected) skip connection around each conv: +0.7 points (entry 7)
    "fc_units": 128,  # width of the hidden fully connected layer
    "dropout": 0.3,  # dropout before the output layer
    "lr": 3e-3,  # peak AdamW learning rate (cosine-annealed to 0 over max_epochs)
    "weight_decay": 5e-4,  # decoupled AdamW weight decay: the main regulariser on 2.3k images
    "batch_size": 32,  # images per optimiser step
    "label_smoothing": 0.1,  # target mass spread over the other classes (journal entry 5)
    "jitter": 0.0,  # colour jitter: brightness/contrast/saturation x U(1 -/+ jitter); 0 = off,
    # as colour is what tells these flowers apart: 0.3 cost 2-4 points (journal entry 5)
}

# Learning-rate warm-up (linear, in epochs) before the per-step cosine decay to 0.
WARMUP_EPOCHS = 1


# What HyperOpt (TPE) searches. Values are (kind, arguments):
#   choice -> categorical, uniform / loguniform -> (low, high). Keys not listed keep BASELINE.
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

# Files of an experiment folder (logs/ray_results/<name>/) that hypertune itself writes.
EXPERIMENT_INFO = "hypertune.json"  # search or grid, its settings and data: for analysis, resume
SUMMARY_FILE = "experiment_summary.csv"  # one row per trial; written only once all finished
CHECKPOINT_FILE = "checkpoint.pt"  # inside each trial's checkpoint_* folders
MODEL_FILE = "final_model.pt"  # the refit model: one file, all that `predict` needs
MODEL_FORMAT = "hypertune-model/1"  # stored in MODEL_FILE; tells it apart from other .pt files

# Every value a trial's config holds: the hyperparameters and the seed of its torch/numpy RNGs.
HYPERPARAMETERS = [*BASELINE, "seed"]

# Presets of `search` (--preset NAME): values for flags the user did not type. Wall times are
# for 2 CPU cores and the Flowers copy (README, Measured).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},  # the RunSettings defaults: 10 min 56 s on Flowers (journal entry 8)
    # Twice the trials, twice as long, judged later (ASHA's epoch-2 rung stopped the baseline:
    # entry 6), and a final model trained twice as long. 64 px: 96 px did not pay (entry 7).
    "long": {"num_samples": 20, "max_epochs": 20, "grace_period": 4, "refit_epochs": 80},
    # --smoke-test: generated images, checks an installation in well under a minute
    "smoke": {
        "num_samples": 4,
        "max_epochs": 3,
        "grace_period": 1,
        "image_size": 32,
        "refit_epochs": 2,
    },
}

# How `search` proposes configurations (--searcher) and stops or changes trials (--scheduler);
# src/search.py says what each one is. Default: ASHA + HyperOpt.
SEARCHERS = ("hyperopt", "random", "de", "bohb")
SCHEDULERS = ("asha", "fifo", "pbt", "hyperband")
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

# Search methods of `hypertune.py compare`: scheduler+searcher pairs as above, and a grid.
COMPARE_METHODS = (
    "asha+hyperopt", "asha+random", "asha+de", "hyperband+bohb", "pbt+random", "fifo+random",
    "grid",
)  # fmt: skip
# What `compare` runs unless --methods says otherwise: one per searcher (journal entry 10).
COMPARE_DEFAULT = ("hyperband+bohb", "pbt+random", "asha+de", "asha+hyperopt", "asha+random")

METRIC = "val_accuracy"  # what ASHA and HyperOpt optimise
MODE = "max"


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


@dataclass(frozen=True)
class RunSettings:
    """Experiment-level settings: the same for every trial of one experiment."""

    name: str  # experiment folder under storage_path
    storage_path: Path  # where Ray writes results (absolute)
    data_dir: Path | None  # folder of <class>/*.jpg; None = Flowers via mads_datasets
    image_size: int = 64  # square side in px; 64 keeps CPU trials at minutes, not hours
    num_samples: int = 10  # trials HyperOpt proposes
    max_epochs: int = 10  # epochs of a trial that ASHA never stops
    grace_period: int = 2  # epochs every trial gets before ASHA may stop it
    reduction_factor: int = 3  # ASHA keeps the top 1/reduction_factor at each rung
    gpus_per_trial: float = 0.5  # two trials share one GPU
    cpus_per_trial: int = 1  # also the torch thread count of a trial
    seed: int = 0  # seeds HyperOpt and every trial's torch/numpy
    max_failures: int = 1  # retries of a trial that raised, from its last checkpoint
    address: str | None = None  # existing Ray cluster, or None for a local one
    refit_epochs: int = 40  # epochs of the final model on train + val; 0 = no refit
    refit_image_size: int | None = None  # the final model's image size; None = image_size
    verbose: bool = False  # Ray's own console output instead of hypertune's progress line
    searcher: str = "hyperopt"  # proposes configurations: one of SEARCHERS
    scheduler: str = "asha"  # stops (asha, hyperband) or mutates (pbt) trials: SCHEDULERS
    space: dict[str, Any] = field(default_factory=lambda: dict(SEARCH_SPACE))  # --space FILE
    fixed: dict[str, Any] = field(default_factory=dict)  # --set NAME=VALUE: pinned, not searched

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSettings:
        paths = {k: Path(values[k]) if values[k] else None for k in ("storage_path", "data_dir")}
        return cls(**{**values, **paths})


@dataclass(frozen=True)
class Grid:
    """A fixed-epoch grid: two hyperparameters varied, every other one fixed."""

    axes: dict[str, list[Any]]  # exactly two names (x first, then y) -> values to try
    repeats: int = 1  # seeds per cell: seed, seed + 1, ...
    fixed: dict[str, Any] = field(default_factory=dict)  # overrides of BASELINE
