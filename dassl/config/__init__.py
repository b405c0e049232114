"""Configuration entry point: ``get_cfg_default()`` returns a fresh copy of Dassl's defaults."""
from .defaults import _C as _DEFAULT_CFG

__all__ = ["get_cfg_default"]


def get_cfg_default():
    """Return a new, mutable yacs ``CfgNode`` holding every default key (never the shared original)."""
    return _DEFAULT_CFG.clone()
