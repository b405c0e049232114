"""Food-101: ``food-101/images/<class>/`` + ``split_zhou_Food101.json``."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import FolderPerClassBenchmark


@DATASET_REGISTRY.register()
class Food101(FolderPerClassBenchmark):
    """Food-101 (101 dishes)."""

    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    split_gdrive_id = "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"
