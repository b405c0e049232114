"""Tests of the dataset layer: Dassl's DatasetBase/Datum, the 15 benchmarks + ImageFolder on
generated layouts, few-shot parity with Dassl's sampling rule, base/new subsampling, errors
and the split downloader."""
import glob
import json
import os
import random
import shutil
import sys
import types

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from datasets import fetch_splits
from datasets.base import read_split
from helpers.fake_datasets import (
    MAKERS,
    make_dtd,
    make_eurosat,
    make_imagefolder,
    make_imagenet,
    make_imagenet_a,
    make_imagenet_r,
)

GENERATES_SPLIT = {
    name for name in MAKERS if DATASET_REGISTRY.get(name).split_file and DATASET_REGISTRY.get(name).split_gdrive_id
}


def make_cfg(root, name, **dataset_keys):
    """Default config pointing at ``root``/``name``; ``dataset_keys`` override DATASET.*; SEED=1."""
    cfg = get_cfg_default()
    cfg.VERBOSE = False
    cfg.SEED = dataset_keys.pop("SEED", 1)
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    for key, value in dataset_keys.items():
        cfg.DATASET[key] = value
    return cfg


def load(root, name, seed_random=1, **dataset_keys):
    """Build dataset ``name`` after seeding Python's ``random`` (as the trainer would)."""
    random.seed(seed_random)
    return build_dataset(make_cfg(root, name, **dataset_keys))


def dassl_fewshot(items, num_shots, repeat=False):
    """Dassl's few-shot rule, written independently: classes in order of first appearance,
    ``random.sample`` per class (``random.choices`` when repeating a too-small class)."""
    by_label = {}
    for item in items:
        by_label.setdefault(item.label, []).append(item)
    picked = []
    for group in by_label.values():
        if len(group) >= num_shots:
            picked.extend(random.sample(group, num_shots))
        else:
            picked.extend(random.choices(group, k=num_shots) if repeat else group)
    return picked


def impaths(items):
    return [item.impath for item in items]


# ----------------------------------------------------------------------------------------------
# Every dataset on its generated layout
# ----------------------------------------------------------------------------------------------
CASES = [(name, True) for name in sorted(MAKERS) if name in GENERATES_SPLIT] + [(name, False) for name in sorted(MAKERS)]


@pytest.mark.parametrize("name,with_split", CASES, ids=[f"{n}-{'split' if s else 'raw'}" for n, s in CASES])
def test_dataset_reads_its_layout(tmp_path, name, with_split):
    facts = MAKERS[name](str(tmp_path), with_split=with_split)
    dataset = load(tmp_path, name, ALLOW_GENERATED_SPLIT=not with_split)

    assert dataset.num_classes == facts.num_classes
    assert dataset.classnames == facts.classnames
    assert (len(dataset.train_x), len(dataset.val or []), len(dataset.test)) == (facts.n_train, facts.n_val, facts.n_test)
    for split in (dataset.train_x, dataset.val, dataset.test):
        if split is None:
            continue
        assert {item.label for item in split} == set(range(facts.num_classes))
        assert all(item.classname == facts.classnames[item.label] for item in split)
        assert all(os.path.isfile(item.impath) for item in split)
    if name in GENERATES_SPLIT and not with_split:
        # the generated split is saved in CoOp's format and read back identically
        split_path = os.path.join(facts.dataset_dir, DATASET_REGISTRY.get(name).split_file)
        with open(split_path) as f:
            records = json.load(f)
        assert set(records) == {"train", "val", "test"}
        assert all(len(r) == 3 and not os.path.isabs(r[0]) for r in records["train"])
        again = load(tmp_path, name)
        assert impaths(again.train_x) == impaths(dataset.train_x)
        assert impaths(again.test) == impaths(dataset.test)


