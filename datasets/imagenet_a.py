"""ImageNet-A (test only): ``imagenet-adversarial/imagenet-a/<wnid>/`` + ``classnames.txt``."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import ImageNetStyleDataset


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetStyleDataset):
    """ImageNet-A: its 200 classes are the label space, labels 0..199 in sorted wnid order."""

    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
