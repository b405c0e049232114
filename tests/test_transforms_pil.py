"""dassl.data.transforms.pil_transforms against torchvision.

The default train/test pipelines, ``DatasetWrapper``'s ``img0`` and ``clip.make_preprocess`` use
these torchvision-free re-implementations so that ``train.py`` never imports torchvision (~1.6 s
per start). They must stay bit-identical to torchvision's PIL code path: every op is compared
with ``torch.equal`` on generated images (odd sizes, portrait and landscape, smaller than the
crop, RGB and L), and every random op must also leave torch's generator in the same state.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

import clip
from conftest import REPO
from dassl.config import get_cfg_default
from dassl.data import DatasetWrapper
from dassl.data.datasets import Datum
from dassl.data.transforms import INTERPOLATION_MODES, build_transform
from dassl.data.transforms import pil_transforms as P
from dassl.data.transforms.transforms import Random2DTranslation

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
MODES = ["nearest", "bilinear", "bicubic"]
# (height, width): odd, portrait, landscape, square, tiny, very wide, very tall.
SHAPES = [(37, 53), (53, 37), (20, 20), (7, 11), (16, 100), (101, 13), (64, 48)]
SEEDS = range(12)


def _image(height, width, mode, seed):
    rng = np.random.default_rng(seed)
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), mode="L")
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


IMAGES = [_image(h, w, mode, seed) for seed, (h, w) in enumerate(SHAPES) for mode in ("RGB", "L")]
IMAGE_IDS = [f"{img.mode}{img.height}x{img.width}" for img in IMAGES]


def tv_mode(name):
    return T.InterpolationMode(name)


def pixels(img):
    """A PIL image (or a tensor) as a tensor, for ``torch.equal``."""
    if isinstance(img, torch.Tensor):
        return img
    return torch.from_numpy(np.array(img))


def assert_same(ours, theirs):
    if isinstance(theirs, Image.Image):
        assert isinstance(ours, Image.Image)
        assert (ours.mode, ours.size) == (theirs.mode, theirs.size)
    assert torch.equal(pixels(ours), pixels(theirs))


def same_rng_run(seed, fn_ours, fn_theirs):
    """Run both under the same seed; assert equal outputs and equal generator states after."""
    torch.manual_seed(seed)
    ours = fn_ours()
    ours_state = torch.get_rng_state()
    torch.manual_seed(seed)
    theirs = fn_theirs()
    assert torch.equal(ours_state, torch.get_rng_state()), f"RNG state differs (seed {seed})"
    return ours, theirs


def make_cfg(size=(32, 32), interpolation="bicubic",
             transforms=("random_resized_crop", "random_flip", "normalize")):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    cfg.INPUT.INTERPOLATION = interpolation
    cfg.INPUT.PIXEL_MEAN = CLIP_MEAN
    cfg.INPUT.PIXEL_STD = CLIP_STD
    cfg.INPUT.TRANSFORMS = transforms
    return cfg


# ----------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize("name", MODES)
def test_interpolation_modes_use_torchvisions_pil_filters(name):
    ours = INTERPOLATION_MODES[name]
    assert ours is P.InterpolationMode(name) and ours.value == name
    assert ours.pil_filter == TF.pil_modes_mapping[tv_mode(name)]
    # torchvision's enum (e.g. from user code) and plain names are accepted too.
    assert P.InterpolationMode.coerce(tv_mode(name)) is ours
    assert P.InterpolationMode.coerce(name) is ours


def test_unsupported_interpolation_is_named():
    with pytest.raises(ValueError, match="'lanczos'.*nearest, bilinear, bicubic"):
        P.Resize(8, interpolation="lanczos")


# ----------------------------------------------------------------------------- deterministic ops


@pytest.mark.parametrize("name", MODES)
@pytest.mark.parametrize("size", [16, 31, [9], (24, 17), (53, 37)])
def test_resize_matches_torchvision(size, name):
    for img in IMAGES:
        ours = P.Resize(size, interpolation=name)(img)
        assert_same(ours, T.Resize(size, interpolation=tv_mode(name))(img))
        assert_same(P.resize(img, size, name), TF.resize(img, list(size) if isinstance(size, tuple) else size,
                                                         interpolation=tv_mode(name)))


def test_resize_shorter_side_truncates_the_longer_one():
    # 16 * 53 / 37 = 22.92 -> 22 (not rounded to 23); 16 * 100 / 16 = 100 exactly.
    assert P.Resize(16)(_image(37, 53, "RGB", 0)).size == (22, 16)
    assert P.Resize(16)(_image(53, 37, "RGB", 0)).size == (16, 22)
    assert P.resized_shape(37, 53, 16) == tuple(TF._compute_resized_output_size((37, 53), [16]))
    for height in range(1, 60):
        for width in range(1, 60, 7):
            for size in (1, 7, 32, 224):
                expected = TF._compute_resized_output_size((height, width), [size])
                assert list(P.resized_shape(height, width, size)) == expected


def test_resize_to_the_current_size_returns_the_image_itself():
    img = IMAGES[0]
    assert P.Resize((img.height, img.width))(img) is img
    assert P.Resize(min(img.size))(img) is img


@pytest.mark.parametrize("size", [16, 31, [9], (24, 17), (10, 60), (60, 10), 120, (53, 37), (37, 53)])
def test_center_crop_matches_torchvision_including_zero_padding(size):
    for img in IMAGES:
        assert_same(P.CenterCrop(size)(img), T.CenterCrop(size)(img))


def test_center_crop_pads_other_modes_like_torchvision():
    rgb = IMAGES[0]
    for img in (rgb.convert("RGBA"), rgb.convert("P"), rgb.convert("1")):
        for size in (60, (10, 60), (45, 45)):
            ours, theirs = P.CenterCrop(size)(img), T.CenterCrop(size)(img)
            assert_same(ours, theirs)
            if img.mode == "P":
                assert ours.getpalette() == theirs.getpalette()


def test_crop_matches_torchvision_inside_and_outside_the_image():
    img = IMAGES[0]
    for top, left, height, width in [(0, 0, 5, 7), (3, 10, 20, 30), (-4, -2, 10, 10), (30, 45, 20, 20)]:
        assert_same(P.crop(img, top, left, height, width), TF.crop(img, top, left, height, width))


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "1", "LA", "CMYK"])
def test_to_tensor_matches_torchvision(mode):
    for img in IMAGES[::2]:
        converted = img.convert(mode)
        ours = P.ToTensor()(converted)
        assert ours.dtype == torch.float32
        assert_same(ours, T.ToTensor()(converted))


def test_to_tensor_follows_the_default_dtype():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert_same(P.to_tensor(IMAGES[0]), TF.to_tensor(IMAGES[0]))
        assert P.to_tensor(IMAGES[0]).dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("mode", ["I", "F", "I;16"])
def test_to_tensor_refuses_wide_modes(mode):
    with pytest.raises(ValueError, match=f"mode '{mode}'.*convert"):
        P.to_tensor(IMAGES[1].convert(mode) if mode != "I;16" else Image.new("I;16", (4, 3)))


def test_normalize_matches_torchvision_and_leaves_its_input_alone():
    for img in IMAGES:
        tensor = TF.to_tensor(img)
        mean, std = (CLIP_MEAN, CLIP_STD) if img.mode == "RGB" else ([0.45], [0.27])
        before = tensor.clone()
        assert_same(P.Normalize(mean, std)(tensor), T.Normalize(mean, std)(tensor))
        assert torch.equal(tensor, before)
    batch = torch.rand(2, 3, 5, 4)
    assert_same(P.Normalize(CLIP_MEAN, CLIP_STD)(batch), T.Normalize(CLIP_MEAN, CLIP_STD)(batch))
    with pytest.raises(ValueError, match="zero"):
        P.Normalize([0.5], [0.0])(torch.rand(1, 2, 2))
    with pytest.raises(TypeError, match="float"):
        P.Normalize([0.5], [0.5])(torch.zeros(1, 2, 2, dtype=torch.uint8))


# ----------------------------------------------------------------------------- random ops


@pytest.mark.parametrize("name", MODES)
@pytest.mark.parametrize("size, scale, ratio", [
    (16, (0.08, 1.0), (3 / 4, 4 / 3)),
    ((24, 17), (0.08, 1.0), (3 / 4, 4 / 3)),
    ([9], (0.5, 1.0), (0.5, 2.0)),
    (20, (0.9, 1.0), (3 / 4, 4 / 3)),  # large areas: many tries fail, some fall back
])
def test_random_resized_crop_matches_torchvision_and_its_rng_use(size, scale, ratio, name):
    ours_tfm = P.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=name)
    theirs_tfm = T.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=tv_mode(name))
    for img in IMAGES:
        for seed in SEEDS:
            ours, theirs = same_rng_run(seed, lambda: ours_tfm(img), lambda: theirs_tfm(img))
            assert_same(ours, theirs)


@pytest.mark.parametrize("shape, scale", [
    ((16, 100), (0.9, 1.0)),   # too wide for any allowed ratio: centred crop of the full height
    ((101, 13), (0.9, 1.0)),   # too tall: centred crop of the full width
    ((20, 20), (1.0, 1.0)),    # the whole image only fits at ratio 1: falls back to all of it
])
def test_random_resized_crop_fallback_matches_torchvision(shape, scale):
    img = _image(*shape, "RGB", 0)
    ratio = (3 / 4, 4 / 3)
    fell_back = 0
    for seed in SEEDS:
        ours, theirs = same_rng_run(seed, lambda: P.RandomResizedCrop.get_params(img, scale, ratio),
                                    lambda: T.RandomResizedCrop.get_params(img, list(scale), list(ratio)))
        assert ours == theirs
        top, left, height, width = ours
        fell_back += (top, left) == ((img.height - height) // 2, (img.width - width) // 2)
    assert fell_back > len(SEEDS) // 2


@pytest.mark.parametrize("p", [0.5, 0.3, 0.0, 1.0])
def test_random_horizontal_flip_matches_torchvision_and_its_rng_use(p):
    flips = 0
    for img in IMAGES:
        for seed in SEEDS:
            ours, theirs = same_rng_run(seed, lambda: P.RandomHorizontalFlip(p)(img),
                                        lambda: T.RandomHorizontalFlip(p)(img))
            assert_same(ours, theirs)
            flips += ours is not img
    if 0 < p < 1:
        assert 0 < flips < len(IMAGES) * len(SEEDS)


def test_random_2d_translation_matches_the_torchvision_functions():
    """Random2DTranslation now calls our resize/crop; the same draws through torchvision's."""

    def with_torchvision(img, t):
        if torch.rand(()).item() > t.p:
            return TF.resize(img, [t.height, t.width], interpolation=tv_mode(t.interpolation.value))
        width, height = int(round(t.width * 1.125)), int(round(t.height * 1.125))
        enlarged = TF.resize(img, [height, width], interpolation=tv_mode(t.interpolation.value))
        left = int(round(torch.rand(()).item() * (width - t.width)))
        top = int(round(torch.rand(()).item() * (height - t.height)))
        return TF.crop(enlarged, top, left, t.height, t.width)

    for name in MODES:
        tfm = Random2DTranslation(24, 17, interpolation=INTERPOLATION_MODES[name])
        for img in IMAGES:
            for seed in range(6):
                assert_same(*same_rng_run(seed, lambda: tfm(img), lambda: with_torchvision(img, tfm)))