def test_generated_split_follows_the_global_seed(tmp_path):
    make_dtd(str(tmp_path), with_split=False)
    first = load(tmp_path, "DescribableTextures", seed_random=5, ALLOW_GENERATED_SPLIT=True)
    os.remove(os.path.join(tmp_path, "dtd", "split_zhou_DescribableTextures.json"))
    same = load(tmp_path, "DescribableTextures", seed_random=5, ALLOW_GENERATED_SPLIT=True)
    os.remove(os.path.join(tmp_path, "dtd", "split_zhou_DescribableTextures.json"))
    other = load(tmp_path, "DescribableTextures", seed_random=6, ALLOW_GENERATED_SPLIT=True)
    assert impaths(first.train_x) == impaths(same.train_x)
    assert impaths(first.train_x) != impaths(other.train_x)


def test_caltech_skips_background_and_renames(tmp_path):
    MAKERS["Caltech101"](str(tmp_path), with_split=False)
    dataset = load(tmp_path, "Caltech101", ALLOW_GENERATED_SPLIT=True)
    assert dataset.classnames[:3] == ["face", "leopard", "motorbike"]
    everything = dataset.train_x + dataset.val + dataset.test
    assert not any("BACKGROUND_Google" in p or "Faces_easy" in p for p in impaths(everything))


def test_imagenet_a_and_r_use_their_200_class_subset_in_wnid_order(tmp_path):
    for make, name in ((make_imagenet_a, "ImageNetA"), (make_imagenet_r, "ImageNetR")):
        facts = make(str(tmp_path))
        dataset = load(tmp_path, name, NUM_SHOTS=16)  # NUM_SHOTS is ignored by test-only datasets
        assert facts.extra["wnids"] == sorted(facts.extra["wnids"])
        assert dataset.num_classes == len(facts.extra["wnids"])
        assert dataset.classnames == facts.classnames
        for item in dataset.test:
            assert os.path.basename(os.path.dirname(item.impath)) == facts.extra["wnids"][item.label]
        assert dataset.val is None and impaths(dataset.train_x) == impaths(dataset.test)


def test_imagenet_val_is_test_and_listing_is_cached_as_json(tmp_path):
    facts = make_imagenet(str(tmp_path))
    dataset = load(tmp_path, "ImageNet", NUM_SHOTS=2)
    assert dataset.val is dataset.test
    assert len(dataset.train_x) == 2 * facts.num_classes and len(dataset.test) == facts.n_test
    cache_path = os.path.join(facts.dataset_dir, "preprocessed.json")
    with open(os.path.join(facts.dataset_dir, "split_fewshot", "shot_2-seed_1.json")) as f:
        assert "val" not in json.load(f)

    with open(cache_path) as f:
        cached = json.load(f)
    cached["test"] = cached["test"][:5]
    with open(cache_path, "w") as f:
        json.dump(cached, f)
    assert len(load(tmp_path, "ImageNet").test) == 5


# ----------------------------------------------------------------------------------------------
# Few-shot sampling and base/new subsampling
# ----------------------------------------------------------------------------------------------
def test_fewshot_matches_dassl_rule_and_is_cached_as_json(tmp_path):
    facts = make_eurosat(str(tmp_path), n_classes=3, n_per_class=30)  # 15 train / 6 val / 9 test per class
    # interleave the classes so that "order of first appearance" differs from label order
    split_path = os.path.join(facts.dataset_dir, "split_zhou_EuroSAT.json")
    with open(split_path) as f:
        split = json.load(f)
    for records in split.values():
        records.reverse()
        random.Random(0).shuffle(records)
    first_seen = list(dict.fromkeys(r[1] for r in split["train"]))
    assert first_seen != sorted(first_seen)
    with open(split_path, "w") as f:
        json.dump(split, f)
    full = load(tmp_path, "EuroSAT")
    random.seed(1)
    expected_train = dassl_fewshot(full.train_x, 8)
    expected_val = dassl_fewshot(full.val, 4)  # val gets min(NUM_SHOTS, 4) shots
    dataset = load(tmp_path, "EuroSAT", NUM_SHOTS=8)
    assert impaths(dataset.train_x) == impaths(expected_train)
    assert impaths(dataset.val) == impaths(expected_val)
    assert len(dataset.val) == 3 * 4 and len(dataset.test) == 3 * 9

    cache_path = os.path.join(tmp_path, "eurosat", "split_fewshot", "shot_8-seed_1.json")
    with open(cache_path) as f:
        cached = json.load(f)
    assert [os.path.join(tmp_path, "eurosat", "2750", r[0]) for r in cached["train"]] == impaths(expected_train)
    assert not glob.glob(os.path.join(tmp_path, "**", "*.pkl"), recursive=True)

    # once cached, the random state no longer matters, and the file is what is read
    assert impaths(load(tmp_path, "EuroSAT", seed_random=99, NUM_SHOTS=8).train_x) == impaths(expected_train)
    cached["train"] = cached["train"][:3]
    with open(cache_path, "w") as f:
        json.dump(cached, f)
    assert len(load(tmp_path, "EuroSAT", NUM_SHOTS=8).train_x) == 3


