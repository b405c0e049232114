"""Oxford-IIIT Pets (37 breeds): ``oxford_pets/{images,annotations}`` + ``split_zhou_OxfordPets.json``."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .base import BenchmarkDataset, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(BenchmarkDataset):
    """Oxford-IIIT Pets; a generated split holds out 20% of trainval per class as val."""

    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    split_gdrive_id = "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"

    def read_annotation_list(self, list_name):
        """Items of ``annotations/<list_name>`` (``<image stem> <class id 1..37> <species> <breed id>``)."""
        items = []
        for line in self.read_text_lines("annotations", list_name):
            image_stem, class_id = line.split()[:2]
            breed = image_stem.rsplit("_", 1)[0].lower()
            impath = os.path.join(self.image_dir, image_stem + ".jpg")
            items.append(Datum(impath=impath, label=int(class_id) - 1, classname=breed))
        return items

    def build_full_split(self):
        """trainval.txt split 80/20 per class into train/val; test.txt as test."""
        trainval = self.read_annotation_list("trainval.txt")
        test = self.read_annotation_list("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test