# ----------------------------------------------------------------------------- pipelines


def torchvision_train_pipeline(cfg):
    size, mode = tuple(cfg.INPUT.SIZE), tv_mode(cfg.INPUT.INTERPOLATION)
    return T.Compose([
        T.RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=mode),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD),
    ])


def torchvision_test_pipeline(cfg):
    size, mode = tuple(cfg.INPUT.SIZE), tv_mode(cfg.INPUT.INTERPOLATION)
    return T.Compose([
        T.Resize(max(size), interpolation=mode),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD),
    ])


@pytest.mark.parametrize("size, interpolation", [((32, 32), "bicubic"), ((24, 40), "bicubic"),
                                                 ((224, 224), "bicubic"), ((32, 32), "bilinear")])
def test_default_pipelines_equal_torchvision(size, interpolation):
    cfg = make_cfg(size=size, interpolation=interpolation)
    ours_train, theirs_train = build_transform(cfg, is_train=True), torchvision_train_pipeline(cfg)
    ours_test, theirs_test = build_transform(cfg, is_train=False), torchvision_test_pipeline(cfg)
    images = [img for img in IMAGES if img.mode == "RGB"] + [_image(300, 227, "RGB", 9)]
    seeds = SEEDS
    if size == (224, 224):  # the real size, upsampling and downsampling; kept short (slow tensors)
        images, seeds = [images[0], images[-1]], range(3)
    for img in images:
        for seed in seeds:
            assert_same(*same_rng_run(seed, lambda: ours_train(img), lambda: theirs_train(img)))
        assert_same(ours_test(img), theirs_test(img))