def test_unseeded_run_caches_nothing(tmp_path):
    make_eurosat(str(tmp_path), n_classes=2)
    load(tmp_path, "EuroSAT", NUM_SHOTS=2, SEED=-1)
    assert not os.path.exists(os.path.join(tmp_path, "eurosat", "split_fewshot"))


def test_generate_fewshot_dataset_repeat_uses_choices():
    items = [Datum(impath=f"/x/{i}.jpg", label=i % 2, classname=str(i % 2)) for i in range(6)]
    random.seed(3)
    expected = dassl_fewshot(items, 5, repeat=True)
    random.seed(3)
    got = DatasetBase(train_x=items).generate_fewshot_dataset(items, num_shots=5, repeat=True)
    assert impaths(got) == impaths(expected) and len(got) == 10
    both = DatasetBase(train_x=items).generate_fewshot_dataset(items, items, num_shots=2)
    assert len(both) == 2 and all(len(part) == 4 for part in both)
    assert DatasetBase(train_x=items).generate_fewshot_dataset(items, num_shots=-1) is items


def test_too_many_shots_names_the_class(tmp_path):
    make_eurosat(str(tmp_path))  # 5 train images per class
    with pytest.raises(ValueError, match=r"'Annual Crop Land' \(label 0\) has only 5"):
        load(tmp_path, "EuroSAT", NUM_SHOTS=6)
    assert not os.path.exists(os.path.join(tmp_path, "eurosat", "split_fewshot", "shot_6-seed_1.json"))


@pytest.mark.parametrize("subsample,labels", [("base", [0, 1, 2]), ("new", [3, 4])])
def test_subsample_base_new_relabels_after_fewshot(tmp_path, subsample, labels):
    facts = make_eurosat(str(tmp_path), n_classes=5)
    full = load(tmp_path, "EuroSAT")
    random.seed(1)
    fewshot_all_classes = dassl_fewshot(full.train_x, 2)
    dataset = load(tmp_path, "EuroSAT", NUM_SHOTS=2, SUBSAMPLE_CLASSES=subsample)

    assert dataset.classnames == [facts.classnames[i] for i in labels]
    assert impaths(dataset.train_x) == [i.impath for i in fewshot_all_classes if i.label in labels]
    for split, per_class in ((dataset.train_x, 2), (dataset.val, 2), (dataset.test, 3)):
        assert sorted({item.label for item in split}) == list(range(len(labels)))
        assert len(split) == per_class * len(labels)
        assert all(item.classname == dataset.classnames[item.label] for item in split)


def test_bad_subsample_value(tmp_path):
    make_eurosat(str(tmp_path), n_classes=2)
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES.*'half'"):
        load(tmp_path, "EuroSAT", SUBSAMPLE_CLASSES="half")


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------
def test_missing_split_file_names_file_and_fetch_command(tmp_path):
    make_eurosat(str(tmp_path), with_split=False)
    with pytest.raises(FileNotFoundError) as info:
        load(tmp_path, "EuroSAT")
    message = str(info.value)
    assert "split_zhou_EuroSAT.json" in message
    assert f"python -m datasets.fetch_splits --root {tmp_path} --datasets EuroSAT" in message
    assert "\n" not in message


