"""dassl.data.transforms.randaugment: Dassl's RandAugment, RandAugment2 and RandAugmentFixMatch.

The expectations here are written out independently of the module: Dassl's operation lists
(order and ranges), the values ``m / 30 * (high - low) + low``, pixel results computed with
NumPy or with the PIL calls spelled out below, and the random draws replayed by hand on a
copy of the generator state (``random.Random`` / ``np.random.RandomState``).
"""
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from conftest import REPO
from dassl.config import get_cfg_default
from dassl.data.transforms import build_transform
from dassl.data.transforms import randaugment as RA

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Dassl's lists: (operation, low, high) in the order random.choices indexes them.
DASSL_RANDAUGMENT = [
    ("auto_contrast", 0, 1), ("equalize", 0, 1), ("invert", 0, 1), ("rotate", 0, 30),
    ("posterize", 4, 8), ("solarize", 0, 256), ("solarize_add", 0, 110), ("color", 0.1, 1.9),
    ("contrast", 0.1, 1.9), ("brightness", 0.1, 1.9), ("sharpness", 0.1, 1.9),
    ("shear_x", 0.0, 0.3), ("shear_y", 0.0, 0.3), ("cutout_abs", 0, 40),
    ("translate_x_abs", 0.0, 100), ("translate_y_abs", 0.0, 100),
]
DASSL_RANDAUGMENT2 = [
    ("auto_contrast", 0, 1), ("brightness", 0.1, 1.9), ("color", 0.1, 1.9), ("contrast", 0.1, 1.9),
    ("equalize", 0, 1), ("identity", 0, 1), ("invert", 0, 1), ("posterize", 4, 8),
    ("rotate", -30, 30), ("sharpness", 0.1, 1.9), ("shear_x", -0.3, 0.3), ("shear_y", -0.3, 0.3),
    ("solarize", 0, 256), ("translate_x", -0.3, 0.3), ("translate_y", -0.3, 0.3),
]
DASSL_FIXMATCH = [
    ("auto_contrast", 0, 1), ("brightness", 0.05, 0.95), ("color", 0.05, 0.95),
    ("contrast", 0.05, 0.95), ("equalize", 0, 1), ("identity", 0, 1), ("posterize", 4, 8),
    ("rotate", -30, 30), ("sharpness", 0.05, 0.95), ("shear_x", -0.3, 0.3), ("shear_y", -0.3, 0.3),
    ("solarize", 0, 256), ("translate_x", -0.3, 0.3), ("translate_y", -0.3, 0.3),
]
# Operations that draw random.random() once for their sign.
SIGNED = {"rotate", "shear_x", "shear_y", "translate_x", "translate_y", "translate_x_abs",
          "translate_y_abs"}

# The value each RandAugment operation gets at m = 10 (one third of its range).
AT_M10 = {
    "auto_contrast": 1 / 3, "equalize": 1 / 3, "invert": 1 / 3, "rotate": 10.0,
    "posterize": 16 / 3, "solarize": 256 / 3, "solarize_add": 110 / 3, "color": 0.7,
    "contrast": 0.7, "brightness": 0.7, "sharpness": 0.7, "shear_x": 0.1, "shear_y": 0.1,
    "cutout_abs": 40 / 3, "translate_x_abs": 100 / 3, "translate_y_abs": 100 / 3,
}


def rgb(height, width, seed=0, low=0, high=256):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(low, high, (height, width, 3), dtype=np.uint8))


def arr(img):
    return np.asarray(img)


def recording(table, log):
    """``table`` with every operation replaced by one that logs (name, value) and returns the
    image unchanged."""
    def make(name):
        def op(img, value):
            log.append((name, value))
            return img
        return op
    return tuple((make(op.__name__), low, high) for op, low, high in table)


def py_rng():
    rng = random.Random()
    rng.setstate(random.getstate())
    return rng


def np_rng():
    rng = np.random.RandomState()
    rng.set_state(np.random.get_state())
    return rng


