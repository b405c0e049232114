"""Config-driven image transforms (Dassl-compatible names)."""
from .transforms import (
    AVAI_CHOICES,
    INTERPOLATION_MODES,
    build_transform,
    input_size_from_cfg,
    interpolation_mode_from_cfg,
)

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "build_transform",
    "input_size_from_cfg",
    "interpolation_mode_from_cfg",
]
