"""Oxford Flowers-102: ``oxford_flowers/{jpg,imagelabels.mat,cat_to_name.json}`` + ``split_zhou_OxfordFlowers.json``."""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .base import BenchmarkDataset, load_mat, read_json, require_file, split_per_class


@DATASET_REGISTRY.register()
class OxfordFlowers(BenchmarkDataset):
    """Oxford Flowers-102; a generated split is 50/20/30 per class, classes in order of first appearance."""

    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    split_gdrive_id = "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"
    extra_gdrive_files = {"cat_to_name.json": "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"}

    def build_full_split(self):
        """Group ``image_XXXXX.jpg`` by the labels in imagelabels.mat and split each group."""
        labels = load_mat(os.path.join(self.dataset_dir, "imagelabels.mat"), self.name)["labels"][0]
        names_path = os.path.join(self.dataset_dir, "cat_to_name.json")
        require_file(names_path, self.name)
        label_to_name = read_json(names_path)
        impaths_by_label = {}
        for index, label in enumerate(labels):
            impath = os.path.join(self.image_dir, f"image_{index + 1:05d}.jpg")
            impaths_by_label.setdefault(int(label), []).append(impath)
        classes = [
            (label - 1, label_to_name[str(label)], impaths) for label, impaths in impaths_by_label.items()
        ]
        return split_per_class(classes)
