"""Optimizers and per-epoch learning-rate schedules built from ``cfg.OPTIM``."""
from .lr_scheduler import (
    AVAILABLE_SCHEDULERS,
    ConstantWarmupScheduler,
    CosineScheduler,
    EpochLRScheduler,
    LinearWarmupScheduler,
    MultiStepScheduler,
    SingleStepScheduler,
    build_lr_scheduler,
)
from .optimizer import AVAILABLE_OPTIMIZERS, build_optimizer