def test_dataset_wrapper_img0_equals_torchvision(tmp_path):
    cfg = make_cfg(size=(24, 40))
    cfg.DATALOADER.RETURN_IMG0 = True
    img = _image(37, 53, "RGB", 3)
    path = str(tmp_path / "a.png")
    img.save(path)
    item = DatasetWrapper(cfg, [Datum(path)], transform=None)[0]
    expected = T.Compose([T.Resize((24, 40), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                          T.Normalize(CLIP_MEAN, CLIP_STD)])(img)
    assert_same(item["img0"], expected)


def test_clip_preprocess_equals_torchvision():
    for resolution, images in ((32, IMAGES), (224, IMAGES[:2])):
        theirs = T.Compose([T.Resize(resolution, interpolation=T.InterpolationMode.BICUBIC),
                            T.CenterCrop(resolution), lambda im: im.convert("RGB"), T.ToTensor(),
                            T.Normalize(clip.CLIP_MEAN, clip.CLIP_STD)])
        for img in images:
            assert_same(clip.make_preprocess(resolution)(img), theirs(img))


def test_pipeline_reprs_name_every_step():
    cfg = make_cfg(size=(24, 40))
    assert repr(build_transform(cfg, is_train=True)) == (
        "Compose(\n"
        "    RandomResizedCrop(size=(24, 40), scale=(0.08, 1.0), ratio=(0.75, 1.3333), interpolation=bicubic)\n"
        "    RandomHorizontalFlip(p=0.5)\n"
        "    ToTensor()\n"
        f"    Normalize(mean={CLIP_MEAN}, std={CLIP_STD})\n"
        ")"
    )
    test_repr = repr(build_transform(cfg, is_train=False))
    assert "Resize(size=40, interpolation=bicubic)" in test_repr and "CenterCrop(size=(24, 40))" in test_repr


def test_non_pil_inputs_raise_type_error():
    tensor = torch.rand(3, 8, 8)
    for op in (P.Resize(4), P.CenterCrop(4), P.RandomResizedCrop(4), P.RandomHorizontalFlip(), P.ToTensor()):
        with pytest.raises(TypeError, match="expects a PIL image, got torch.Tensor"):
            op(tensor)
    with pytest.raises(TypeError, match="PIL image, got numpy.ndarray"):
        P.crop(np.zeros((8, 8, 3), dtype=np.uint8), 0, 0, 4, 4)
    with pytest.raises(TypeError, match="expects a tensor"):
        P.Normalize(CLIP_MEAN, CLIP_STD)(IMAGES[0])


def test_rare_transform_still_uses_torchvision():
    cfg = make_cfg()
    tfm = build_transform(cfg, is_train=True, choices=["random_flip", "colorjitter", "normalize"])
    theirs = T.Compose([T.Resize((32, 32), interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip(),
                        T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)])
    img = IMAGES[0]
    for seed in range(5):
        ours, expected = same_rng_run(seed, lambda: tfm(img), lambda: theirs(img))
        assert_same(ours, expected)


# ----------------------------------------------------------------------------- no torchvision import

# What train.py does up to the first batch, short of loading data and CLIP weights: import it,
# build the config of a real trainer config file as train.py does, the train and test
# transforms, an item of DatasetWrapper (with img0), CLIP's preprocessing and the environment
# report. torchvision must not have been imported. Then a rare augmentation imports it lazily.
_NO_TORCHVISION_PROBE = textwrap.dedent("""
    import sys

    import numpy as np
    from PIL import Image

    import train
    import clip
    import trainers  # noqa: F401
    from dassl.data.data_manager import DatasetWrapper
    from dassl.data.datasets import Datum
    from dassl.data.transforms import build_transform
    from dassl.utils import collect_env_info

    args = train.build_parser().parse_args([
        "--trainer", "CoOp", "--dataset-config-file", "configs/datasets/eurosat.yaml",
        "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml", "--device", "cpu",
        "DATALOADER.RETURN_IMG0", "True"])
    cfg = train.setup_cfg(args)
    assert cfg.INPUT.INTERPOLATION == "bicubic"
    assert list(cfg.INPUT.TRANSFORMS) == ["random_resized_crop", "random_flip", "normalize"]
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    path = sys.argv[1]
    image.save(path)
    train_tfm = build_transform(cfg, is_train=True)
    test_tfm = build_transform(cfg, is_train=False)
    item = DatasetWrapper(cfg, [Datum(path)], transform=train_tfm, is_train=True)[0]
    assert item["img"].shape == item["img0"].shape == (3, 224, 224)
    assert test_tfm(image).shape == (3, 224, 224)
    assert clip.make_preprocess(32)(image).shape == (3, 32, 32)
    assert "Torchvision: " in collect_env_info()
    loaded = sorted(name for name in sys.modules if name.split(".")[0] == "torchvision")
    assert not loaded, f"torchvision was imported: {loaded[:5]}"
    assert "torch._dynamo" not in sys.modules

    jitter = build_transform(cfg, is_train=True, choices=["random_resized_crop", "colorjitter"])
    assert "torchvision" in sys.modules
    assert jitter(image).shape == (3, 224, 224)
    print("no torchvision: ok")
""")


@pytest.mark.slow
def test_train_py_path_does_not_import_torchvision(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _NO_TORCHVISION_PROBE, str(tmp_path / "a.png")],
                          cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-2000:]}\nSTDERR:\n{proc.stderr[-3000:]}"
    assert "no torchvision: ok" in proc.stdout


@pytest.mark.slow
def test_a_whole_train_py_run_does_not_import_torchvision(tmp_path, eurosat_root, tiny_clip_path):
    """One epoch of CoOp and its evaluation through ``train.cli``, in a fresh interpreter."""
    argv = [
        "--root", eurosat_root, "--seed", "1", "--trainer", "CoOp",
        "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
        "--config-file", str(REPO / "configs/smoke/tiny_clip.yaml"),
        "--output-dir", str(tmp_path / "run"), "--backbone", tiny_clip_path, "--device", "cpu",
        "DATASET.NUM_SHOTS", "2", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32",
        "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0",  # transforms run in this process
    ]
    code = textwrap.dedent(f"""
        import sys
        import train
        assert train.cli({argv!r}) == 0
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "torchvision")
        assert not loaded, f"torchvision was imported: {{loaded[:5]}}"
        print("no torchvision: ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PROMPTCLIP_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-3000:]}"
    assert "no torchvision: ok" in proc.stdout
    assert os.path.isfile(tmp_path / "run" / "results.json")
