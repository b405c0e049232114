"""What every benchmark dataset shares: split files, split rules, few-shot caching, base/new classes.

A benchmark is a ``BenchmarkDataset`` subclass that names its folders and split
file and says how to build its full train/val/test lists from the raw data
(``build_full_split``). The base class then runs CoOp's pipeline in CoOp's
order: full split -> few-shot sampling (global ``random``, already seeded by the
trainer) -> base/new class subsampling -> ``DatasetBase``.

Split and few-shot files are JSON ``{"train"|"val"|"test": [[relative_path,
label, classname], ...]}`` with paths relative to the dataset's image folder,
the format of CoOp's ``split_zhou_*.json``.
"""
import math
import os
import random
from collections import OrderedDict

from dassl.data.datasets import Datum, DatasetBase
from dassl.utils.tools import read_json, write_json

SPLIT_NAMES = ("train", "val", "test")
FEWSHOT_DIRNAME = "split_fewshot"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
LAYOUT_DOC = "docs/DATASETS.md"
MAX_MISSING_SHOWN = 5
# CoOp's copy of CLIP's ImageNet class names, shared by ImageNet and its variants.
IMAGENET_CLASSNAMES_GDRIVE_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"


# ----------------------------------------------------------------------------------------------
# Split records <-> Datum
# ----------------------------------------------------------------------------------------------
def items_to_records(items, path_prefix):
    """Turn Datum items into ``[relative_path, label, classname]`` records."""
    return [[os.path.relpath(item.impath, path_prefix), item.label, item.classname] for item in items]


def records_to_items(records, path_prefix, source):
    """Turn ``[relative_path, label, classname]`` records into Datum items.

    ``source`` (e.g. ``"split_zhou_EuroSAT.json[train]"``) names the records in errors.
    """
    if not isinstance(records, list):
        raise ValueError(f"{source}: expected a list of [path, label, classname], got {type(records).__name__}")
    items = []
    for index, record in enumerate(records):
        if not (isinstance(record, (list, tuple)) and len(record) == 3):
            raise ValueError(f"{source}: entry {index} is {record!r}, expected [path, label, classname]")
        relative_path, label, classname = record
        try:
            label = int(label)
        except (TypeError, ValueError):
            raise ValueError(f"{source}: entry {index} has a non-integer label {label!r}") from None
        items.append(Datum(impath=os.path.join(path_prefix, relative_path), label=label, classname=classname))
    return items


def save_split(train, val, test, filepath, path_prefix):
    """Save train/val/test Datum lists as a CoOp split JSON with paths relative to ``path_prefix``."""
    split = {name: items_to_records(items, path_prefix) for name, items in zip(SPLIT_NAMES, (train, val, test))}
    write_json(split, filepath)
    print(f"Saved split to {filepath}")


def read_split(filepath, path_prefix):
    """Read a CoOp split JSON; return ``(train, val, test)`` Datum lists with paths under ``path_prefix``."""
    split = read_json(filepath)
    missing_keys = [name for name in SPLIT_NAMES if name not in split]
    if missing_keys:
        raise ValueError(f"{filepath}: missing key(s) {missing_keys}; a split needs 'train', 'val' and 'test'")
    name = os.path.basename(filepath)
    splits = tuple(records_to_items(split[key], path_prefix, f"{name}[{key}]") for key in SPLIT_NAMES)
    check_label_space(splits, [f"{filepath}[{key}]" for key in SPLIT_NAMES])
    return splits


