"""Trainer registry and construction."""
from dassl.utils.registry import Registry

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg):
    """Instantiate the trainer named by ``cfg.TRAINER.NAME``.

    An unknown name raises ``KeyError`` listing close matches and every
    registered trainer.
    """
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return trainer_cls(cfg)
