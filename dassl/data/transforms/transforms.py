"""Image transforms built from ``cfg.INPUT`` (Dassl-compatible names and pipeline order).

``build_transform(cfg, is_train)`` turns the list of names in ``cfg.INPUT.TRANSFORMS`` into a
``Compose`` (``pil_transforms.Compose``). The position of each operation in the pipeline is
fixed, so the order in which names are listed in a config does not matter -- the same rule and
the same order as Dassl's: resize to ``INPUT.SIZE`` (only when neither ``random_crop`` nor
``random_resized_crop`` is listed), random translation, random crop, random resized crop,
random flip, the AutoAugment policies, ``randaugment``, ``randaugment_fixmatch``,
``randaugment2``, colour jitter, random grayscale, gaussian blur, ``ToTensor``, cutout,
normalize, gaussian noise, instance norm.

Random number generators: the custom transforms defined below (random translation, cutout,
gaussian noise) and the torchvision / ``pil_transforms`` ones draw from torch's RNG. The
RandAugment family draws from Python's ``random`` and NumPy's global generator, exactly as
Dassl's does. The DataLoader seeds all three in each worker; with ``NUM_WORKERS 0`` they are
the ones ``set_random_seed`` seeded.

torchvision is not imported by the default pipelines: resize, centre crop, random resized crop,
horizontal flip, to-tensor and normalisation come from ``pil_transforms`` (bit-identical to
torchvision's, same RNG calls), and the RandAugment family from ``randaugment`` (PIL and NumPy
only), which saves ~1.6 s per process start. torchvision is imported, inside
``_build_transform_train``, only when a config asks for one of the rarer augmentations
(``random_crop``, the AutoAugment policies, ``colorjitter``, ``randomgrayscale``,
``gaussian_blur``).

``randaugment``, ``randaugment_fixmatch`` and ``randaugment2`` are Dassl's own augmenters,
re-implemented in ``randaugment.py`` (same output pixels, same ``random`` / ``numpy.random``
calls) and built with Dassl's arguments: ``RandAugment(INPUT.RANDAUGMENT_N,
INPUT.RANDAUGMENT_M)`` (N operations from a list of 16, each at the fixed value
``M / 30 * (high - low) + low``), ``RandAugmentFixMatch(INPUT.RANDAUGMENT_N)`` and
``RandAugment2(INPUT.RANDAUGMENT_N)`` (N operations at uniformly random values; RandAugment2
applies each with probability 0.6). ``INPUT.RANDAUGMENT_M`` is used by ``randaugment`` only.

Deviations from Dassl, all documented here:
- ``imagenet_policy`` / ``cifar10_policy`` / ``svhn_policy`` use torchvision's ``AutoAugment``
  with the matching ``AutoAugmentPolicy`` (same published policies; fill colour is black
  instead of Dassl's grey).
- ``random_translation``, ``cutout`` and ``gaussian_noise`` draw from torch's RNG instead of
  Python's ``random`` / NumPy (same distributions).
"""
import torch

from .pil_transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
    crop,
    resize,
)
from .randaugment import RandAugment, RandAugment2, RandAugmentFixMatch

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

# Transform name -> member name of torchvision's ``AutoAugmentPolicy`` (looked up only when
# used, so that merely importing this module does not import torchvision).
_AUTOAUGMENT_POLICIES = {
    "imagenet_policy": "IMAGENET",
    "cifar10_policy": "CIFAR10",
    "svhn_policy": "SVHN",
}

# Names whose transform comes from torchvision (imported only when one of them is chosen).
_TORCHVISION_CHOICES = frozenset([
    "random_crop", *_AUTOAUGMENT_POLICIES, "colorjitter", "randomgrayscale", "gaussian_blur",
])


class Random2DTranslation:
    """With probability ``p``, enlarge the image by 1/8 and crop a random ``height x width``
    window back out; otherwise resize straight to ``height x width``.

    Acts on PIL images.
    """

    def __init__(self, height, width, p=0.5, interpolation=InterpolationMode.BILINEAR):
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img):
        if torch.rand(()).item() > self.p:
            return resize(img, (self.height, self.width), interpolation=self.interpolation)
        enlarged_width = int(round(self.width * 1.125))
        enlarged_height = int(round(self.height * 1.125))
        enlarged = resize(img, (enlarged_height, enlarged_width), interpolation=self.interpolation)
        left = int(round(torch.rand(()).item() * (enlarged_width - self.width)))
        top = int(round(torch.rand(()).item() * (enlarged_height - self.height)))
        return crop(enlarged, top=top, left=left, height=self.height, width=self.width)

    def __repr__(self):
        return f"{type(self).__name__}(height={self.height}, width={self.width}, p={self.p})"