def check_label_space(splits, sources):
    """Check that the labelled ``splits`` (train first) share one label space; raise a
    ``ValueError`` naming the file, the record and the conflict otherwise.

    The training labels must be exactly 0..C-1 (C classes, each present), every label must have
    one class name and every class name one label, the same in every split, and the other
    splits may only use the training labels. A wrong label would otherwise silently grow the
    model by a class, rename a class in every prompt, or lower the accuracy.
    """
    name_of, first_seen, label_of = {}, {}, {}
    for split_index, (items, source) in enumerate(zip(splits, sources)):
        for index, item in enumerate(items or ()):
            label, classname = item.label, item.classname
            where = f"{source} entry {index}"
            if label not in name_of:
                if split_index > 0:
                    raise ValueError(f"{where}: label {label} is not one of the training labels 0..{len(name_of) - 1} "
                                     f"of {sources[0]}")
                if classname in label_of:
                    raise ValueError(f"{where}: class {classname!r} has label {label}, but {label_of[classname]} in "
                                     f"{first_seen[label_of[classname]]}; one class name, one label")
                name_of[label], first_seen[label], label_of[classname] = classname, where, label
            elif name_of[label] != classname:
                raise ValueError(f"{where}: label {label} is named {classname!r}, but {name_of[label]!r} in "
                                 f"{first_seen[label]}; one label, one class name")
        if split_index == 0 and name_of:
            labels = sorted(name_of)
            if labels != list(range(len(labels))):
                missing = sorted(set(range(labels[-1] + 1)) - set(labels))
                problem = (f"label {labels[0]} is negative" if labels[0] < 0 else
                           f"label {labels[-1]} is used but label {missing[0]} has no record")
                raise ValueError(f"{source}: {problem}; the training labels must be 0..C-1 with every class "
                                 f"present (found {len(labels)} labels from {labels[0]} to {labels[-1]})")


# ----------------------------------------------------------------------------------------------
# Split rules (CoOp's), all drawing from the global ``random`` unless given an ``rng``
# ----------------------------------------------------------------------------------------------
def split_trainval(trainval, p_val=0.2):
    """Split ``trainval`` per class into train and val (CoOp's OxfordPets rule).

    Classes are visited in order of first appearance; each class's items are
    shuffled and the first ``round(n * p_val)`` go to val.
    """
    by_label = DatasetBase._group_by(trainval, lambda item: item.label)
    train, val = [], []
    for label, items in by_label.items():
        n_val = round(len(items) * p_val)
        if n_val == 0:
            raise ValueError(
                f"class {items[0].classname!r} (label {label}) has {len(items)} train+val item(s), "
                f"too few to hold out {p_val:.0%} for validation"
            )
        items = list(items)
        random.shuffle(items)
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def split_per_class(classes, p_trn=0.5, p_val=0.2, rng=random):
    """Split each class's images into train/val/test by proportions (CoOp's DTD/Flowers rule).

    ``classes`` is a sequence of ``(label, classname, impaths)``; each class's
    paths are shuffled with ``rng`` and cut at ``round(n * p_trn)`` and
    ``round(n * p_val)``; the rest is test. Every part must be non-empty.
    """
    train, val, test = [], [], []
    for label, classname, impaths in classes:
        impaths = list(impaths)
        rng.shuffle(impaths)
        n_train = round(len(impaths) * p_trn)
        n_val = round(len(impaths) * p_val)
        if n_train == 0 or n_val == 0 or len(impaths) - n_train - n_val <= 0:
            raise ValueError(
                f"class {classname!r} has {len(impaths)} image(s), too few to split into "
                f"{p_trn:.0%} train / {p_val:.0%} val / rest test with none empty"
            )
        parts = (impaths[:n_train], impaths[n_train : n_train + n_val], impaths[n_train + n_val :])
        for target, paths in zip((train, val, test), parts):
            target.extend(Datum(impath=path, label=label, classname=classname) for path in paths)
    return train, val, test


def list_images(directory):
    """Sorted paths of the image files (by extension, hidden files skipped) directly in ``directory``."""
    names = sorted(
        name
        for name in os.listdir(directory)
        if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
    )
    return [os.path.join(directory, name) for name in names]


def list_subfolders(directory, ignored=()):
    """Sorted names of the non-hidden sub-directories of ``directory``, minus ``ignored``.

    A name that is not valid UTF-8 (say Latin-1 "caf\xe9") cannot become a correct class name in
    a text prompt: it is kept (its images are still found) with a warning naming the folder.
    """
    names = sorted(
        entry.name
        for entry in os.scandir(directory)
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in ignored
    )
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            readable = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            print(f"Warning: class folder {os.path.join(directory, readable)!r} has a name that is not valid "
                  f"UTF-8; its class name in the prompts would be {readable!r}. Rename the folder in UTF-8.")
    return names