def test_missing_dataset_folder_points_to_docs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"eurosat.*docs/DATASETS\.md"):
        load(tmp_path, "EuroSAT")
    os.makedirs(os.path.join(tmp_path, "eurosat"))
    with pytest.raises(FileNotFoundError, match=r"image folder .*2750"):
        load(tmp_path, "EuroSAT")


def test_missing_images_are_named(tmp_path):
    make_eurosat(str(tmp_path), n_classes=2)
    gone = os.path.join(tmp_path, "eurosat", "2750", "Forest", "Forest_3.jpg")
    os.remove(gone)
    with pytest.raises(FileNotFoundError, match="1 image.*Forest_3.jpg"):
        load(tmp_path, "EuroSAT")


def test_malformed_split_entry_is_named(tmp_path):
    facts = make_eurosat(str(tmp_path), n_classes=2)
    path = os.path.join(facts.dataset_dir, "split_zhou_EuroSAT.json")
    with open(path) as f:
        split = json.load(f)
    split["val"][1] = ["Forest/Forest_1.jpg", 1]
    with open(path, "w") as f:
        json.dump(split, f)
    with pytest.raises(ValueError, match=r"split_zhou_EuroSAT\.json\[val\]: entry 1"):
        read_split(path, facts.dataset_dir)


def test_unknown_dataset_name_suggests_close_match(tmp_path):
    with pytest.raises(KeyError, match="EuroSAT"):
        build_dataset(make_cfg(tmp_path, "EuroSat"))


def test_datum_is_read_only_and_dataset_base_api():
    item = Datum(impath="/a.jpg", label=2, domain=1, classname="cat")
    with pytest.raises(AttributeError):
        item.label = 3
    with pytest.raises(TypeError, match="impath"):
        Datum(impath=None)
    data = [Datum("/a.jpg", 2, 0, "cat"), Datum("/b.jpg", 0, 1, "dog")]
    dataset = DatasetBase(train_x=data, test=data)
    assert dataset.num_classes == 3 and dataset.lab2cname == {0: "dog", 2: "cat"}
    assert dataset.classnames == ["dog", "cat"]
    assert list(dataset.split_dataset_by_domain(data)) == [0, 1]
    dataset.domains = ["photo", "sketch"]
    dataset.check_input_domains(["photo"], ["sketch"])
    with pytest.raises(ValueError, match="'art'"):
        dataset.check_input_domains(["photo"], ["art"])
    with pytest.raises(ValueError, match="empty"):
        DatasetBase(train_x=[])


# ----------------------------------------------------------------------------------------------
# ImageFolder
# ----------------------------------------------------------------------------------------------
def test_imagefolder_splits_once_with_fixed_seed_and_renames(tmp_path):
    facts = make_imagefolder(str(tmp_path), subdir="mydata", classnames={"class_b": "blue thing"})
    random.seed(7)
    state = random.getstate()
    dataset = load(tmp_path, "ImageFolder", seed_random=7, IMAGEFOLDER_DIR="mydata")
    assert random.getstate() == state  # the split uses its own RNG, not the run's
    assert dataset.classnames == ["class_a", "blue thing", "class_c"] == facts.classnames
    assert (len(dataset.train_x), len(dataset.val), len(dataset.test)) == (15, 6, 9)
    split_path = os.path.join(tmp_path, "mydata", "split_imagefolder.json")
    assert os.path.isfile(split_path)

    with open(split_path) as f:
        first = json.load(f)
    os.remove(split_path)
    load(tmp_path, "ImageFolder", seed_random=123, NUM_SHOTS=2, IMAGEFOLDER_DIR="mydata")
    with open(split_path) as f:
        assert json.load(f) == first
    # the few-shot cache folder inside the data folder is not mistaken for a class
    os.remove(split_path)
    assert load(tmp_path, "ImageFolder", IMAGEFOLDER_DIR="mydata").num_classes == 3


