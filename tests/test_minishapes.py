"""MiniShapes: the compositional split, deterministic rendering, and the dataset writing itself."""
import json
import os
from collections import Counter

import pytest
import torch

from datasets import minishapes as world
from dassl.config import get_cfg_default


# ----------------------------------------------------------------------------------------------
# The class split
# ----------------------------------------------------------------------------------------------
def test_base_and_new_share_every_attribute_but_no_composition():
    pairs = world.compositions()
    assert len(pairs) == 64 and len(set(pairs)) == 64
    base, new = pairs[:32], pairs[32:]
    assert all(world.is_base(*p) for p in base) and not any(world.is_base(*p) for p in new)
    for half in (base, new):
        assert Counter(c for c, _ in half) == {c: 4 for c in range(8)}
        assert Counter(s for _, s in half) == {s: 4 for s in range(8)}
    assert not set(base) & set(new)


def test_held_out_compositions_are_new_classes_two_per_colour_and_per_shape():
    pairs = world.compositions()
    held_out = [p for p in pairs if world.is_held_out(*p)]
    assert len(held_out) == 16
    assert all(pairs.index(p) >= 32 for p in held_out)
    assert Counter(c for c, _ in held_out) == {c: 2 for c in range(8)}
    assert Counter(s for _, s in held_out) == {s: 2 for s in range(8)}
    seen = [p for p in pairs if not world.is_held_out(*p)]
    assert Counter(c for c, _ in seen) == {c: 6 for c in range(8)}
    assert Counter(s for _, s in seen) == {s: 6 for s in range(8)}


def test_class_names_are_real_words():
    assert world.classname(0, 0) == "red circle"
    assert world.classname(5, 6) == "purple heart"
    names = [world.classname(*p) for p in world.compositions()]
    assert len(set(names)) == 64


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
def _render(style, seed, n=16):
    colours = torch.arange(n) % 8
    shapes = torch.arange(n) // 2 % 8
    return world.render(colours, shapes, style, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("style", ["web", "field"])
def test_rendering_is_deterministic_in_the_seed(style):
    first, again, other = _render(style, 0), _render(style, 0), _render(style, 1)
    assert first.shape == (16, 3, 32, 32)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1


def test_shapes_differ_in_their_masks():
    """With everything else fixed, the eight shapes cover eight different pixel sets."""
    grid = (torch.arange(64, dtype=torch.float32) + 0.5) / 64 * 2 - 1
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    x, y = x.expand(8, 64, 64), y.expand(8, 64, 64)
    masks = world._shape_masks(x * 1.1, y * 1.1, torch.arange(8))
    areas = masks.float().mean((1, 2))
    assert (areas > 0.1).all() and (areas < 0.8).all()
    for i in range(8):
        for j in range(i + 1, 8):
            differing = (masks[i] ^ masks[j]).float().mean()
            assert differing > 0.04, (world.SHAPES[i], world.SHAPES[j])


def test_the_object_has_its_colour():
    """The most saturated pixels of a web render are close to the composition's palette colour."""
    generator = torch.Generator().manual_seed(3)
    for colour in range(8):
        image = world.render(torch.tensor([colour]), torch.tensor([0]), "web", generator)[0]
        target = torch.tensor(world.COLOURS[world.COLOUR_NAMES[colour]])
        distances = (image - target[:, None, None]).norm(dim=0)
        assert (distances < 0.2).float().sum() >= 20, world.COLOUR_NAMES[colour]


def test_unknown_style_is_an_error():
    with pytest.raises(ValueError, match="'sketch'"):
        world.render(torch.tensor([0]), torch.tensor([0]), "sketch", torch.Generator())


# ----------------------------------------------------------------------------------------------
# The dataset on disk
# ----------------------------------------------------------------------------------------------
def _cfg(root, subsample="all", shots=-1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "MiniShapes"
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = 1
    return cfg


@pytest.fixture(scope="module")
def minishapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    world.MiniShapes(_cfg(root))
    return root


def test_the_dataset_writes_itself_in_the_split_file_layout(minishapes_root):
    folder = minishapes_root / "minishapes"
    split = json.loads((folder / "split_minishapes.json").read_text())
    assert {k: len(v) for k, v in split.items()} == {"train": 64 * 40, "val": 64 * 10, "test": 64 * 30}
    path, label, name = split["test"][0]
    assert (folder / "images" / path).is_file() and label == 0 and name == "red circle"
    assert sorted(os.listdir(folder / "images"))[:2] == ["00_red_circle", "01_red_triangle"]
    assert not [n for n in os.listdir(minishapes_root) if n.startswith(".minishapes")]  # staging removed
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    labels = {record[1]: record[2] for record in split["train"]}
    assert labels == {i: world.classname(*p) for i, p in enumerate(world.compositions())}


def test_the_written_images_are_the_rendered_ones(minishapes_root):
    from PIL import Image

    rendered = world.render_benchmark()["test"]
    on_disk = Image.open(minishapes_root / "minishapes" / "images" / "05_orange_star" / "test_007.png")
    assert torch.equal(torch.tensor(__import__("numpy").array(on_disk)), rendered[5, 7])


def test_base_to_novel_subsampling_gives_the_checkerboard(minishapes_root):
    base = world.MiniShapes(_cfg(minishapes_root, "base", shots=16))
    new = world.MiniShapes(_cfg(minishapes_root, "new", shots=16))
    assert base.num_classes == 32 and new.num_classes == 32
    assert len(base.train_x) == 32 * 16 and len(new.test) == 32 * 30
    base_names = set(base.classnames)
    assert base_names == {world.classname(*p) for p in world.compositions()[:32]}
    assert not base_names & set(new.classnames)


def test_second_use_reads_the_split_without_rendering(minishapes_root, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(world, "render_split", fail)
    assert world.MiniShapes(_cfg(minishapes_root)).num_classes == 64


def test_a_folder_without_split_file_is_an_error_and_is_left_alone(tmp_path):
    stale = tmp_path / "minishapes"
    (stale / "images").mkdir(parents=True)
    (stale / "keep.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="holds no split_minishapes.json; delete the folder"):
        world.MiniShapes(_cfg(tmp_path))
    assert (stale / "keep.txt").read_text() == "mine"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".minishapes")]


@pytest.mark.parametrize("style", ["web", "field"])
def test_painting_in_chunks_does_not_change_the_images(style, monkeypatch):
    whole = _render(style, 4, n=20)
    monkeypatch.setattr(world, "_PAINT_CHUNK", 7)
    assert torch.equal(_render(style, 4, n=20), whole)