def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None, rng=random):
    """Split a ``<image_dir>/<class folder>/<image>`` tree per class (CoOp's DTD rule).

    Labels follow the sorted folder names (minus ``ignored``); ``new_cnames``
    maps folder names to display names. Files are listed in sorted order so the
    split depends only on the random state, not on the file system.
    """
    new_cnames = new_cnames or {}
    folders = list_subfolders(image_dir, ignored)
    if not folders:
        raise FileNotFoundError(f"no class folders found in {image_dir}; see {LAYOUT_DOC}")
    classes = (
        (label, new_cnames.get(folder, folder), list_images(os.path.join(image_dir, folder)))
        for label, folder in enumerate(folders)
    )
    print(f"Splitting {image_dir} into {p_trn:.0%} train, {p_val:.0%} val, {1 - p_trn - p_val:.0%} test")
    return split_per_class(classes, p_trn, p_val, rng)


def subsample_classes(*data_sources, subsample="all"):
    """Keep the base (first ceil(n/2) labels) or new (the rest) classes and relabel them from 0.

    The label set is taken from the first data source, sorted; every source is
    filtered to the selected labels. ``"all"`` returns the sources unchanged.
    """
    if subsample not in ("all", "base", "new"):
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be 'all', 'base' or 'new', got {subsample!r}")
    if subsample == "all":
        return data_sources
    labels = sorted({item.label for item in data_sources[0]})
    n_base = math.ceil(len(labels) / 2)
    selected = labels[:n_base] if subsample == "base" else labels[n_base:]
    relabel = {old: new for new, old in enumerate(selected)}
    print(f"Keeping the {subsample} classes ({len(selected)} of {len(labels)})")
    return tuple(
        [
            Datum(impath=item.impath, label=relabel[item.label], domain=item.domain, classname=item.classname)
            for item in source
            if item.label in relabel
        ]
        for source in data_sources
    )


def read_text(path):
    """The content of the UTF-8 text file ``path``; any other encoding is an error naming it."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x}); save the file "
                         "as UTF-8") from None


def read_classnames(text_file):
    """Read ``<folder> <class name>`` lines into an ordered ``{folder: class name}`` dict."""
    classnames = OrderedDict()
    for line_number, line in enumerate(read_text(text_file).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        folder, _, classname = line.partition(" ")
        if not classname.strip():
            raise ValueError(f"{text_file}:{line_number}: expected '<folder> <class name>', got {line!r}")
        classnames[folder] = classname.strip()
    return classnames


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------
def require_directory(path, what, dataset_name):
    """Raise ``FileNotFoundError`` naming ``path`` unless it is a directory."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{dataset_name}: {what} {path} not found; see {LAYOUT_DOC} for the expected layout")


def require_file(path, dataset_name):
    """Raise ``FileNotFoundError`` naming ``path`` unless it is a file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{dataset_name}: file {path} not found; see {LAYOUT_DOC} for the expected layout")


def load_mat(path, dataset_name):
    """Load a MATLAB ``.mat`` file with scipy (imported here: only split generation needs it)."""
    require_file(path, dataset_name)
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError(f"{dataset_name}: reading {path} needs scipy (pip install scipy)") from None
    return loadmat(path)


def label_of(class_to_label, classname, list_path, class_list_name):
    """``class_to_label[classname]``, or a ``ValueError`` saying which list names an unknown class."""
    try:
        return class_to_label[classname]
    except KeyError:
        raise ValueError(f"{list_path}: class {classname!r} is not listed in {class_list_name}") from None


def require_existing_images(items, dataset_name):
    """Raise ``FileNotFoundError`` naming the first missing images when any item's file is absent."""
    missing = []
    seen = set()
    for item in items:
        if item.impath in seen:
            continue
        seen.add(item.impath)
        if not os.path.exists(item.impath):
            missing.append(item.impath)
    if missing:
        shown = ", ".join(missing[:MAX_MISSING_SHOWN])
        more = f" (and {len(missing) - MAX_MISSING_SHOWN} more)" if len(missing) > MAX_MISSING_SHOWN else ""
        raise FileNotFoundError(
            f"{dataset_name}: {len(missing)} image(s) listed in the split are missing: {shown}{more}; "
            f"see {LAYOUT_DOC}"
        )


