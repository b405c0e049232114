"""FGVC-Aircraft (100 variants): ``fgvc_aircraft/{images,variants.txt,images_variant_*.txt}``."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .base import BenchmarkDataset, label_of


@DATASET_REGISTRY.register()
class FGVCAircraft(BenchmarkDataset):
    """FGVC-Aircraft variants; the dataset's own train/val/test lists are the split (no JSON)."""

    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"

    def read_variant_list(self, file_name, variant_to_label):
        """Items of an ``images_variant_<split>.txt`` list (``<image id> <variant name>``)."""
        items = []
        for line in self.read_text_lines(file_name):
            image_id, _, variant = line.partition(" ")
            impath = os.path.join(self.image_dir, image_id + ".jpg")
            label = label_of(variant_to_label, variant, file_name, "variants.txt")
            items.append(Datum(impath=impath, label=label, classname=variant))
        return items

    def build_full_split(self):
        """Labels follow variants.txt; train/val/test come from the matching lists."""
        variant_to_label = {variant: label for label, variant in enumerate(self.read_text_lines("variants.txt"))}
        return tuple(
            self.read_variant_list(f"images_variant_{split}.txt", variant_to_label)
            for split in ("train", "val", "test")
        )
