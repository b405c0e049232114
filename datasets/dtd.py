"""Describable Textures (47 classes): ``dtd/images/<class>/`` + ``split_zhou_DescribableTextures.json``."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import FolderPerClassBenchmark


@DATASET_REGISTRY.register()
class DescribableTextures(FolderPerClassBenchmark):
    """Describable Textures Dataset."""

    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    split_gdrive_id = "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"
