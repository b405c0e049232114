"""Caltech-101: ``caltech-101/101_ObjectCategories/<class>/`` + ``split_zhou_Caltech101.json``."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import FolderPerClassBenchmark


@DATASET_REGISTRY.register()
class Caltech101(FolderPerClassBenchmark):
    """Caltech-101 without the background and easy-faces folders (100 classes), CoOp's names."""

    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    split_gdrive_id = "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"
    ignored_folders = ("BACKGROUND_Google", "Faces_easy")
    renamed_classes = {
        "airplanes": "airplane",
        "Faces": "face",
        "Leopards": "leopard",
        "Motorbikes": "motorbike",
    }
