"""Tiny copies of the benchmark datasets in their real on-disk layouts (CoOp's DATASETS.md).

Each ``make_<name>(root, with_split=True, n_classes=..., n_per_class=...)`` writes
small solid-colour images (colour depends on the class, so a model can learn
from them) plus the raw lists / .mat files that CoOp's split generation reads,
and, with ``with_split``, the ``split_zhou_*.json`` file. It returns a
``FakeDataset`` with the facts a test checks: class names in label order and
the train/val/test sizes the dataset class must produce (the same with or
without the split file, since both follow the same per-class proportions).
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

EUROSAT_CLASSES = [
    ("AnnualCrop", "Annual Crop Land"),
    ("Forest", "Forest"),
    ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
    ("Highway", "Highway or Road"),
    ("Industrial", "Industrial Buildings"),
    ("Pasture", "Pasture Land"),
    ("PermanentCrop", "Permanent Crop Land"),
    ("Residential", "Residential Buildings"),
    ("River", "River"),
    ("SeaLake", "Sea or Lake"),
]


@dataclass
class FakeDataset:
    """What a generated dataset must yield once loaded."""

    dataset_dir: str
    classnames: list
    n_train: int
    n_val: int
    n_test: int
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self):
        """Number of classes."""
        return len(self.classnames)


# ----------------------------------------------------------------------------------------------
# Small building blocks
# ----------------------------------------------------------------------------------------------
def class_colour(label, n_classes):
    """A distinct, saturated RGB colour per class (hues spread around the colour wheel)."""
    hue = label / max(n_classes, 1)
    sector, fraction = divmod(hue * 6.0, 1.0)
    rising, falling = int(255 * fraction), int(255 * (1 - fraction))
    table = [(255, rising, 0), (falling, 255, 0), (0, 255, rising), (0, falling, 255), (rising, 0, 255), (255, 0, falling)]
    return table[int(sector) % 6]


def write_image(path, label, n_classes, size=8, index=0):
    """Save a ``size`` x ``size`` image of the class colour with a little per-image noise."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(label * 100003 + index)
    base = np.array(class_colour(label, n_classes), dtype=np.int16)
    pixels = np.clip(base + rng.integers(-20, 21, size=(size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def split_counts(n_items, p_trn=0.5, p_val=0.2):
    """CoOp's per-class train/val/test sizes for ``n_items`` images."""
    n_train, n_val = round(n_items * p_trn), round(n_items * p_val)
    return n_train, n_val, n_items - n_train - n_val


def trainval_counts(n_items):
    """Sizes for datasets with a trainval/test list: 30% test, 20% of trainval as val."""
    n_test = round(n_items * 0.3)
    n_val = round((n_items - n_test) * 0.2)
    return n_items - n_test - n_val, n_val, n_test


def write_split_json(path, per_class, counts):
    """Write a CoOp split: per class, the first counts[0] records go to train, the next counts[1] to val."""
    split = {"train": [], "val": [], "test": []}
    n_train, n_val, _ = counts
    for records in per_class:
        split["train"].extend(records[:n_train])
        split["val"].extend(records[n_train : n_train + n_val])
        split["test"].extend(records[n_train + n_val :])
    with open(path, "w") as f:
        json.dump(split, f)


def write_lines(path, lines):
    """Write ``lines`` to a text file, one per line."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def _result(dataset_dir, classnames, counts, **extra):
    n_train, n_val, n_test = counts
    k = len(classnames)
    return FakeDataset(dataset_dir, list(classnames), n_train * k, n_val * k, n_test * k, extra)


def _make_folder_per_class(dataset_dir, image_dir, folders_and_names, split_file, with_split, n_per_class,
                           ext=".jpg", size=8, file_pattern="{folder}_{index}", ignored=()):
    """A ``<image_dir>/<folder>/<image>`` dataset split 50/20/30 per class (DTD rule)."""
    counts = split_counts(n_per_class)
    kept = [(folder, name) for folder, name in folders_and_names if folder not in ignored]
    kept_sorted = sorted(kept)
    per_class = []
    for folder, _ in ignored_pairs(folders_and_names, ignored):
        for index in range(n_per_class):
            write_image(os.path.join(image_dir, folder, f"{folder}_{index}{ext}"), 0, 1, size, index)
    for label, (folder, name) in enumerate(kept_sorted):
        records = []
        for index in range(n_per_class):
            file_name = file_pattern.format(folder=folder, index=index) + ext
            write_image(os.path.join(image_dir, folder, file_name), label, len(kept_sorted), size, index)
            records.append([f"{folder}/{file_name}", label, name])
        per_class.append(records)
    if with_split:
        write_split_json(os.path.join(dataset_dir, split_file), per_class, counts)
    return _result(dataset_dir, [name for _, name in kept_sorted], counts)


def ignored_pairs(folders_and_names, ignored):
    """The (folder, name) pairs whose folder is in ``ignored``."""
    return [(folder, name) for folder, name in folders_and_names if folder in ignored]


# ----------------------------------------------------------------------------------------------
# One generator per dataset
# ----------------------------------------------------------------------------------------------
def make_eurosat(root, with_split=True, n_classes=10, n_per_class=10, image_size=32):
    """``eurosat/2750/<Class>/<Class>_<i>.jpg`` (+ ``split_zhou_EuroSAT.json``); 32x32 class-coloured JPEGs."""
    if not 1 <= n_classes <= len(EUROSAT_CLASSES):
        raise ValueError(f"n_classes must be in 1..{len(EUROSAT_CLASSES)}, got {n_classes}")
    dataset_dir = os.path.join(root, "eurosat")
    return _make_folder_per_class(
        dataset_dir, os.path.join(dataset_dir, "2750"), EUROSAT_CLASSES[:n_classes], "split_zhou_EuroSAT.json",
        with_split, n_per_class, size=image_size,
    )


def make_dtd(root, with_split=True, n_classes=4, n_per_class=10):
    """``dtd/images/<texture>/<texture>_<i>.jpg`` (+ ``split_zhou_DescribableTextures.json``)."""
    textures = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked"][:n_classes]
    dataset_dir = os.path.join(root, "dtd")
    return _make_folder_per_class(
        dataset_dir, os.path.join(dataset_dir, "images"), [(t, t) for t in textures],
        "split_zhou_DescribableTextures.json", with_split, n_per_class,
    )


def make_caltech101(root, with_split=True, n_classes=6, n_per_class=10):
    """``caltech-101/101_ObjectCategories/<class>/image_<i>.jpg`` incl. the two ignored folders."""
    classes = [
        ("Faces", "face"), ("Leopards", "leopard"), ("Motorbikes", "motorbike"),
        ("accordion", "accordion"), ("airplanes", "airplane"), ("anchor", "anchor"),
        ("ant", "ant"), ("barrel", "barrel"),
    ][:n_classes]
    classes += [("BACKGROUND_Google", None), ("Faces_easy", None)]
    dataset_dir = os.path.join(root, "caltech-101")
    return _make_folder_per_class(
        dataset_dir, os.path.join(dataset_dir, "101_ObjectCategories"), classes, "split_zhou_Caltech101.json",
        with_split, n_per_class, file_pattern="image_{index:04d}", ignored=("BACKGROUND_Google", "Faces_easy"),
    )


def make_food101(root, with_split=True, n_classes=4, n_per_class=10):
    """``food-101/images/<dish>/<id>.jpg`` (+ ``split_zhou_Food101.json``)."""
    dishes = ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare", "beet_salad"][:n_classes]
    dataset_dir = os.path.join(root, "food-101")
    return _make_folder_per_class(
        dataset_dir, os.path.join(dataset_dir, "images"), [(d, d) for d in dishes], "split_zhou_Food101.json",
        with_split, n_per_class, file_pattern="{index}00",
    )


def make_imagefolder(root, subdir="mydata", n_classes=3, n_per_class=10, classnames=None):
    """``<root>/<subdir>/<class>/<class>_<i>.png`` with an optional ``classnames.txt`` rename map."""
    folders = [f"class_{chr(ord('a') + i)}" for i in range(n_classes)]
    dataset_dir = os.path.join(root, subdir) if subdir else root
    result = _make_folder_per_class(
        dataset_dir, dataset_dir, [(f, f) for f in folders], None, False, n_per_class, ext=".png",
    )
    if classnames:
        write_lines(os.path.join(dataset_dir, "classnames.txt"), [f"{f} {classnames[f]}" for f in classnames])
        result.classnames = [classnames.get(f, f) for f in folders]
    return result


def make_oxford_pets(root, with_split=True, n_classes=4, n_per_class=10):
    """``oxford_pets/images/<Breed>_<i>.jpg`` + ``annotations/{trainval,test}.txt`` (+ split)."""
    breeds = ["Abyssinian", "american_bulldog", "Bengal", "boxer", "British_Shorthair", "chihuahua"][:n_classes]
    dataset_dir = os.path.join(root, "oxford_pets")
    counts = trainval_counts(n_per_class)
    n_trainval = counts[0] + counts[1]
    trainval_lines, test_lines, per_class = [], [], []
    for label, breed in enumerate(breeds):
        records = []
        for index in range(n_per_class):
            stem = f"{breed}_{index + 1}"
            write_image(os.path.join(dataset_dir, "images", stem + ".jpg"), label, len(breeds), index=index)
            line = f"{stem} {label + 1} {1 + label % 2} {label // 2 + 1}"
            (trainval_lines if index < n_trainval else test_lines).append(line)
            records.append([stem + ".jpg", label, breed.lower()])
        per_class.append(records)
    write_lines(os.path.join(dataset_dir, "annotations", "trainval.txt"), trainval_lines)
    write_lines(os.path.join(dataset_dir, "annotations", "test.txt"), test_lines)
    if with_split:
        write_split_json(os.path.join(dataset_dir, "split_zhou_OxfordPets.json"), per_class, counts)
    return _result(dataset_dir, [b.lower() for b in breeds], counts)


def make_stanford_cars(root, with_split=True, n_classes=4, n_per_class=10):
    """``stanford_cars/{cars_train,cars_test}/*.jpg`` + devkit .mat files (+ split); names get the year first."""
    from scipy.io import savemat

    models = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8 Coupe 2012", "BMW M3 Coupe 2012",
              "Buick Verano Sedan 2012", "Chevrolet Volt Hatchback 2012"][:n_classes]
    dataset_dir = os.path.join(root, "stanford_cars")
    counts = trainval_counts(n_per_class)
    n_trainval = counts[0] + counts[1]
    annotations = {"cars_train": [], "cars_test": []}
    per_class = []
    for label in range(len(models)):
        records = []
        for index in range(n_per_class):
            subdir = "cars_train" if index < n_trainval else "cars_test"
            file_name = f"{len(annotations[subdir]) + 1:05d}.jpg"
            annotations[subdir].append((file_name, label + 1))
            write_image(os.path.join(dataset_dir, subdir, file_name), label, len(models), index=index)
            words = models[label].split(" ")
            records.append([f"{subdir}/{file_name}", label, " ".join([words[-1]] + words[:-1])])
        per_class.append(records)

    def struct_array(entries):
        array = np.zeros((1, len(entries)), dtype=[("fname", "O"), ("class", "O")])
        for i, (file_name, class_id) in enumerate(entries):
            array[0, i]["fname"] = np.array([file_name])
            array[0, i]["class"] = np.array([[class_id]], dtype=np.uint8)
        return array

    os.makedirs(os.path.join(dataset_dir, "devkit"), exist_ok=True)
    savemat(os.path.join(dataset_dir, "devkit", "cars_train_annos.mat"), {"annotations": struct_array(annotations["cars_train"])})
    savemat(os.path.join(dataset_dir, "cars_test_annos_withlabels.mat"), {"annotations": struct_array(annotations["cars_test"])})
    names = np.empty((1, len(models)), dtype=object)
    for i, model in enumerate(models):
        names[0, i] = model
    savemat(os.path.join(dataset_dir, "devkit", "cars_meta.mat"), {"class_names": names})
    if with_split:
        write_split_json(os.path.join(dataset_dir, "split_zhou_StanfordCars.json"), per_class, counts)
    return _result(dataset_dir, [r[0][2] for r in per_class], counts)


def make_oxford_flowers(root, with_split=True, n_classes=4, n_per_class=10):
    """``oxford_flowers/jpg/image_XXXXX.jpg`` + imagelabels.mat + cat_to_name.json (+ split)."""
    from scipy.io import savemat

    flowers = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold",
               "tiger lily"][:n_classes]
    dataset_dir = os.path.join(root, "oxford_flowers")
    counts = split_counts(n_per_class)
    # images interleave the classes, last class first, as the real labels are not sorted by image id
    order = [(label, index) for index in range(n_per_class) for label in reversed(range(len(flowers)))]
    labels = np.zeros((1, len(order)), dtype=np.uint8)
    per_class = [[] for _ in flowers]
    for position, (label, index) in enumerate(order):
        file_name = f"image_{position + 1:05d}.jpg"
        write_image(os.path.join(dataset_dir, "jpg", file_name), label, len(flowers), index=index)
        labels[0, position] = label + 1
        per_class[label].append([file_name, label, flowers[label]])
    savemat(os.path.join(dataset_dir, "imagelabels.mat"), {"labels": labels})
    with open(os.path.join(dataset_dir, "cat_to_name.json"), "w") as f:
        json.dump({str(i + 1): name for i, name in enumerate(flowers)}, f)
    if with_split:
        write_split_json(os.path.join(dataset_dir, "split_zhou_OxfordFlowers.json"), per_class, counts)
    return _result(dataset_dir, flowers, counts)


def make_sun397(root, with_split=True, n_classes=4, n_per_class=10):
    """``sun397/SUN397/<l>/<class>[/<place>]/sun_*.jpg`` + ClassName.txt + Training_01/Testing_01 (+ split)."""
    class_paths = ["a/abbey", "a/apartment_building/outdoor", "b/bedroom", "c/cathedral/indoor", "d/dam"][:n_classes]
    display = [" ".join(reversed(p.split("/")[1:])) for p in class_paths]
    dataset_dir = os.path.join(root, "sun397")
    counts = trainval_counts(n_per_class)
    n_trainval = counts[0] + counts[1]
    training, testing, per_class = [], [], []
    for label, class_path in enumerate(class_paths):
        records = []
        for index in range(n_per_class):
            relative = f"{class_path}/sun_{label}{index:04d}.jpg"
            write_image(os.path.join(dataset_dir, "SUN397", relative), label, len(class_paths), index=index)
            (training if index < n_trainval else testing).append("/" + relative)
            records.append([relative, label, display[label]])
        per_class.append(records)
    write_lines(os.path.join(dataset_dir, "ClassName.txt"), ["/" + p for p in class_paths])
    write_lines(os.path.join(dataset_dir, "Training_01.txt"), training)
    write_lines(os.path.join(dataset_dir, "Testing_01.txt"), testing)
    if with_split:
        write_split_json(os.path.join(dataset_dir, "split_zhou_SUN397.json"), per_class, counts)
    return _result(dataset_dir, display, counts)


def make_ucf101(root, with_split=True, n_classes=4, n_per_class=10):
    """``ucf101/UCF-101-midframes/<Split_Name>/v_*.jpg`` + ucfTrainTestlist/*.txt (+ split)."""
    actions = ["ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "YoYo"][:n_classes]
    renamed = ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Baby_Crawling", "Yo_Yo"][:n_classes]
    dataset_dir = os.path.join(root, "ucf101")
    counts = trainval_counts(n_per_class)
    n_trainval = counts[0] + counts[1]
    train_lines, test_lines, per_class = [], [], []
    for label, (action, folder) in enumerate(zip(actions, renamed)):
        records = []
        for index in range(n_per_class):
            video = f"v_{action}_g{index + 1:02d}_c01"
            write_image(os.path.join(dataset_dir, "UCF-101-midframes", folder, video + ".jpg"), label, len(actions),
                        index=index)
            if index < n_trainval:
                train_lines.append(f"{action}/{video}.avi {label + 1}")
            else:
                test_lines.append(f"{action}/{video}.avi")
            records.append([f"{folder}/{video}.jpg", label, folder])
        per_class.append(records)
    list_dir = os.path.join(dataset_dir, "ucfTrainTestlist")
    write_lines(os.path.join(list_dir, "classInd.txt"), [f"{i + 1} {a}" for i, a in enumerate(actions)])
    write_lines(os.path.join(list_dir, "trainlist01.txt"), train_lines)
    write_lines(os.path.join(list_dir, "testlist01.txt"), test_lines)
    if with_split:
        write_split_json(os.path.join(dataset_dir, "split_zhou_UCF101.json"), per_class, counts)
    return _result(dataset_dir, renamed, counts)


def make_fgvc_aircraft(root, with_split=False, n_classes=4, n_per_class=9):
    """``fgvc_aircraft/images/<id>.jpg`` + variants.txt + images_variant_{train,val,test}.txt (no split file)."""
    variants = ["707-320", "A300B4", "Cessna 172", "F/A-18", "DH-82", "Boeing 717"][:n_classes]
    dataset_dir = os.path.join(root, "fgvc_aircraft")
    third = n_per_class // 3
    counts = (n_per_class - 2 * third, third, third)
    lists = {"train": [], "val": [], "test": []}
    for label, variant in enumerate(variants):
        for index in range(n_per_class):
            image_id = f"{label + 1:03d}{index:04d}"
            write_image(os.path.join(dataset_dir, "images", image_id + ".jpg"), label, len(variants), index=index)
            split = "train" if index < counts[0] else "val" if index < counts[0] + counts[1] else "test"
            lists[split].append(f"{image_id} {variant}")
    write_lines(os.path.join(dataset_dir, "variants.txt"), variants)
    for split, lines in lists.items():
        write_lines(os.path.join(dataset_dir, f"images_variant_{split}.txt"), lines)
    return _result(dataset_dir, variants, counts)


def imagenet_classnames(n_classes):
    """``[(wnid, name), ...]`` for ``n_classes`` fake ImageNet classes, wnids ascending."""
    return [(f"n{1440764 + 1000 * i:08d}", f"class number {i}") for i in range(n_classes)]


def _write_class_folders(image_dir, wnids_and_labels, n_classes, n_per_class, ext=".JPEG", prefix=""):
    for wnid, label in wnids_and_labels:
        for index in range(n_per_class):
            write_image(os.path.join(image_dir, wnid, f"{prefix}{wnid}_{index}{ext}"), label, n_classes, index=index)


def make_imagenet(root, with_split=False, n_classes=4, n_per_class=6, n_val_per_class=3):
    """``imagenet/images/{train,val}/<wnid>/*.JPEG`` + ``classnames.txt``."""
    classes = imagenet_classnames(n_classes)
    dataset_dir = os.path.join(root, "imagenet")
    write_lines(os.path.join(dataset_dir, "classnames.txt"), [f"{w} {n}" for w, n in classes])
    wnids = [(w, i) for i, (w, _) in enumerate(classes)]
    _write_class_folders(os.path.join(dataset_dir, "images", "train"), wnids, n_classes, n_per_class)
    _write_class_folders(os.path.join(dataset_dir, "images", "val"), wnids, n_classes, n_val_per_class, prefix="val_")
    return _result(dataset_dir, [n for _, n in classes], (n_per_class, n_val_per_class, n_val_per_class))


def make_imagenetv2(root, with_split=False, n_classes=4, n_per_class=3):
    """``imagenetv2/imagenetv2-matched-frequency-format-val/<i>/*.jpeg`` + ``classnames.txt``."""
    classes = imagenet_classnames(n_classes)
    dataset_dir = os.path.join(root, "imagenetv2")
    write_lines(os.path.join(dataset_dir, "classnames.txt"), [f"{w} {n}" for w, n in classes])
    image_dir = os.path.join(dataset_dir, "imagenetv2-matched-frequency-format-val")
    _write_class_folders(image_dir, [(str(i), i) for i in range(n_classes)], n_classes, n_per_class, ext=".jpeg")
    return _result(dataset_dir, [n for _, n in classes], (n_per_class, 0, n_per_class))


def make_imagenet_sketch(root, with_split=False, n_classes=4, n_per_class=3):
    """``imagenet-sketch/images/<wnid>/*.JPEG`` + ``classnames.txt``."""
    classes = imagenet_classnames(n_classes)
    dataset_dir = os.path.join(root, "imagenet-sketch")
    write_lines(os.path.join(dataset_dir, "classnames.txt"), [f"{w} {n}" for w, n in classes])
    _write_class_folders(os.path.join(dataset_dir, "images"), [(w, i) for i, (w, _) in enumerate(classes)],
                         n_classes, n_per_class)
    return _result(dataset_dir, [n for _, n in classes], (n_per_class, 0, n_per_class))


def _make_imagenet_subset(root, dataset_folder, image_folder, n_classes, subset, n_per_class):
    """An ImageNet-A/R style folder: a subset of the wnids in ``classnames.txt``, plus a README.txt."""
    classes = imagenet_classnames(n_classes)
    subset = sorted(subset)
    dataset_dir = os.path.join(root, dataset_folder)
    image_dir = os.path.join(dataset_dir, image_folder)
    write_lines(os.path.join(dataset_dir, "classnames.txt"), [f"{w} {n}" for w, n in classes])
    _write_class_folders(image_dir, [(classes[i][0], rank) for rank, i in enumerate(subset)], len(subset),
                         n_per_class, ext=".jpg")
    write_lines(os.path.join(image_dir, "README.txt"), ["not a class"])
    result = _result(dataset_dir, [classes[i][1] for i in subset], (n_per_class, 0, n_per_class))
    result.extra["wnids"] = [classes[i][0] for i in subset]
    return result


def make_imagenet_a(root, with_split=False, n_classes=10, subset=(7, 2, 5, 3), n_per_class=3):
    """``imagenet-adversarial/imagenet-a/<wnid>/`` for a subset of the ``classnames.txt`` classes."""
    return _make_imagenet_subset(root, "imagenet-adversarial", "imagenet-a", n_classes, subset, n_per_class)


def make_imagenet_r(root, with_split=False, n_classes=10, subset=(1, 8, 4), n_per_class=3):
    """``imagenet-rendition/imagenet-r/<wnid>/`` for a subset of the ``classnames.txt`` classes."""
    return _make_imagenet_subset(root, "imagenet-rendition", "imagenet-r", n_classes, subset, n_per_class)


MAKERS = {
    "Caltech101": make_caltech101,
    "DescribableTextures": make_dtd,
    "EuroSAT": make_eurosat,
    "FGVCAircraft": make_fgvc_aircraft,
    "Food101": make_food101,
    "ImageNet": make_imagenet,
    "ImageNetA": make_imagenet_a,
    "ImageNetR": make_imagenet_r,
    "ImageNetSketch": make_imagenet_sketch,
    "ImageNetV2": make_imagenetv2,
    "OxfordFlowers": make_oxford_flowers,
    "OxfordPets": make_oxford_pets,
    "StanfordCars": make_stanford_cars,
    "SUN397": make_sun397,
    "UCF101": make_ucf101,
}
"""Registered dataset name -> generator."""
