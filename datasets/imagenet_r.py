"""ImageNet-R (test only): ``imagenet-rendition/imagenet-r/<wnid>/`` + ``classnames.txt``."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import ImageNetStyleDataset


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetStyleDataset):
    """ImageNet-R: its 200 classes are the label space, labels 0..199 in sorted wnid order."""

    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
