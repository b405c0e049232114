"""Stanford Cars (196 models): ``stanford_cars/{cars_train,cars_test,devkit}`` + ``split_zhou_StanfordCars.json``."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .base import BenchmarkDataset, load_mat, split_trainval


@DATASET_REGISTRY.register()
class StanfordCars(BenchmarkDataset):
    """Stanford Cars; split paths are relative to the dataset folder (``cars_train/00001.jpg``)."""

    dataset_dir = "stanford_cars"
    split_file = "split_zhou_StanfordCars.json"
    split_gdrive_id = "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"

    def read_annotations(self, image_subdir, anno_path, class_names):
        """Items listed in a cars ``*_annos.mat`` file; the class name starts with the model year."""
        annotations = load_mat(anno_path, self.name)["annotations"][0]
        items = []
        for annotation in annotations:
            label = int(annotation["class"][0, 0]) - 1
            words = str(class_names[label][0]).split(" ")
            classname = " ".join([words[-1]] + words[:-1])
            impath = os.path.join(self.dataset_dir, image_subdir, str(annotation["fname"][0]))
            items.append(Datum(impath=impath, label=label, classname=classname))
        return items

    def build_full_split(self):
        """devkit train annotations split 80/20 per class into train/val; labelled test annotations as test."""
        class_names = load_mat(os.path.join(self.dataset_dir, "devkit", "cars_meta.mat"), self.name)["class_names"][0]
        trainval = self.read_annotations(
            "cars_train", os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat"), class_names
        )
        test = self.read_annotations(
            "cars_test", os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), class_names
        )
        train, val = split_trainval(trainval)
        return train, val, test
