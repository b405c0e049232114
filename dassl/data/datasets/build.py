"""The dataset registry and the factory that turns ``cfg.DATASET.NAME`` into a dataset."""
from dassl.utils.registry import Registry

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    """Instantiate the dataset class registered as ``cfg.DATASET.NAME`` with ``cfg``.

    Dataset modules register themselves on import (``import datasets`` for the
    benchmarks), so import them before calling this. An unknown name raises a
    ``KeyError`` listing the closest registered names.
    """
    dataset_class = DATASET_REGISTRY.get(cfg.DATASET.NAME)
    if cfg.get("VERBOSE", False):
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return dataset_class(cfg)