# ----------------------------------------------------------------------------------------------
# The shared pipeline
# ----------------------------------------------------------------------------------------------
class BenchmarkDataset(DatasetBase):
    """A dataset stored under ``DATASET.ROOT`` in CoOp's layout, loaded through CoOp's pipeline.

    Subclasses set:

    - ``dataset_dir``: folder under the data root; ``image_subdir``: image folder
      inside it ("" = the dataset folder itself), which split paths are relative to;
    - ``split_file``: name of the split JSON in the dataset folder, or None for a
      dataset that reads its own lists every time;
    - ``split_gdrive_id`` / ``extra_gdrive_files``: Google Drive ids used by
      ``python -m datasets.fetch_splits`` (the split file / other small files);
    - ``samples_few_shot``: False for test-only datasets, which ignore NUM_SHOTS;
    - ``val_is_test``: True when the test set doubles as validation (ImageNet);
    - ``checks_image_paths``: False when items come from folder listings.

    and implement ``build_full_split()`` returning ``(train, val, test)`` (val may
    be None) from the raw data.

    Missing split file: it is generated and saved when ``DATASET.ALLOW_GENERATED_SPLIT``
    is True or nothing can be downloaded, otherwise a ``FileNotFoundError`` names
    the file and the ``fetch_splits`` command.
    """

    image_subdir = ""
    split_file = None
    split_gdrive_id = None
    extra_gdrive_files = {}
    samples_few_shot = True
    val_is_test = False
    checks_image_paths = True

    def __init__(self, cfg):
        self.name = type(self).__name__
        if not str(cfg.DATASET.ROOT).strip():
            raise FileNotFoundError(
                f"{self.name}: DATASET.ROOT is not set; pass --root /path/to/datasets (see docs/DATASETS.md)"
            )
        self.root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        require_directory(self.root, "data root", self.name)
        self.dataset_dir = self.resolve_dataset_dir(cfg)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir) if self.image_subdir else self.dataset_dir
        self.split_fewshot_dir = os.path.join(self.dataset_dir, FEWSHOT_DIRNAME)
        self.allow_generated_split = bool(cfg.DATASET.ALLOW_GENERATED_SPLIT)
        self.prepare()
        require_directory(self.dataset_dir, "dataset folder", self.name)
        require_directory(self.image_dir, "image folder", self.name)

        train, val, test = self.load_full_split()
        if self.checks_image_paths:
            require_existing_images([*train, *(val or []), *test], self.name)
        if self.samples_few_shot:
            train, val = self.sample_few_shot(train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED)

        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        if val is None:
            train, test = subsample_classes(train, test, subsample=subsample)
        else:
            train, val, test = subsample_classes(train, val, test, subsample=subsample)
        if self.val_is_test:
            val = test
        super().__init__(train_x=train, val=val, test=test)

    # -- hooks -------------------------------------------------------------------------------
    def resolve_dataset_dir(self, cfg):
        """Absolute path of this dataset's folder (``<root>/<dataset_dir>``)."""
        return os.path.join(self.root, type(self).dataset_dir)

    def prepare(self):
        """Called before the dataset folder is checked; synthetic datasets write themselves here."""

    def build_full_split(self):
        """Return ``(train, val, test)`` built from the raw data (val may be None)."""
        raise NotImplementedError(f"{self.name} cannot build its split from raw data")

    def read_text_lines(self, *relative_path):
        """Stripped non-empty lines of the text file ``<dataset_dir>/<relative_path...>``."""
        path = os.path.join(self.dataset_dir, *relative_path)
        require_file(path, self.name)
        return [line.strip() for line in read_text(path).splitlines() if line.strip()]

    # -- pipeline steps ----------------------------------------------------------------------
    @property
    def split_path(self):
        """Path of the split JSON, or None for datasets without one."""
        return os.path.join(self.dataset_dir, self.split_file) if self.split_file else None

    def load_full_split(self):
        """Read the split file, or build (and save) the split when allowed; see the class docstring."""
        if self.split_file is None:
            return self.build_full_split()
        if os.path.isfile(self.split_path):
            print(f"Reading split from {self.split_path}")
            return read_split(self.split_path, self.image_dir)
        if not (self.allow_generated_split or self.split_gdrive_id is None):
            raise FileNotFoundError(
                f"{self.name}: split file {self.split_path} not found; download it with "
                f"`python -m datasets.fetch_splits --root {self.root} --datasets {self.name}` "
                f"(or set DATASET.ALLOW_GENERATED_SPLIT True to generate a new, non-standard split)"
            )
        train, val, test = self.build_full_split()
        save_split(train, val, test, self.split_path, self.image_dir)
        return train, val, test

    def fewshot_path(self, num_shots, seed):
        """Path of the cached few-shot selection for ``num_shots`` and ``seed``."""
        return os.path.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.json")

    def sample_few_shot(self, train, val, num_shots, seed):
        """Return ``num_shots`` train items per class and ``min(num_shots, 4)`` val items per class.

        A cached selection for (num_shots, seed) is reused; otherwise it is drawn
        with Dassl's rule from the global random state and cached as JSON. With a
        negative seed (unseeded run) nothing is cached.
        """
        if num_shots < 1:
            return train, val
        cache_path = self.fewshot_path(num_shots, seed)
        if os.path.isfile(cache_path):
            print(f"Reading the few-shot selection from {cache_path}")
            cached = read_json(cache_path)
            name = os.path.basename(cache_path)
            train = records_to_items(cached.get("train"), self.image_dir, f"{name}[train]")
            if val is not None:
                val = records_to_items(cached.get("val"), self.image_dir, f"{name}[val]")
            return train, val

        train = self.generate_fewshot_dataset(train, num_shots=num_shots, strict=True)
        records = {"num_shots": num_shots, "seed": seed, "train": items_to_records(train, self.image_dir)}
        if val is not None:
            val = self.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
            records["val"] = items_to_records(val, self.image_dir)
        if seed is not None and seed >= 0:
            try:
                write_json(records, cache_path)
                print(f"Saved the few-shot selection to {cache_path}")
            except OSError as err:
                print(f"Warning: could not cache the few-shot selection at {cache_path}: {err}")
        return train, val