def test_imagefolder_defaults_to_root(tmp_path):
    make_imagefolder(str(tmp_path), subdir="", n_classes=2)
    assert load(tmp_path, "ImageFolder").classnames == ["class_a", "class_b"]


# ----------------------------------------------------------------------------------------------
# fetch_splits (gdown mocked)
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def fake_gdown(monkeypatch):
    calls = []
    module = types.ModuleType("gdown")

    def download(url=None, output=None, quiet=False, id=None, **kwargs):
        calls.append(id)
        if module.fail:
            return None
        with open(output, "w") as f:
            f.write(f"downloaded {id}")
        return output

    module.download = download
    module.fail = False
    module.calls = calls
    monkeypatch.setitem(sys.modules, "gdown", module)
    return module


def test_fetch_splits_writes_into_dataset_folders(tmp_path, fake_gdown, capsys):
    os.makedirs(tmp_path / "oxford_flowers")
    (tmp_path / "oxford_flowers" / "cat_to_name.json").write_text("{}")
    code = fetch_splits.main(["--root", str(tmp_path), "--datasets", "eurosat", "OxfordFlowers", "imagenet_a", "dtd"])
    assert code == 0
    expected = {
        "eurosat/split_zhou_EuroSAT.json": "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o",
        "oxford_flowers/split_zhou_OxfordFlowers.json": "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT",
        "imagenet-adversarial/classnames.txt": "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF",
        "dtd/split_zhou_DescribableTextures.json": "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x",
    }
    for relative, file_id in expected.items():
        assert (tmp_path / relative).read_text() == f"downloaded {file_id}"
    assert (tmp_path / "oxford_flowers" / "cat_to_name.json").read_text() == "{}"  # existing: skipped
    assert sorted(fake_gdown.calls) == sorted(expected.values())


def test_fetch_splits_all_and_failure(tmp_path, fake_gdown, capsys):
    downloaded, skipped = fetch_splits.fetch_splits(str(tmp_path))
    # 9 split files + Flowers' cat_to_name.json + classnames.txt for ImageNet and its 4 variants
    assert len(downloaded) == 15 and not skipped
    assert fetch_splits.fetch_splits(str(tmp_path)) == ([], downloaded)

    fresh = tmp_path / "fresh"
    fake_gdown.fail = True
    assert fetch_splits.main(["--root", str(fresh), "--datasets", "EuroSAT"]) == 1
    err = capsys.readouterr().err
    assert "split_zhou_EuroSAT.json" in err and "drive.google.com/file/d/1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o" in err
    assert os.listdir(fresh / "eurosat") == []  # no partial file left behind
    assert fetch_splits.main(["--root", str(fresh), "--datasets", "cifar10"]) == 1
    assert "cifar10" in capsys.readouterr().err


def test_dataset_configs_name_registered_datasets():
    config_dir = os.path.join(os.path.dirname(__file__), "..", "configs", "datasets")
    names = {}
    for path in glob.glob(os.path.join(config_dir, "*.yaml")):
        cfg = get_cfg_default()
        cfg.merge_from_file(path)
        names[os.path.basename(path)] = cfg.DATASET.NAME
    assert names["eurosat.yaml"] == "EuroSAT" and names["dtd.yaml"] == "DescribableTextures"
    assert names["minishapes.yaml"] == "MiniShapes"
    assert len(names) == 17
    assert all(name in DATASET_REGISTRY for name in names.values())


