"""Prompt-learning trainers. Importing this package registers every trainer."""
from dassl.engine import TRAINER_REGISTRY

from . import bloom, bmip, cocoop, coop, ivlp, linear_probe, maple, zsclip  # noqa: F401  (registration side effect)
from . import coprompt, promptsrc  # noqa: F401,E402  (the regularizers)
from .base import apply_backbone_preprocessing  # noqa: F401  (train.py: INPUT of openclip: backbones)
from .composition import register_compositions

# <Regularizer>_<Base> for every regularizer and every prompting base registered above
register_compositions()


def add_trainer_configs(cfg):
    """Add every registered trainer's ``cfg.TRAINER.<NODE>`` with its defaults.

    Each trainer declares its own defaults (``extend_cfg``); collecting all of
    them lets any official YAML file, whatever trainer node it sets, merge.
    """
    for name in TRAINER_REGISTRY.registered_names():
        extend = getattr(TRAINER_REGISTRY.get(name), "extend_cfg", None)
        if extend is not None:
            extend(cfg)
    return cfg