def same_np_state(a, b):
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def expected_op(name, im, value, np_replay):
    """What Dassl's operation ``name`` returns for ``im`` at the (already signed) ``value``,
    written with PIL / NumPy calls; cutout's centre is drawn from ``np_replay``."""
    w, h = im.size
    if name == "solarize_add":
        added = np.clip(arr(im).astype(int) + value, 0, 255).astype(np.uint8)
        return Image.fromarray(np.where(added < 128, added, 255 - added).astype(np.uint8))
    if name == "cutout_abs":
        cx, cy = np_replay.uniform(low=w), np_replay.uniform(low=h)
        left, top = int(max(0, cx - value / 2)), int(max(0, cy - value / 2))
        out = im.copy()
        ImageDraw.Draw(out).rectangle((left, top, min(w, left + value), min(h, top + value)),
                                      (125, 123, 114))
        return out
    affine = {
        "shear_x": (1, value, 0, 0, 1, 0), "shear_y": (1, 0, 0, value, 1, 0),
        "translate_x": (1, 0, value * w, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, value * h),
        "translate_x_abs": (1, 0, value, 0, 1, 0), "translate_y_abs": (1, 0, 0, 0, 1, value),
    }
    if name in affine:
        return im.transform(im.size, Image.Transform.AFFINE, affine[name])
    return {
        "identity": lambda: im,
        "auto_contrast": lambda: ImageOps.autocontrast(im),
        "equalize": lambda: ImageOps.equalize(im),
        "invert": lambda: ImageOps.invert(im),
        "rotate": lambda: im.rotate(value),
        "posterize": lambda: ImageOps.posterize(im, int(value)),
        "solarize": lambda: ImageOps.solarize(im, value),
        "color": lambda: ImageEnhance.Color(im).enhance(value),
        "contrast": lambda: ImageEnhance.Contrast(im).enhance(value),
        "brightness": lambda: ImageEnhance.Brightness(im).enhance(value),
        "sharpness": lambda: ImageEnhance.Sharpness(im).enhance(value),
    }[name]()


def replay_call(img, table, n, value_of, p=None):
    """Replay one call of a RandAugment variant from the current ``random`` / ``numpy.random``
    states (left untouched): the ``n`` picks (floor(random() * len) each, all first), then per
    pick the skip draw (``p`` given), the value, the sign draw of signed ops and cutout's
    NumPy draws. Returns (expected image, picked names, random state, numpy state)."""
    rng, np_replay = py_rng(), np_rng()
    names = [table[int(rng.random() * len(table))][0] for _ in range(n)]
    ranges = {name: (low, high) for name, low, high in table}
    for name in names:
        if p is not None and rng.random() > p:
            continue
        value = value_of(rng, *ranges[name])
        if name in SIGNED and rng.random() > 0.5:
            value = -value
        img = expected_op(name, img, value, np_replay)
    return img, names, rng.getstate(), np_replay.get_state()


def seeds_with_first_draw(above):
    """Seeds whose first ``random.random()`` is above 0.5 (``above``) or not."""
    return [s for s in range(40) if (random.Random(s).random() > 0.5) == above][:3]


# ----------------------------------------------------------------------------- op tables


@pytest.mark.parametrize("table, expected", [
    (RA.RANDAUGMENT_OPS, DASSL_RANDAUGMENT),
    (RA.RANDAUGMENT2_OPS, DASSL_RANDAUGMENT2),
    (RA.FIXMATCH_OPS, DASSL_FIXMATCH),
], ids=["randaugment", "randaugment2", "fixmatch"])
def test_op_tables_are_dassls_in_order(table, expected):
    assert [(op.__name__, low, high) for op, low, high in table] == expected


def test_classes_use_their_tables():
    assert RA.RandAugment().ops is RA.RANDAUGMENT_OPS and len(RA.RandAugment.ops) == 16
    assert RA.RandAugment2().ops is RA.RANDAUGMENT2_OPS and len(RA.RandAugment2.ops) == 15
    assert RA.RandAugmentFixMatch().ops is RA.FIXMATCH_OPS and len(RA.RandAugmentFixMatch.ops) == 14
    assert (RA.RandAugment().n, RA.RandAugment().m) == (2, 10)
    assert (RA.RandAugment2().n, RA.RandAugment2().p) == (2, 0.6)
    assert RA.RandAugmentFixMatch().n == 2


# ----------------------------------------------------------------------------- RandAugment


