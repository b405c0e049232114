"""Config-driven image transforms (Dassl-compatible names); the default ones need no torchvision."""
from .transforms import (
    AVAI_CHOICES,
    INTERPOLATION_MODES,
    InterpolationMode,
    build_transform,
    input_size_from_cfg,
    interpolation_mode_from_cfg,
)

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "InterpolationMode",
    "build_transform",
    "input_size_from_cfg",
    "interpolation_mode_from_cfg",
]
