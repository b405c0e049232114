"""SUN397 scenes: ``sun397/{SUN397,ClassName.txt,Training_01.txt,Testing_01.txt}`` + ``split_zhou_SUN397.json``."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .base import BenchmarkDataset, label_of, split_trainval


@DATASET_REGISTRY.register()
class SUN397(BenchmarkDataset):
    """SUN397; class ``/a/apartment_building/outdoor`` is named ``outdoor apartment_building``."""

    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    split_gdrive_id = "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"

    def read_partition(self, file_name, class_to_label):
        """Items of a partition list (``/a/abbey/sun_xxx.jpg`` per line)."""
        items = []
        for relative_path in (line.lstrip("/") for line in self.read_text_lines(file_name)):
            class_path = os.path.dirname(relative_path)
            classname = " ".join(reversed(class_path.split("/")[1:]))
            impath = os.path.join(self.image_dir, relative_path)
            label = label_of(class_to_label, class_path, file_name, "ClassName.txt")
            items.append(Datum(impath=impath, label=label, classname=classname))
        return items

    def build_full_split(self):
        """Partition 01: Training_01 split 80/20 per class into train/val, Testing_01 as test."""
        class_names = [line.lstrip("/") for line in self.read_text_lines("ClassName.txt")]
        class_to_label = {name: label for label, name in enumerate(class_names)}
        trainval = self.read_partition("Training_01.txt", class_to_label)
        test = self.read_partition("Testing_01.txt", class_to_label)
        train, val = split_trainval(trainval)
        return train, val, test
