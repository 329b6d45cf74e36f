"""Training: settings, the loop core and its callbacks, the classifier's ``Trainer``."""

from fewlabels.train.config import TrainConfig, TrainingSettings, with_train_defaults
from fewlabels.train.engine import (
    BudgetClock,
    Callback,
    Checkpointing,
    CurveLog,
    EMAUpdate,
    LoopState,
    ProgressBar,
    ProgressCallback,
    run_loop,
)
from fewlabels.train.loop import FitResult, Trainer, barrier
from fewlabels.train.optim import build_optimizer
from fewlabels.train.sampling import IndexStream, count_images, mix_seed

__all__ = [
    "BudgetClock",
    "Callback",
    "Checkpointing",
    "CurveLog",
    "EMAUpdate",
    "FitResult",
    "IndexStream",
    "LoopState",
    "ProgressBar",
    "ProgressCallback",
    "TrainConfig",
    "Trainer",
    "TrainingSettings",
    "barrier",
    "build_optimizer",
    "count_images",
    "mix_seed",
    "run_loop",
    "with_train_defaults",
]
