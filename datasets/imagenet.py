"""ImageNet-1k: ``imagenet/images/{train,val}/<wnid>/`` + ``imagenet/classnames.txt``."""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .base import (
    ImageNetStyleDataset,
    items_to_records,
    read_json,
    read_labelled_folders,
    records_to_items,
    write_json,
)


@DATASET_REGISTRY.register()
class ImageNet(ImageNetStyleDataset):
    """ImageNet; the official val set is the test set and also serves as validation.

    Labels follow the sorted wnid folders of ``images/train``. The folder listing
    is cached in ``preprocessed.json`` (JSON, never pickle); delete it after
    changing the image folders. Few-shot sampling applies to train only.
    """

    dataset_dir = "imagenet"
    image_subdir = "images"
    samples_few_shot = True
    val_is_test = True
    listing_cache_name = "preprocessed.json"

    def build_full_split(self):
        """train/ and val/ folder listings (from the JSON cache when present)."""
        cache_path = os.path.join(self.dataset_dir, self.listing_cache_name)
        if os.path.isfile(cache_path):
            cached = read_json(cache_path)
            name = os.path.basename(cache_path)
            train = records_to_items(cached.get("train"), self.image_dir, f"{name}[train]")
            test = records_to_items(cached.get("test"), self.image_dir, f"{name}[test]")
            return train, None, test

        classnames = self.read_folder_names()
        folders = self.class_folders(classnames, os.path.join(self.image_dir, "train"))
        val_dir = os.path.join(self.image_dir, "val")
        train_folders = {folder for folder, _ in folders}
        extra = [folder for folder, _ in self.class_folders(classnames, val_dir) if folder not in train_folders]
        if extra:
            raise ValueError(f"{self.name}: class folder(s) {extra[:5]} of {val_dir} are not in images/train")
        train = read_labelled_folders(os.path.join(self.image_dir, "train"), folders)
        test = read_labelled_folders(val_dir, folders)
        try:
            write_json(
                {"train": items_to_records(train, self.image_dir), "test": items_to_records(test, self.image_dir)},
                cache_path,
            )
        except OSError as err:
            print(f"Warning: could not cache the ImageNet listing at {cache_path}: {err}")
        return train, None, test