def test_randaugment_values_at_m10():
    log = []
    ra = RA.RandAugment(n=400, m=10)
    ra.ops = recording(RA.RANDAUGMENT_OPS, log)
    random.seed(0)
    ra(rgb(4, 4))
    assert {name for name, _ in log} == set(AT_M10)  # every op drawn at least once in 400
    for name, value in log:
        assert value == pytest.approx(AT_M10[name], rel=1e-12, abs=1e-12), name
        low, high = {n: (lo, hi) for n, lo, hi in DASSL_RANDAUGMENT}[name]
        assert value == (10 / 30) * (high - low) + low  # the exact float Dassl computes


@pytest.mark.parametrize("m, expected", [(0, {"rotate": 0.0, "posterize": 4.0, "color": 0.1}),
                                         (30, {"rotate": 30.0, "posterize": 8.0, "color": 1.9})])
def test_randaugment_values_at_the_ends_of_the_scale(m, expected):
    log = []
    ra = RA.RandAugment(n=300, m=m)
    ra.ops = recording(RA.RANDAUGMENT_OPS, log)
    random.seed(1)
    ra(rgb(4, 4))
    values = dict(log)
    for name, value in expected.items():
        assert values[name] == pytest.approx(value), name


@pytest.mark.parametrize("n", [0, 1, 2, 5])
@pytest.mark.parametrize("seed", range(8))
def test_randaugment_draws_n_ops_with_choices_then_the_signs(n, seed):
    """The picks are random.choices over the 16 ops (floor(random() * 16) each, all first);
    then each signed op draws once; cutout draws two NumPy uniforms. Nothing else."""
    random.seed(seed)
    np.random.seed(seed)
    img = rgb(12, 10, seed)
    expected, names, py_state, np_state = replay_call(
        img, DASSL_RANDAUGMENT, n, lambda rng, low, high: (10 / 30) * (high - low) + low)
    out = RA.RandAugment(n, 10)(img)
    assert (out.mode, out.size) == (expected.mode, expected.size)
    assert np.array_equal(arr(out), arr(expected)), names
    assert random.getstate() == py_state
    assert same_np_state(np.random.get_state(), np_state)


@pytest.mark.parametrize("make", [lambda: RA.RandAugment(3, 10), lambda: RA.RandAugment2(3),
                                  lambda: RA.RandAugmentFixMatch(3)],
                         ids=["randaugment", "randaugment2", "fixmatch"])
def test_outputs_are_determined_by_the_seed(make):
    img = rgb(30, 26, 4)
    distinct = set()
    for seed in range(20):
        runs = []
        for _ in range(2):
            random.seed(seed)
            np.random.seed(seed)
            runs.append(arr(make()(img)).tobytes())
        assert runs[0] == runs[1], seed
        distinct.add(runs[0])
    assert len(distinct) >= 10  # and the seed does matter


def test_randaugment_leaves_torch_rng_alone():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    random.seed(0)
    for _ in range(20):
        RA.RandAugment(2, 10)(rgb(9, 9))
    assert torch.equal(torch.get_rng_state(), state)


# ----------------------------------------------------------------------------- single operations


def test_pixelwise_operations():
    img = rgb(5, 7, 1)
    a = arr(img).astype(int)
    assert np.array_equal(arr(RA.invert(img, 0.3)), 255 - a)
    assert np.array_equal(arr(RA.posterize(img, 16 / 3)), a & 0b11111000)  # int(5.33) = 5 bits
    assert np.array_equal(arr(RA.solarize(img, 256 / 3)), np.where(a < 256 / 3, a, 255 - a))
    added = np.clip(a + 110 / 3, 0, 255).astype(np.uint8).astype(int)  # truncation to uint8
    out = RA.solarize_add(img, 110 / 3)
    assert out.mode == "RGB" and np.array_equal(arr(out), np.where(added < 128, added, 255 - added))
    assert RA.identity(img, 0.5) is img


