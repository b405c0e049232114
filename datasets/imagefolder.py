"""Your own data: ``<ROOT>/<IMAGEFOLDER_DIR>/<class folder>/<image>``, split once and saved as JSON."""
import os
import random

from dassl.data.datasets import DATASET_REGISTRY

from .base import FEWSHOT_DIRNAME, BenchmarkDataset, read_and_split_data, read_classnames


@DATASET_REGISTRY.register()
class ImageFolder(BenchmarkDataset):
    """A folder-per-class image collection (``DATASET.NAME: ImageFolder``).

    The data folder is ``DATASET.ROOT/DATASET.IMAGEFOLDER_DIR`` (``ROOT`` itself
    when that key is empty). Labels follow the sorted class folder names; an
    optional ``classnames.txt`` (``<folder> <class name>`` per line) gives
    prompt-friendly names. On first use each class is split 50/20/30 into
    train/val/test with a fixed seed (independent of ``SEED``, so every run sees
    the same split) and the split is saved as ``split_imagefolder.json``; delete
    it to re-split after adding images.
    """

    split_file = "split_imagefolder.json"
    classnames_file = "classnames.txt"
    split_seed = 0

    def resolve_dataset_dir(self, cfg):
        """``ROOT/IMAGEFOLDER_DIR`` (an absolute IMAGEFOLDER_DIR is used as is)."""
        subdir = os.path.expanduser(cfg.DATASET.IMAGEFOLDER_DIR or "")
        return os.path.normpath(os.path.join(self.root, subdir))

    def build_full_split(self):
        """Split every class folder 50/20/30 with a private RNG seeded by ``split_seed``."""
        names_path = os.path.join(self.dataset_dir, self.classnames_file)
        renamed = read_classnames(names_path) if os.path.isfile(names_path) else {}
        return read_and_split_data(
            self.image_dir,
            ignored=(FEWSHOT_DIRNAME,),
            new_cnames=renamed,
            rng=random.Random(self.split_seed),
        )


ImageFolderDataset = ImageFolder
