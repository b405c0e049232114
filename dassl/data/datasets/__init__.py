"""Dassl's dataset API: ``Datum``, ``DatasetBase``, ``DATASET_REGISTRY``, ``build_dataset``."""
from .build import DATASET_REGISTRY, build_dataset
from .base_dataset import Datum, DatasetBase

__all__ = ["DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase"]