def test_enhance_and_histogram_operations_are_the_pil_calls():
    img = rgb(9, 8, 2, low=40, high=200)
    assert np.array_equal(arr(RA.auto_contrast(img, 0)), arr(ImageOps.autocontrast(img)))
    assert not np.array_equal(arr(RA.auto_contrast(img, 0)), arr(img))
    assert np.array_equal(arr(RA.equalize(img, 0)), arr(ImageOps.equalize(img)))
    for name, enhancer in [("color", ImageEnhance.Color), ("contrast", ImageEnhance.Contrast),
                           ("brightness", ImageEnhance.Brightness), ("sharpness", ImageEnhance.Sharpness)]:
        out = getattr(RA, name)(img, 0.7)
        assert np.array_equal(arr(out), arr(enhancer(img).enhance(0.7))), name
        assert not np.array_equal(arr(out), arr(img)), name
    black = np.zeros_like(arr(img))
    assert np.array_equal(arr(RA.brightness(img, 0.0)), black)


def shifted(a, dx=0, dy=0):
    """Output pixel (y, x) = input (y + dy, x + dx), black outside."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    for y in range(h):
        for x in range(w):
            if 0 <= y + dy < h and 0 <= x + dx < w:
                out[y, x] = a[y + dy, x + dx]
    return out


def sheared(a, v, axis):
    """Nearest-neighbour sampling of PIL's affine (1, v, 0, 0, 1, 0) (axis x) or
    (1, 0, 0, v, 1, 0) (axis y) at pixel centres."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    for y in range(h):
        for x in range(w):
            if axis == "x":
                xi, yi = int(np.floor(x + 0.5 + v * (y + 0.5))), y
            else:
                xi, yi = x, int(np.floor(y + 0.5 + v * (x + 0.5)))
            if 0 <= xi < w and 0 <= yi < h:
                out[y, x] = a[yi, xi]
    return out


@pytest.mark.parametrize("negate", [False, True])
def test_geometric_operations_and_their_sign_draw(negate):
    """A first random.random() above 0.5 negates the value; exactly one draw per call."""
    img = rgb(6, 8, 3)
    a = arr(img)
    sign = -1 if negate else 1
    cases = [
        (RA.translate_x_abs, 2.0, shifted(a, dx=2 * sign)),
        (RA.translate_y_abs, 3.0, shifted(a, dy=3 * sign)),
        (RA.translate_x, 0.25, shifted(a, dx=2 * sign)),  # 0.25 * width 8
        (RA.translate_y, 0.45, shifted(a, dy=3 * sign)),  # 2.7 px, sampled at pixel centres
        (RA.shear_x, 0.3, sheared(a, 0.3 * sign, "x")),
        (RA.shear_y, 0.3, sheared(a, 0.3 * sign, "y")),
        (RA.rotate, 10.0, arr(img.rotate(10.0 * sign))),
    ]
    for seed in seeds_with_first_draw(above=negate):
        for op, value, expected in cases:
            random.seed(seed)
            replay = py_rng()
            out = op(img, value)
            replay.random()
            assert random.getstate() == replay.getstate(), op.__name__
            assert np.array_equal(arr(out), expected), (op.__name__, seed)


def test_translate_y_fraction_is_of_the_height():
    img = rgb(10, 4, 5)
    random.seed(seeds_with_first_draw(above=False)[0])
    assert np.array_equal(arr(RA.translate_y(img, 0.3)), shifted(arr(img), dy=3))


def test_cutout_abs_pastes_the_fixed_colour_square_from_numpy_draws():
    img = rgb(10, 12, 6)
    for seed in range(30):
        np.random.seed(seed)
        replay = np_rng()
        state = random.getstate()
        out = RA.cutout_abs(img, 4)
        # Dassl's draw: uniform(low=width) with high=1, i.e. a centre in (1, width].
        cx, cy = replay.uniform(low=12), replay.uniform(low=10)
        assert 1 < cx <= 12 and 1 < cy <= 10
        left, top = int(max(0, cx - 2)), int(max(0, cy - 2))
        expected = arr(img).copy()
        expected[top:top + 5, left:left + 5] = (125, 123, 114)  # PIL rectangles include the far edge
        assert np.array_equal(arr(out), expected), seed
        assert same_np_state(np.random.get_state(), replay.get_state())
        assert random.getstate() == state
    assert np.array_equal(arr(img), arr(rgb(10, 12, 6)))  # the input is not painted on