def test_split_generation_needs_enough_images(tmp_path):
    make_dtd(str(tmp_path), with_split=False, n_classes=2, n_per_class=10)
    for extra in glob.glob(os.path.join(tmp_path, "dtd", "images", "blotchy", "*"))[2:]:
        os.remove(extra)
    with pytest.raises(ValueError, match="'blotchy' has 2 image"):
        load(tmp_path, "DescribableTextures", ALLOW_GENERATED_SPLIT=True)
    shutil.rmtree(os.path.join(tmp_path, "dtd", "images"))
    with pytest.raises(FileNotFoundError, match="images"):
        load(tmp_path, "DescribableTextures", ALLOW_GENERATED_SPLIT=True)


def test_list_naming_an_unknown_class_is_reported(tmp_path):
    facts = MAKERS["FGVCAircraft"](str(tmp_path))
    with open(os.path.join(facts.dataset_dir, "images_variant_test.txt"), "a") as f:
        f.write("0000001 Concorde\n")
    with pytest.raises(ValueError, match=r"images_variant_test\.txt: class 'Concorde' is not listed in variants\.txt"):
        load(tmp_path, "FGVCAircraft")


# --------------------------------------------------------- the original Dassl's few-shot pickles
_ORIGINAL_DATUM_SOURCE = '''
class Datum:
    """Stand-in for the original Dassl Datum: fields in an instance __dict__."""

    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname
'''


def _pickle_with_original_datum(payload_builder):
    """Pickle what ``payload_builder(Datum)`` returns, with ``Datum`` a stand-in of the original
    Dassl class registered under the same module path, as a CoOp-style dataset class writes
    ``split_fewshot/shot_K-seed_S.pkl`` under the original Dassl."""
    import pickle

    module_name = "dassl.data.datasets.base_dataset"
    ours = sys.modules[module_name]
    original = types.ModuleType(module_name)
    exec(_ORIGINAL_DATUM_SOURCE, original.__dict__)
    original.Datum.__module__ = module_name
    sys.modules[module_name] = original
    try:
        return pickle.dumps(payload_builder(original.Datum), protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        sys.modules[module_name] = ours


def test_original_dassl_fewshot_pickle_loads_into_our_datum(tmp_path):
    import pickle

    blob = _pickle_with_original_datum(lambda D: {
        "train": [D("/data/eurosat/2750/Forest/Forest_1.jpg", 1, 0, "Forest"),
                  D("/data/eurosat/2750/River/River_7.jpg", 8, 0, "River")],
        "val": [D("/data/eurosat/2750/Highway/Highway_3.jpg", 3, 0, "Highway")],
    })
    assert b"_impath" in blob  # the original's dict state, not ours
    path = tmp_path / "split_fewshot" / "shot_1-seed_1.pkl"
    path.parent.mkdir()
    path.write_bytes(blob)
    with open(path, "rb") as handle:  # exactly what CoOp's dataset classes do
        data = pickle.load(handle)
    train, val = data["train"], data["val"]
    assert all(type(item) is Datum for item in train + val)
    assert [(d.impath, d.label, d.domain, d.classname) for d in train] == [
        ("/data/eurosat/2750/Forest/Forest_1.jpg", 1, 0, "Forest"),
        ("/data/eurosat/2750/River/River_7.jpg", 8, 0, "River")]
    assert (val[0].impath, val[0].label, val[0].classname) == ("/data/eurosat/2750/Highway/Highway_3.jpg", 3, "Highway")
    with pytest.raises(AttributeError):
        train[0].label = 5  # still read-only
    # and our own Datum round-trips through pickle
    again = pickle.loads(pickle.dumps(train, protocol=2))
    assert [(d.impath, d.label, d.classname) for d in again] == [(d.impath, d.label, d.classname) for d in train]


def test_pickle_with_unknown_datum_fields_is_refused():
    import pickle

    blob = _pickle_with_original_datum(lambda D: _with_extra_field(D("a.jpg", 0, 0, "x")))
    with pytest.raises(TypeError, match=r"unknown field\(s\) \['colour'\]"):
        pickle.loads(blob)


def _with_extra_field(datum):
    datum._colour = "red"
    return datum