class InstanceNormalization:
    """Standardise each channel of a ``(C, H, W)`` tensor by its own mean and std."""

    def __init__(self, eps=1e-8):
        self.eps = eps

    def __call__(self, img):
        channels = img.shape[0]
        flat = img.reshape(channels, -1)
        mean = flat.mean(1).view(channels, 1, 1)
        std = flat.std(1).view(channels, 1, 1)
        return (img - mean) / (std + self.eps)

    def __repr__(self):
        return f"{type(self).__name__}(eps={self.eps})"


class Cutout:
    """Zero ``n_holes`` square patches of side ``length`` centred at random pixels of a
    ``(C, H, W)`` tensor; patches are clipped at the borders."""

    def __init__(self, n_holes=1, length=16):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img):
        height, width = img.shape[-2:]
        centre_y = torch.randint(height, (self.n_holes, 1))
        centre_x = torch.randint(width, (self.n_holes, 1))
        half = self.length // 2
        rows = torch.arange(height).unsqueeze(0)
        cols = torch.arange(width).unsqueeze(0)
        # A pixel is inside hole n when both its row and its column fall in that hole's span.
        in_rows = (rows >= centre_y - half) & (rows < centre_y + half)
        in_cols = (cols >= centre_x - half) & (cols < centre_x + half)
        covered = (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).any(0)
        return img * (~covered).to(img.dtype)

    def __repr__(self):
        return f"{type(self).__name__}(n_holes={self.n_holes}, length={self.length})"


class GaussianNoise:
    """With probability ``p``, add i.i.d. ``N(mean, std^2)`` noise to a tensor image."""

    def __init__(self, mean=0.0, std=0.15, p=0.5):
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img):
        if torch.rand(()).item() > self.p:
            return img
        return img + torch.randn(img.shape) * self.std + self.mean

    def __repr__(self):
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, p={self.p})"


def input_size_from_cfg(cfg):
    """``cfg.INPUT.SIZE`` as a ``(height, width)`` tuple; a single int means a square."""
    size = cfg.INPUT.SIZE
    if isinstance(size, int):
        return (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"INPUT.SIZE must be an int or (height, width) of positive ints, got {size!r}")
    return tuple(size)


def interpolation_mode_from_cfg(cfg):
    """The ``InterpolationMode`` named by ``cfg.INPUT.INTERPOLATION``."""
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATION_MODES:
        raise ValueError(
            f"INPUT.INTERPOLATION={name!r} is not supported; choose one of {sorted(INTERPOLATION_MODES)}"
        )
    return INTERPOLATION_MODES[name]


def _check_choices(choices, source):
    unknown = [name for name in choices if name not in AVAI_CHOICES]
    if unknown:
        raise ValueError(
            f"unknown transform name(s) {unknown} in {source}; supported: {', '.join(AVAI_CHOICES)}"
        )