@pytest.mark.parametrize("op, value", [(RA.rotate, 31), (RA.rotate, -30.5), (RA.posterize, 3.9),
                                       (RA.solarize, 257), (RA.color, 2.1), (RA.shear_x, 0.31),
                                       (RA.shear_y, -0.4), (RA.translate_x, 0.5),
                                       (RA.translate_x_abs, -1)])
def test_values_outside_an_operations_range_raise(op, value):
    state = random.getstate()
    with pytest.raises(ValueError, match=op.__name__):
        op(rgb(4, 4), value)
    assert random.getstate() == state  # checked before the sign draw


@pytest.mark.parametrize("kwargs, cls", [({"m": 31}, RA.RandAugment), ({"m": -1}, RA.RandAugment),
                                         ({"n": -1}, RA.RandAugment), ({"n": 1.5}, RA.RandAugment2),
                                         ({"n": -2}, RA.RandAugmentFixMatch)])
def test_invalid_constructor_arguments_raise(kwargs, cls):
    with pytest.raises(ValueError):
        cls(**kwargs)


# ----------------------------------------------------------------------------- RandAugment2, FixMatch


@pytest.mark.parametrize("p", [0.0, 0.6, 1.0])
def test_randaugment2_skips_with_probability_and_draws_value_then_sign(p):
    table = {name: (low, high) for name, low, high in DASSL_RANDAUGMENT2}
    for seed in range(10):
        random.seed(seed)
        replay = py_rng()
        log = []
        ra2 = RA.RandAugment2(n=4, p=p)
        ra2.ops = recording(RA.RANDAUGMENT2_OPS, log)
        ra2(rgb(4, 4))
        picks = [DASSL_RANDAUGMENT2[int(replay.random() * 15)][0] for _ in range(4)]
        expected = []
        for name in picks:
            if replay.random() > p:
                continue
            low, high = table[name]
            expected.append((name, replay.random() * (high - low) + low))
        assert log == expected
        if p == 1.0:
            assert [name for name, _ in log] == picks
        if p == 0.0:
            assert log == []
        # (the recorders do not draw signs; the real ops do, checked below)
        assert random.getstate() == replay.getstate()


def test_randaugment2_real_ops_pixels_and_rng():
    img = rgb(8, 8, 7)
    for seed in range(40):
        random.seed(seed)
        np.random.seed(seed)
        expected, names, py_state, np_state = replay_call(
            img, DASSL_RANDAUGMENT2, 3, lambda rng, low, high: rng.random() * (high - low) + low, p=0.6)
        out = RA.RandAugment2(n=3, p=0.6)(img)
        assert np.array_equal(arr(out), arr(expected)), (seed, names)
        assert random.getstate() == py_state, seed
        assert same_np_state(np.random.get_state(), np_state)


def test_fixmatch_draws_uniform_values_in_its_ranges():
    table = {name: (low, high) for name, low, high in DASSL_FIXMATCH}
    for seed in range(10):
        random.seed(seed)
        replay = py_rng()
        log = []
        fm = RA.RandAugmentFixMatch(n=5)
        fm.ops = recording(RA.FIXMATCH_OPS, log)
        fm(rgb(4, 4))
        picks = [DASSL_FIXMATCH[int(replay.random() * 14)][0] for _ in range(5)]
        expected = []
        for name in picks:
            low, high = table[name]
            expected.append((name, replay.random() * (high - low) + low))
        assert log == expected
        assert random.getstate() == replay.getstate()
    assert "invert" not in table and "cutout_abs" not in table and "solarize_add" not in table


def test_fixmatch_real_ops_pixels_and_rng():
    img = rgb(8, 8, 8)
    for seed in range(40):
        random.seed(seed)
        np.random.seed(seed)
        np_before = np.random.get_state()
        expected, names, py_state, _ = replay_call(
            img, DASSL_FIXMATCH, 2, lambda rng, low, high: rng.random() * (high - low) + low)
        out = RA.RandAugmentFixMatch(n=2)(img)
        assert np.array_equal(arr(out), arr(expected)), (seed, names)
        assert random.getstate() == py_state, seed
        assert same_np_state(np.random.get_state(), np_before)  # no cutout: NumPy untouched


