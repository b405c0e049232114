"""Tests of dassl.data: transforms, samplers, DatasetWrapper and DataManager."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data import DataManager, DatasetWrapper, build_data_loader
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.data.samplers import (
    RandomClassSampler,
    RandomDomainSampler,
    SeqDomainSampler,
    build_sampler,
)
from dassl.data.transforms import InterpolationMode, build_transform
from dassl.data.transforms.transforms import Cutout

SIZE = 16
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CLASSNAMES = ["cat", "dog", "bird"]
SPLIT_SIZES = {"train": 10, "val": 4, "test": 7}


def make_cfg(**overrides):
    """Default config with a small input size, no workers and quiet output."""
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (SIZE, SIZE)
    cfg.INPUT.PIXEL_MEAN = CLIP_MEAN
    cfg.INPUT.PIXEL_STD = CLIP_STD
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.VERBOSE = False
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return cfg


def save_image(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return str(path)


def write_split_images(root):
    """Write images named <split>_<i>_<label>.png whose pixels vary per image."""
    rng = np.random.default_rng(0)
    for split, count in SPLIT_SIZES.items():
        for i in range(count):
            save_image(os.path.join(root, f"{split}_{i:02d}_{i % 3}.png"), rng.integers(0, 256, (20, 24, 3)))


@DATASET_REGISTRY.register(force=True)
class TinyDataManagerTestSet(DatasetBase):
    """Reads <split>_<i>_<label>.png files from cfg.DATASET.ROOT, sorted by name."""

    def __init__(self, cfg):
        names = sorted(os.listdir(cfg.DATASET.ROOT))

        def split(prefix):
            items = []
            for name in (n for n in names if n.startswith(prefix + "_")):
                label = int(name[:-4].split("_")[-1])
                items.append(Datum(os.path.join(cfg.DATASET.ROOT, name), label, 0, CLASSNAMES[label]))
            return items

        super().__init__(
            train_x=split("train"), train_u=split("unl") or None, val=split("val") or None, test=split("test")
        )


@pytest.fixture
def image_root(tmp_path):
    write_split_images(tmp_path)
    return tmp_path


def data_cfg(root, **overrides):
    cfg = make_cfg(**overrides)
    cfg.DATASET.NAME = "TinyDataManagerTestSet"
    cfg.DATASET.ROOT = str(root)
    return cfg


def epoch_indices(loader):
    return [int(i) for batch in loader for i in batch["index"]]


# ----------------------------------------------------------------------------- transforms


def test_train_transform_gives_normalised_square_tensor():
    cfg = make_cfg()
    image = Image.fromarray(np.full((30, 50, 3), 128, dtype=np.uint8))
    out = build_transform(cfg, is_train=True)(image)
    assert out.shape == (3, SIZE, SIZE)
    expected = (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    # A constant image stays constant under crop/flip, so every pixel is the normalised colour.
    assert torch.allclose(out, expected.view(3, 1, 1).expand(3, SIZE, SIZE), atol=1e-5)


def test_test_transform_normalises_each_channel():
    cfg = make_cfg()
    colour = (200, 30, 90)
    image = Image.new("RGB", (40, 25), colour)
    out = build_transform(cfg, is_train=False)(image)
    assert out.shape == (3, SIZE, SIZE)
    for channel in range(3):
        expected = (colour[channel] / 255 - CLIP_MEAN[channel]) / CLIP_STD[channel]
        assert torch.allclose(out[channel], torch.full((SIZE, SIZE), expected), atol=1e-5)


def test_test_transform_resizes_shorter_side_then_centre_crops():
    # Three vertical bands; after resizing the height to SIZE the centre crop sees only the middle band.
    array = np.zeros((SIZE, 3 * SIZE, 3), dtype=np.uint8)
    array[:, :SIZE] = (255, 0, 0)
    array[:, SIZE:2 * SIZE] = (0, 255, 0)
    array[:, 2 * SIZE:] = (0, 0, 255)
    cfg = make_cfg(**{"INPUT.TRANSFORMS": ()})
    out = build_transform(cfg, is_train=False)(Image.fromarray(array))
    assert out.shape == (3, SIZE, SIZE)
    assert torch.equal(out[1], torch.ones(SIZE, SIZE))
    assert out[0].abs().max() == 0 and out[2].abs().max() == 0


@pytest.mark.parametrize("name, mode", [("bilinear", InterpolationMode.BILINEAR),
                                        ("bicubic", InterpolationMode.BICUBIC),
                                        ("nearest", InterpolationMode.NEAREST)])
def test_interpolation_key_selects_resize_mode(name, mode):
    cfg = make_cfg(**{"INPUT.INTERPOLATION": name})
    test_resize = build_transform(cfg, is_train=False).transforms[0]
    train_crop = build_transform(cfg, is_train=True).transforms[0]
    assert test_resize.interpolation == mode
    assert train_crop.interpolation == mode


def test_unknown_interpolation_is_named():
    cfg = make_cfg(**{"INPUT.INTERPOLATION": "lanczos"})
    with pytest.raises(ValueError, match="INPUT.INTERPOLATION='lanczos'"):
        build_transform(cfg, is_train=False)


def test_unknown_transform_name_lists_supported_names():
    cfg = make_cfg(**{"INPUT.TRANSFORMS": ("random_flip", "random_flop")})
    with pytest.raises(ValueError, match=r"random_flop.*INPUT.TRANSFORMS.*random_resized_crop"):
        build_transform(cfg, is_train=True)
    with pytest.raises(ValueError, match=r"\['blur'\] in choices"):
        build_transform(make_cfg(), is_train=True, choices=["blur"])


def test_no_transform_returns_none():
    assert build_transform(make_cfg(**{"INPUT.NO_TRANSFORM": True}), is_train=True) is None


def test_every_transform_name_builds_and_runs():
    names = ("random_flip", "random_resized_crop", "normalize", "instance_norm", "random_crop",
             "random_translation", "center_crop", "cutout", "imagenet_policy", "cifar10_policy",
             "svhn_policy", "randaugment", "randaugment_fixmatch", "randaugment2", "gaussian_noise",
             "colorjitter", "randomgrayscale", "gaussian_blur")
    cfg = make_cfg(**{"INPUT.GB_K": 3, "INPUT.CUTOUT_LEN": 4})
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 28, 3), dtype=np.uint8))
    for name in names:
        out = build_transform(cfg, is_train=True, choices=[name])(image)
        assert out.shape == (3, SIZE, SIZE), name


def test_random_augmentation_is_reproducible_from_the_seeds():
    """torch's seed for the torch-based transforms; randaugment is Dassl's, which draws from Python's
    random and NumPy (the trainer and every loader worker seed all three)."""
    import random

    cfg = make_cfg(**{"INPUT.CUTOUT_LEN": 6, "INPUT.GB_K": 3})
    choices = ["random_translation", "random_flip", "colorjitter", "randaugment", "gaussian_blur",
               "cutout", "normalize", "gaussian_noise"]
    tfm = build_transform(cfg, is_train=True, choices=choices)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (20, 28, 3), dtype=np.uint8))

    def run(seed):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        return torch.stack([tfm(image) for _ in range(4)])

    first, second, third = run(5), run(5), run(6)
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_cutout_zeroes_one_clipped_square_in_all_channels():
    torch.manual_seed(0)
    for _ in range(20):
        out = Cutout(n_holes=1, length=6)(torch.ones(3, 12, 12))
        zero = out[0] == 0
        assert torch.equal(zero, out[1] == 0) and torch.equal(zero, out[2] == 0)
        rows, cols = zero.any(1).sum().item(), zero.any(0).sum().item()
        assert zero.sum().item() == rows * cols  # one rectangle
        assert 3 <= rows <= 6 and 3 <= cols <= 6


# ----------------------------------------------------------------------------- samplers


def domain_data(counts):
    return [Datum(f"d{d}_{i}.png", label=i % 4, domain=d) for d, n in enumerate(counts) for i in range(n)]


def test_seq_domain_sampler_balances_domains_and_knows_its_length():
    data = domain_data([6, 9, 7])
    sampler = SeqDomainSampler(data, batch_size=6)
    indices = list(sampler)
    assert len(sampler) == len(indices) == 3 * 6  # min(6, 9, 7) // 2 rounds
    domains = torch.tensor([data[i].domain for i in indices]).view(-1, 3, 2)
    assert torch.equal(domains, torch.tensor([0, 1, 2]).view(1, 3, 1).expand(3, 3, 2))
    assert len(set(indices)) == len(indices)


def test_random_domain_sampler_batches_hold_n_domains():
    data = domain_data([8, 8, 8, 8])
    sampler = RandomDomainSampler(data, batch_size=4, n_domain=2)
    indices = list(sampler)
    assert len(indices) % 4 == 0 and len(set(indices)) == len(indices)
    for batch in torch.tensor(indices).view(-1, 4).tolist():
        domains = [data[i].domain for i in batch]
        assert domains[0] == domains[1] and domains[2] == domains[3] and domains[0] != domains[2]


def test_random_class_sampler_batches_hold_n_ins_per_class():
    data = [Datum(f"{i}.png", label=i % 5) for i in range(40)]
    sampler = RandomClassSampler(data, batch_size=8, n_ins=4)
    indices = list(sampler)
    assert len(indices) == 40
    for batch in torch.tensor(indices).view(-1, 8).tolist():
        labels = [data[i].label for i in batch]
        assert len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1 and labels[0] != labels[4]


def test_sampler_length_does_not_touch_global_rng():
    data = domain_data([5, 7, 9])
    state = torch.get_rng_state()
    len(RandomDomainSampler(data, batch_size=4, n_domain=2))
    len(RandomClassSampler(data, batch_size=4, n_ins=2))
    assert torch.equal(state, torch.get_rng_state())


def test_build_sampler_errors():
    data = domain_data([4, 4])
    with pytest.raises(ValueError, match="unknown sampler type 'RandomSamplr'.*RandomSampler"):
        build_sampler("RandomSamplr", data_source=data)
    with pytest.raises(ValueError, match="not divisible"):
        build_sampler("SeqDomainSampler", data_source=data, batch_size=3)
    with pytest.raises(NotImplementedError, match="distributed"):
        build_sampler("RandomSampler", data_source=data, distributed=True)


# ----------------------------------------------------------------------------- DatasetWrapper


def test_dataset_wrapper_item_fields(tmp_path):
    paths = [save_image(tmp_path / f"{i}.png", np.full((20, 30, 3), 40 * i)) for i in range(3)]
    data = [Datum(p, label=i, domain=1, classname=CLASSNAMES[i]) for i, p in enumerate(paths)]
    cfg = make_cfg(**{"DATALOADER.RETURN_IMG0": True})
    wrapper = DatasetWrapper(cfg, data, transform=build_transform(cfg, is_train=False))
    item = wrapper[2]
    assert set(item) == {"label", "domain", "impath", "index", "img", "img0"}
    assert (item["label"], item["domain"], item["impath"], item["index"]) == (2, 1, paths[2], 2)
    assert item["img"].shape == item["img0"].shape == (3, SIZE, SIZE)
    expected = (80 / 255 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert torch.allclose(item["img0"][0], torch.full((SIZE, SIZE), expected), atol=1e-5)


def test_dataset_wrapper_multiple_views(tmp_path):
    data = [Datum(save_image(tmp_path / "a.png", np.zeros((20, 20, 3))), label=0)]
    cfg = make_cfg(**{"DATALOADER.K_TRANSFORMS": 3})
    tfm = build_transform(cfg, is_train=True)
    train_item = DatasetWrapper(cfg, data, transform=[tfm, tfm], is_train=True)[0]
    assert len(train_item["img"]) == 3 and len(train_item["img2"]) == 3
    # K_TRANSFORMS applies only to training.
    assert DatasetWrapper(cfg, data, transform=tfm, is_train=False)[0]["img"].shape == (3, SIZE, SIZE)
    with pytest.raises(ValueError, match="K_TRANSFORMS=3"):
        DatasetWrapper(cfg, data, transform=None, is_train=True)


def test_corrupt_or_missing_image_error_names_path(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not a png")
    missing = str(tmp_path / "missing.jpg")
    cfg = make_cfg()
    wrapper = DatasetWrapper(cfg, [Datum(str(corrupt)), Datum(missing)], transform=build_transform(cfg, False))
    with pytest.raises(match="corrupt.png"):
        wrapper[0]
    with pytest.raises(match="missing.jpg"):
        wrapper[1]


def test_skip_bad_images_returns_next_readable_item(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"garbage")
    good = save_image(tmp_path / "good.png", np.zeros((20, 20, 3)))
    cfg = make_cfg(**{"DATALOADER.SKIP_BAD_IMAGES": True})
    wrapper = DatasetWrapper(cfg, [Datum(str(corrupt), label=0), Datum(good, label=2)],
                             transform=build_transform(cfg, False))
    item = wrapper[0]
    assert (item["index"], item["label"], item["impath"]) == (1, 2, good)
    assert "corrupt.png" in capsys.readouterr().out


# ----------------------------------------------------------------------------- DataManager


def test_data_manager_loaders_and_attributes(image_root):
    cfg = data_cfg(image_root, **{"DATALOADER.TRAIN_X.BATCH_SIZE": 4, "DATALOADER.TEST.BATCH_SIZE": 3})
    dm = DataManager(cfg)
    assert dm.num_classes == 3
    assert dm.lab2cname == {0: "cat", 1: "dog", 2: "bird"}
    assert dm.num_source_domains == 0
    assert dm.train_loader_u is None
    # 10 training images, batch 4, drop_last -> 2 full batches.
    assert len(dm.train_loader_x) == 2
    batches = list(dm.train_loader_x)
    assert [len(b["index"]) for b in batches] == [4, 4]
    assert batches[0]["img"].shape == (4, 3, SIZE, SIZE)
    assert len(dm.val_loader) == 2
    # Test loader: 7 images, batch 3, nothing dropped, sequential order.
    assert [len(b["index"]) for b in dm.test_loader] == [3, 3, 1]
    assert epoch_indices(dm.test_loader) == list(range(7))
    labels = torch.cat([b["label"] for b in dm.test_loader]).tolist()
    assert labels == [i % 3 for i in range(7)]


def test_small_train_set_keeps_its_only_batch(image_root):
    cfg = data_cfg(image_root, **{"DATALOADER.TRAIN_X.BATCH_SIZE": 32})
    dm = DataManager(cfg)
    assert len(dm.train_loader_x) == 1
    assert sorted(epoch_indices(dm.train_loader_x)) == list(range(10))


def test_no_val_split_gives_no_val_loader(image_root):
    for path in image_root.glob("val_*"):
        path.unlink()
    assert DataManager(data_cfg(image_root)).val_loader is None


@pytest.mark.parametrize("same_as_x, expected_batches", [(True, [4]), (False, [3, 3])])
def test_unlabelled_loader_batching(image_root, same_as_x, expected_batches):
    for i in range(6):
        save_image(image_root / f"unl_{i:02d}_0.png", np.zeros((20, 20, 3)))
    cfg = data_cfg(image_root, **{"DATALOADER.TRAIN_X.BATCH_SIZE": 4, "DATALOADER.TRAIN_U.BATCH_SIZE": 3,
                                  "DATALOADER.TRAIN_U.SAME_AS_X": same_as_x})
    dm = DataManager(cfg)
    # 6 unlabelled images: batch 4 drops the last 2; batch 3 gives two full batches.
    assert [len(b["index"]) for b in dm.train_loader_u] == expected_batches
    assert len(dm.train_loader_u) == len(expected_batches)


def test_training_order_follows_torch_seed(image_root):
    cfg = data_cfg(image_root, **{"DATALOADER.TRAIN_X.BATCH_SIZE": 2})
    dm = DataManager(cfg)

    def two_epochs(seed):
        torch.manual_seed(seed)
        return [epoch_indices(dm.train_loader_x) for _ in range(2)]

    first, again, other = two_epochs(1), two_epochs(1), two_epochs(2)
    assert first == again
    assert first != other
    assert first[0] != first[1]
    assert sorted(first[0]) == list(range(10))


def test_resume_at_epoch_boundary_reproduces_order_and_eval_leaves_rng_alone(image_root):
    cfg = data_cfg(image_root, **{"DATALOADER.TRAIN_X.BATCH_SIZE": 2})
    dm = DataManager(cfg)
    torch.manual_seed(3)
    epoch_indices(dm.train_loader_x)
    saved = torch.get_rng_state()
    list(dm.test_loader)
    list(dm.val_loader)
    assert torch.equal(saved, torch.get_rng_state())
    next_epoch = epoch_indices(dm.train_loader_x)
    torch.manual_seed(99)
    torch.set_rng_state(saved)
    assert epoch_indices(dm.train_loader_x) == next_epoch


def test_worker_augmentation_is_reproducible_with_workers(image_root):
    cfg = data_cfg(image_root, **{"DATALOADER.TRAIN_X.BATCH_SIZE": 5, "DATALOADER.NUM_WORKERS": 2,
                                  "INPUT.TRANSFORMS": ("random_resized_crop", "random_flip", "cutout")})
    dm = DataManager(cfg)

    def epoch(seed):
        torch.manual_seed(seed)
        batches = list(dm.train_loader_x)
        return torch.cat([b["index"] for b in batches]), torch.cat([b["img"] for b in batches])

    (idx_a, img_a), (idx_b, img_b), (idx_c, img_c) = epoch(4), epoch(4), epoch(5)
    assert torch.equal(idx_a, idx_b) and torch.equal(img_a, img_b)
    assert not torch.equal(img_a, img_c)


def test_explicit_generator_drives_training_order(image_root):
    cfg = data_cfg(image_root, **{"DATALOADER.TRAIN_X.BATCH_SIZE": 2})
    orders = []
    for _ in range(2):
        dm = DataManager(cfg, generator=torch.Generator().manual_seed(7))
        torch.manual_seed(len(orders))  # the global seed must not matter
        orders.append(epoch_indices(dm.train_loader_x))
    assert orders[0] == orders[1]


def test_summary_table_lists_split_sizes(image_root, capsys):
    cfg = data_cfg(image_root)
    cfg.VERBOSE = True
    DataManager(cfg)
    out = capsys.readouterr().out
    for row in ("TinyDataManagerTestSet", "# classes", "# train_x", "# val", "# test"):
        assert row in out
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("# ")] == ["3", "10", "4", "7"]


def test_custom_transforms_and_wrapper_are_used(image_root):
    class TaggedWrapper(DatasetWrapper):
        def __getitem__(self, idx):
            item = super().__getitem__(idx)
            item["tag"] = "custom"
            return item

    cfg = data_cfg(image_root)
    dm = DataManager(cfg, custom_tfm_test=lambda img: torch.zeros(1), dataset_wrapper=TaggedWrapper)
    batch = next(iter(dm.test_loader))
    assert batch["tag"][0] == "custom"
    assert batch["img"].shape == (7, 1)


def test_empty_data_source_is_rejected():
    with pytest.raises(ValueError, match="empty data source"):
        build_data_loader(make_cfg(), data_source=[], batch_size=4)
