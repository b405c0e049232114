"""Data pipeline: datasets, transforms, samplers and the DataManager that ties them together."""
from .data_manager import DataManager, DatasetWrapper, build_data_loader

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader"]