# ----------------------------------------------------------------------------- build_transform


def make_cfg(transforms, size=(32, 32), n=2, m=10):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.PIXEL_MEAN = CLIP_MEAN
    cfg.INPUT.PIXEL_STD = CLIP_STD
    cfg.INPUT.TRANSFORMS = transforms
    cfg.INPUT.RANDAUGMENT_N = n
    cfg.INPUT.RANDAUGMENT_M = m
    return cfg


def test_coprompt_pipeline_resizes_then_randaugments():
    """["randaugment", "normalize"] (CoPrompt's config): resize to INPUT.SIZE, RandAugment(N, M),
    to tensor, normalise -- Dassl's order; Python's random (and NumPy for cutout) is consumed
    as by the RandAugment call alone, torch's RNG not at all."""
    tfm = build_transform(make_cfg(["randaugment", "normalize"]), is_train=True)
    assert [type(t).__name__ for t in tfm.transforms] == ["Resize", "RandAugment", "ToTensor", "Normalize"]
    assert (tfm.transforms[1].n, tfm.transforms[1].m) == (2, 10)
    img = rgb(45, 37, 9)
    resized = img.resize((32, 32), Image.Resampling.BICUBIC)
    for seed in range(16):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        torch_state = torch.get_rng_state()
        augmented, names, py_state, np_state = replay_call(
            resized, DASSL_RANDAUGMENT, 2, lambda rng, low, high: (10 / 30) * (high - low) + low)
        out = tfm(img)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        std = torch.tensor(CLIP_STD).view(3, 1, 1)
        expected = (torch.from_numpy(arr(augmented).copy()).permute(2, 0, 1).float() / 255 - mean) / std
        assert torch.equal(out, expected), (seed, names)
        assert random.getstate() == py_state, seed
        assert same_np_state(np.random.get_state(), np_state), seed
        assert torch.equal(torch.get_rng_state(), torch_state)


def test_the_three_names_get_dassls_arguments_in_dassls_order():
    cfg = make_cfg(["randaugment2", "normalize", "randaugment_fixmatch", "random_flip",
                    "randaugment", "random_resized_crop"], n=3, m=17)
    tfm = build_transform(cfg, is_train=True)
    steps = tfm.transforms
    assert [type(t).__name__ for t in steps] == [
        "RandomResizedCrop", "RandomHorizontalFlip", "RandAugment", "RandAugmentFixMatch",
        "RandAugment2", "ToTensor", "Normalize"]
    assert (steps[2].n, steps[2].m) == (3, 17)
    assert steps[3].n == 3
    assert (steps[4].n, steps[4].p) == (3, 0.6)
    assert "RandAugment(n=3, m=17)" in repr(tfm)
    random.seed(0)
    assert tfm(rgb(50, 40, 1)).shape == (3, 32, 32)


@pytest.mark.parametrize("name", ["randaugment_fixmatch", "randaugment2"])
def test_random_magnitude_variants_follow_a_resize(name):
    tfm = build_transform(make_cfg([name], size=(24, 40)), is_train=True)
    assert [type(t).__name__ for t in tfm.transforms][:2] == ["Resize", {
        "randaugment_fixmatch": "RandAugmentFixMatch", "randaugment2": "RandAugment2"}[name]]
    random.seed(3)
    assert tfm(rgb(33, 17, 2)).shape == (3, 24, 40)


def test_randaugment_pipelines_do_not_import_torchvision():
    code = textwrap.dedent("""
        import random, sys
        import numpy as np
        from PIL import Image
        from dassl.config import get_cfg_default
        from dassl.data.transforms import build_transform
        cfg = get_cfg_default()
        cfg.INPUT.SIZE = (32, 32)
        img = Image.fromarray(np.zeros((40, 30, 3), dtype=np.uint8))
        random.seed(0)
        for name in ("randaugment", "randaugment_fixmatch", "randaugment2"):
            tfm = build_transform(cfg, is_train=True, choices=[name, "normalize"])
            assert tuple(tfm(img).shape) == (3, 32, 32)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torchvision")
        assert not loaded, loaded[:5]
        print("no torchvision: ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO),
                          env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no torchvision: ok" in proc.stdout