class FolderPerClassBenchmark(BenchmarkDataset):
    """A benchmark whose generated split is CoOp's 50/20/30 per-class split of ``<images>/<class>/``.

    ``ignored_folders`` are skipped; ``renamed_classes`` maps folder names to
    the class names used in prompts.
    """

    ignored_folders = ()
    renamed_classes = {}

    def build_full_split(self):
        """Shuffle each class folder with the global random state and cut it 50/20/30."""
        return read_and_split_data(
            self.image_dir, ignored=self.ignored_folders, new_cnames=self.renamed_classes
        )


class ImageNetStyleDataset(BenchmarkDataset):
    """A test-only ImageNet variant: ``<image_dir>/<folder>/<image>`` with names from ``classnames.txt``.

    Labels are the positions of the folders in ``class_folders()`` (by default
    the sorted folder names, which for ImageNet-A/R is the 200-class subset);
    ``classnames.txt`` (ImageNet's ``<wnid> <name>`` list) gives the names. The
    same data serve as train_x (label space) and test; NUM_SHOTS is ignored.
    """

    samples_few_shot = False
    checks_image_paths = False
    classnames_file = "classnames.txt"
    extra_gdrive_files = {"classnames.txt": IMAGENET_CLASSNAMES_GDRIVE_ID}

    def read_folder_names(self):
        """The ``{folder: class name}`` mapping from the dataset's ``classnames.txt``."""
        path = os.path.join(self.dataset_dir, self.classnames_file)
        require_file(path, self.name)
        return read_classnames(path)

    def class_folders(self, classnames, image_dir=None):
        """``[(folder, class name), ...]`` in label order for the class folders of ``image_dir``."""
        image_dir = image_dir or self.image_dir
        require_directory(image_dir, "image folder", self.name)
        folders = list_subfolders(image_dir)
        unknown = [folder for folder in folders if folder not in classnames]
        if unknown:
            raise ValueError(
                f"{self.name}: folder(s) {unknown[:MAX_MISSING_SHOWN]} of {image_dir} are not in "
                f"{os.path.join(self.dataset_dir, self.classnames_file)}"
            )
        return [(folder, classnames[folder]) for folder in folders]

    def build_full_split(self):
        """Every image of every class folder, as both train_x and test."""
        data = read_labelled_folders(self.image_dir, self.class_folders(self.read_folder_names()))
        return data, None, data


def read_labelled_folders(image_dir, folders_and_names):
    """Datum items for every image in ``image_dir/<folder>``; label = position in ``folders_and_names``."""
    items = []
    for label, (folder, classname) in enumerate(folders_and_names):
        folder_path = os.path.join(image_dir, folder)
        if not os.path.isdir(folder_path):
            raise FileNotFoundError(f"class folder {folder_path} not found; see {LAYOUT_DOC}")
        items.extend(Datum(impath=path, label=label, classname=classname) for path in list_images(folder_path))
    return items
