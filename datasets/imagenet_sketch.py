"""ImageNet-Sketch (test only): ``imagenet-sketch/images/<wnid>/`` + ``classnames.txt``."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import ImageNetStyleDataset


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetStyleDataset):
    """ImageNet-Sketch (1000 classes, labels in sorted wnid order)."""

    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
