"""ImageNetV2 (test only): ``imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/`` + ``classnames.txt``."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import ImageNetStyleDataset


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetStyleDataset):
    """ImageNetV2 matched-frequency; folder ``<i>`` holds class i of ``classnames.txt``."""

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"

    def class_folders(self, classnames, image_dir=None):
        """Folders ``0``, ``1``, ... named after the classes in ``classnames.txt`` order."""
        return [(str(label), classname) for label, classname in enumerate(classnames.values())]