def build_transform(cfg, is_train=True, choices=None):
    """Build the train or test transform described by ``cfg.INPUT``.

    Args:
        cfg: config node with Dassl's ``INPUT`` keys.
        is_train: training pipeline (augmentations) if True, else the test pipeline
            (resize the shorter side to ``max(INPUT.SIZE)``, centre crop to ``INPUT.SIZE``,
            to tensor, plus ``normalize`` / ``instance_norm`` when listed).
        choices: list of transform names used instead of ``cfg.INPUT.TRANSFORMS``.

    Returns:
        a callable PIL image -> tensor, or None when ``cfg.INPUT.NO_TRANSFORM`` is set.

    Raises:
        ValueError: an unknown transform name or interpolation mode.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None

    source = "INPUT.TRANSFORMS" if choices is None else "choices"
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    _check_choices(choices, source)
    if is_train:
        return _build_transform_train(cfg, choices)
    return _build_transform_test(cfg, choices)


def _normalization_steps(cfg, choices):
    """Tensor-level normalisations shared by the train and test pipelines."""
    steps = []
    if "normalize" in choices:
        print(f"+ normalization (mean={list(cfg.INPUT.PIXEL_MEAN)}, std={list(cfg.INPUT.PIXEL_STD)})")
        steps.append(Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
    return steps


def _build_transform_train(cfg, choices):
    print("Building transform_train")
    interpolation = interpolation_mode_from_cfg(cfg)
    size = input_size_from_cfg(cfg)
    if _TORCHVISION_CHOICES.intersection(choices):
        import torchvision.transforms as T  # ~1.6 s; only for the rarer augmentations
    steps = []

    # Without a cropping step nothing else would bring the image to the target size.
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {size[0]}x{size[1]}")
        steps.append(Resize(size, interpolation=interpolation))
    if "random_translation" in choices:
        print("+ random translation")
        steps.append(Random2DTranslation(size[0], size[1], interpolation=interpolation))
    if "random_crop" in choices:
        print(f"+ random crop (padding = {cfg.INPUT.CROP_PADDING})")
        steps.append(T.RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        scale = tuple(cfg.INPUT.RRCROP_SCALE)
        print(f"+ random resized crop (size={size}, scale={scale})")
        steps.append(RandomResizedCrop(size, scale=scale, interpolation=interpolation))
    if "random_flip" in choices:
        print("+ random flip")
        steps.append(RandomHorizontalFlip())
    for name, policy in _AUTOAUGMENT_POLICIES.items():
        if name in choices:
            print(f"+ {name} (torchvision AutoAugment)")
            steps.append(T.AutoAugment(getattr(T.AutoAugmentPolicy, policy)))
    # Dassl's RandAugment family (Python ``random`` / NumPy RNG), with Dassl's arguments.
    if "randaugment" in choices:
        n_ops, magnitude = cfg.INPUT.RANDAUGMENT_N, cfg.INPUT.RANDAUGMENT_M
        print(f"+ randaugment (n={n_ops}, m={magnitude})")
        steps.append(RandAugment(n_ops, magnitude))
    if "randaugment_fixmatch" in choices:
        print(f"+ randaugment_fixmatch (n={cfg.INPUT.RANDAUGMENT_N})")
        steps.append(RandAugmentFixMatch(cfg.INPUT.RANDAUGMENT_N))
    if "randaugment2" in choices:
        print(f"+ randaugment2 (n={cfg.INPUT.RANDAUGMENT_N})")
        steps.append(RandAugment2(cfg.INPUT.RANDAUGMENT_N))
    if "colorjitter" in choices:
        jitter = dict(
            brightness=cfg.INPUT.COLORJITTER_B,
            contrast=cfg.INPUT.COLORJITTER_C,
            saturation=cfg.INPUT.COLORJITTER_S,
            hue=cfg.INPUT.COLORJITTER_H,
        )
        print(f"+ color jitter ({jitter})")
        steps.append(T.ColorJitter(**jitter))
    if "randomgrayscale" in choices:
        print(f"+ random gray scale (p={cfg.INPUT.RGS_P})")
        steps.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={cfg.INPUT.GB_K}, p={cfg.INPUT.GB_P})")
        steps.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))

    print("+ to torch tensor of range [0, 1]")
    steps.append(ToTensor())

    if "cutout" in choices:
        print(f"+ cutout (n_holes={cfg.INPUT.CUTOUT_N}, length={cfg.INPUT.CUTOUT_LEN})")
        steps.append(Cutout(cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN))
    steps += _normalization_steps(cfg, choices)
    if "gaussian_noise" in choices:
        print(f"+ gaussian noise (mean={cfg.INPUT.GN_MEAN}, std={cfg.INPUT.GN_STD})")
        steps.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))
    if "instance_norm" in choices:
        print("+ instance normalization")
        steps.append(InstanceNormalization())
    return Compose(steps)


def _build_transform_test(cfg, choices):
    print("Building transform_test")
    interpolation = interpolation_mode_from_cfg(cfg)
    size = input_size_from_cfg(cfg)
    # Centre cropping is applied whether or not "center_crop" is listed, as current Dassl
    # does; CLIP's own preprocessing (resize shorter side, centre crop) is the same thing.
    # INPUT.RESIZE_MODE "squash" (SigLIP's preprocessing) resizes both sides instead, no crop.
    mode = getattr(cfg.INPUT, "RESIZE_MODE", "shortest")
    if mode not in ("shortest", "squash"):
        raise ValueError(f"INPUT.RESIZE_MODE {mode!r} is not one of 'shortest', 'squash'")
    if mode == "squash":
        print(f"+ resize to {size[0]}x{size[1]} (aspect ratio not kept)")
        steps = [Resize(size, interpolation=interpolation)]
    else:
        print(f"+ resize the smaller edge to {max(size)}")
        print(f"+ {size[0]}x{size[1]} center crop")
        steps = [Resize(max(size), interpolation=interpolation), CenterCrop(size)]
    print("+ to torch tensor of range [0, 1]")
    steps.append(ToTensor())
    steps += _normalization_steps(cfg, choices)
    if "instance_norm" in choices:
        print("+ instance normalization")
        steps.append(InstanceNormalization())
    return Compose(steps)
