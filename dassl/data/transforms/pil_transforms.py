"""The PIL-image transforms of the default pipelines, without importing torchvision.

``import torchvision`` pulls in ``torchvision.ops`` and, through it, ``torch._dynamo``: about
1.6 s added to every start of ``train.py``. The transforms a normal run uses (resize, centre
crop, random resized crop, horizontal flip, to-tensor, normalise) are small, so they are
re-implemented here on top of PIL and torch. They reproduce torchvision 0.29's PIL code path
exactly -- the same output sizes (including its truncation and rounding rules), the same PIL
resampling calls, the same float arithmetic, and the same calls to torch's RNG in the same
order, so a seeded run makes the same augmentation choices and leaves torch's generator in the
same state. ``tests/test_transforms_pil.py`` checks all of this against torchvision itself.

Only PIL images are accepted by the geometric transforms (the pipelines convert to a tensor
last); anything else raises ``TypeError``. Dassl's RandAugment variants are ours too
(``randaugment.py``); the other rarely used augmentations (AutoAugment, colour jitter, ...)
still come from torchvision, imported only when one of them is configured (see
``transforms.py``).
"""
import math
from enum import Enum

import numpy as np
import torch
from PIL import Image, ImageMode

__all__ = [
    "InterpolationMode",
    "Compose",
    "Resize",
    "CenterCrop",
    "RandomResizedCrop",
    "RandomHorizontalFlip",
    "ToTensor",
    "Normalize",
    "resized_shape",
    "resize",
    "crop",
    "center_crop",
    "to_tensor",
]


class InterpolationMode(Enum):
    """Resampling filter of a resize; the values are torchvision's names for the same modes."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"

    @property
    def pil_filter(self):
        """The matching ``PIL.Image.Resampling`` constant."""
        return _PIL_FILTERS[self]

    @classmethod
    def coerce(cls, mode):
        """``mode`` as an ``InterpolationMode``.

        Accepts a member of this enum, its name as a string (``"bicubic"``), or any enum member
        whose ``value`` is one of those names (e.g. torchvision's own ``InterpolationMode``).
        """
        if isinstance(mode, cls):
            return mode
        name = getattr(mode, "value", mode)
        try:
            return cls(name)
        except ValueError:
            supported = ", ".join(m.value for m in cls)
            raise ValueError(f"unsupported interpolation {mode!r}; supported: {supported}") from None


_PIL_FILTERS = {
    InterpolationMode.NEAREST: Image.Resampling.NEAREST,
    InterpolationMode.BILINEAR: Image.Resampling.BILINEAR,
    InterpolationMode.BICUBIC: Image.Resampling.BICUBIC,
}


def _require_pil(img, who):
    if not isinstance(img, Image.Image):
        raise TypeError(
            f"{who} expects a PIL image, got {type(img).__module__}.{type(img).__qualname__}; "
            f"geometric transforms run before ToTensor in the pipeline"
        )


def _square_or_pair(size, who):
    """``size`` as a ``(height, width)`` tuple: an int (or a 1-sequence) means a square."""
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) in (1, 2) and all(isinstance(s, int) for s in size):
        return (size[0], size[0]) if len(size) == 1 else tuple(size)
    raise ValueError(f"{who}: size must be an int or (height, width) ints, got {size!r}")


# --------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------
def resized_shape(height, width, size):
    """``(new_height, new_width)`` of resizing a ``height x width`` image to ``size``.

    ``size`` is ``(h, w)``, or an int (or a 1-sequence) for the length of the shorter side; the
    longer side is then scaled in proportion and truncated towards zero -- computed as
    ``int(size * long / short)`` in that order of operations, as torchvision does, since another
    order can round differently.
    """
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (size[0], size[1])
    short_target = size[0] if isinstance(size, (tuple, list)) else size
    if width <= height:  # a square counts as "portrait", which gives the same result
        return (int(short_target * height / width), short_target)
    return (short_target, int(short_target * width / height))


def resize(img, size, interpolation=InterpolationMode.BILINEAR):
    """Resize PIL image ``img`` to ``size`` (see :func:`resized_shape`).

    An image that already has the target size is returned as it is, without resampling.
    """
    _require_pil(img, "resize")
    if not isinstance(size, int) and not (isinstance(size, (tuple, list)) and len(size) in (1, 2)):
        raise ValueError(f"resize: size must be an int or (height, width), got {size!r}")
    mode = InterpolationMode.coerce(interpolation)
    width, height = img.size
    new_height, new_width = resized_shape(height, width, size)
    if (new_height, new_width) == (height, width):
        return img
    return img.resize((new_width, new_height), mode.pil_filter)


def crop(img, top, left, height, width):
    """The ``height x width`` window of ``img`` whose top-left corner is ``(top, left)``.

    Parts of the window outside the image come out black (PIL's ``crop`` behaviour).
    """
    _require_pil(img, "crop")
    return img.crop((left, top, left + width, top + height))


def _pad_with_zeros(img, left, top, right, bottom):
    """``img`` with black (all-zero) borders of the given widths."""
    width, height = img.size
    canvas = Image.new(img.mode, (left + width + right, top + height + bottom), 0)
    if img.mode == "P":
        canvas.putpalette(img.getpalette())
    canvas.paste(img, (left, top))
    return canvas


def center_crop(img, size):
    """The centred ``size`` window of ``img`` (``size`` an int for a square, or ``(h, w)``).

    Follows torchvision: along a side where the image is smaller than the crop, the image is
    first padded with zeros, the odd pixel going to the right/bottom; the window's offset is
    ``int(round((image - crop) / 2))`` -- Python's round, so an exact .5 goes to the even number.
    """
    _require_pil(img, "center_crop")
    crop_height, crop_width = _square_or_pair(size, "center_crop")
    width, height = img.size
    if crop_width > width or crop_height > height:
        pad_x = max(crop_width - width, 0)
        pad_y = max(crop_height - height, 0)
        img = _pad_with_zeros(img, pad_x // 2, pad_y // 2, (pad_x + 1) // 2, (pad_y + 1) // 2)
        width, height = img.size
        if (width, height) == (crop_width, crop_height):
            return img
    top = int(round((height - crop_height) / 2.0))
    left = int(round((width - crop_width) / 2.0))
    return crop(img, top, left, crop_height, crop_width)


def to_tensor(img):
    """PIL image -> ``(C, H, W)`` float tensor (torch's default dtype) with values in [0, 1].

    Supports the 8-bit-per-band modes (``L``, ``RGB``, ``RGBA``, ``P`` -- palette indices, as in
    torchvision --, ...) and bilevel ``1`` (0 or 1). The value is ``byte / 255`` computed as a
    division in float, as torchvision does (multiplying by ``1/255`` differs in the last bit).
    """
    _require_pil(img, "to_tensor")
    # 16/32-bit integer and float modes (which torchvision returns unscaled, in their own dtype)
    # are refused rather than silently truncated to bytes.
    if ImageMode.getmode(img.mode).typestr not in ("|u1", "|b1"):
        raise ValueError(f"to_tensor: PIL mode {img.mode!r} is not supported; convert the image "
                         f"to RGB or L first")
    pixels = np.array(img, dtype=np.uint8, copy=True)
    if img.mode == "1":
        pixels *= 255
    width, height = img.size
    channels = len(img.getbands())
    tensor = torch.from_numpy(pixels).view(height, width, channels).permute(2, 0, 1).contiguous()
    return tensor.to(dtype=torch.get_default_dtype()).div(255)


# --------------------------------------------------------------------------------------------
# Transform objects (picklable, so DataLoader worker processes can receive them)
# --------------------------------------------------------------------------------------------
class Compose:
    """Apply ``transforms`` one after the other."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for transform in self.transforms:
            img = transform(img)
        return img

    def __repr__(self):
        lines = "".join(f"\n    {transform}" for transform in self.transforms)
        return f"{type(self).__name__}({lines}\n)"


class Resize:
    """Resize a PIL image: ``size`` an int sets the shorter side (aspect ratio kept, longer side
    truncated), ``(height, width)`` sets both."""

    def __init__(self, size, interpolation=InterpolationMode.BILINEAR):
        if not isinstance(size, int) and not (isinstance(size, (tuple, list)) and len(size) in (1, 2)):
            raise ValueError(f"Resize: size must be an int or (height, width), got {size!r}")
        self.size = size
        self.interpolation = InterpolationMode.coerce(interpolation)

    def __call__(self, img):
        return resize(img, self.size, self.interpolation)

    def __repr__(self):
        return f"{type(self).__name__}(size={self.size}, interpolation={self.interpolation.value})"


class CenterCrop:
    """Crop the centre ``size`` (int = square, or ``(height, width)``) of a PIL image, padding
    with black where the image is smaller."""

    def __init__(self, size):
        self.size = _square_or_pair(size, "CenterCrop")

    def __call__(self, img):
        return center_crop(img, self.size)

    def __repr__(self):
        return f"{type(self).__name__}(size={self.size})"


class RandomResizedCrop:
    """Crop a random window of random area (fraction ``scale`` of the image) and random aspect
    ratio (within ``ratio``, drawn uniformly in log space) and resize it to ``size``.

    The window is drawn exactly as torchvision's ``RandomResizedCrop.get_params`` draws it, with
    the same torch RNG calls (up to ten tries; then a centred fallback that uses no randomness).
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 interpolation=InterpolationMode.BILINEAR):
        self.size = _square_or_pair(size, "RandomResizedCrop")
        if len(scale) != 2 or len(ratio) != 2:
            raise ValueError(f"RandomResizedCrop: scale and ratio must be (min, max) pairs, "
                             f"got {scale!r} and {ratio!r}")
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.interpolation = InterpolationMode.coerce(interpolation)

    @staticmethod
    def get_params(img, scale, ratio):
        """``(top, left, height, width)`` of a random window of PIL image ``img``."""
        _require_pil(img, "RandomResizedCrop")
        width, height = img.size
        area = height * width
        # Kept as torch tensors of the default dtype: the bounds of the aspect-ratio draw are the
        # float32 logarithms, and each draw is a one-element float32 tensor, exactly as in
        # torchvision, so the same generator state gives the same numbers.
        log_ratio = torch.log(torch.tensor(ratio))
        for _ in range(10):
            area_fraction = torch.empty(1).uniform_(scale[0], scale[1]).item()
            target_area = area * area_fraction
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            crop_width = int(round(math.sqrt(target_area * aspect)))
            crop_height = int(round(math.sqrt(target_area / aspect)))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                top = torch.randint(0, height - crop_height + 1, size=(1,)).item()
                left = torch.randint(0, width - crop_width + 1, size=(1,)).item()
                return top, left, crop_height, crop_width

        # No try fitted: take the largest centred window whose aspect ratio is within bounds.
        image_ratio = float(width) / float(height)
        if image_ratio < min(ratio):
            crop_width = width
            crop_height = int(round(crop_width / min(ratio)))
        elif image_ratio > max(ratio):
            crop_height = height
            crop_width = int(round(crop_height * max(ratio)))
        else:
            crop_width, crop_height = width, height
        return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width

    def __call__(self, img):
        top, left, height, width = self.get_params(img, self.scale, self.ratio)
        return resize(crop(img, top, left, height, width), self.size, self.interpolation)

    def __repr__(self):
        scale = tuple(round(s, 4) for s in self.scale)
        ratio = tuple(round(r, 4) for r in self.ratio)
        return (f"{type(self).__name__}(size={self.size}, scale={scale}, ratio={ratio}, "
                f"interpolation={self.interpolation.value})")


class RandomHorizontalFlip:
    """Mirror a PIL image left-right with probability ``p`` (one ``torch.rand(1)`` draw per call)."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        _require_pil(img, "RandomHorizontalFlip")
        # Compared as a float32 tensor against p, as torchvision does.
        if torch.rand(1) < self.p:
            return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"


class ToTensor:
    """PIL image -> float ``(C, H, W)`` tensor in [0, 1] (see :func:`to_tensor`)."""

    def __call__(self, img):
        return to_tensor(img)

    def __repr__(self):
        return f"{type(self).__name__}()"


class Normalize:
    """``(tensor - mean) / std`` per channel of a float ``(..., C, H, W)`` tensor; returns a new
    tensor (the input is left unchanged)."""

    def __init__(self, mean, std):
        self.mean = mean
        self.std = std
        if (torch.as_tensor(std, dtype=torch.get_default_dtype()) == 0).any():
            raise ValueError(f"Normalize: std {std} has a zero")
        self._stats = {}  # (dtype, device) -> (mean, std) shaped for broadcasting, built once

    def _stats_for(self, tensor):
        key = (tensor.dtype, tensor.device)
        if key not in self._stats:
            mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device)
            std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device)
            if (std == 0).any():
                raise ValueError(f"Normalize: std {self.std} has a zero (in {tensor.dtype})")
            self._stats[key] = (mean.view(-1, 1, 1) if mean.ndim == 1 else mean,
                                std.view(-1, 1, 1) if std.ndim == 1 else std)
        return self._stats[key]

    def __call__(self, tensor):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"Normalize expects a tensor (put it after ToTensor), "
                            f"got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"Normalize expects a float tensor, got {tensor.dtype}")
        if tensor.ndim < 3:
            raise ValueError(f"Normalize expects a (..., C, H, W) tensor, got shape {tuple(tensor.shape)}")
        mean, std = self._stats_for(tensor)
        # Subtract, then divide (not multiply by 1/std): the same rounding as torchvision.
        return tensor.sub(mean).div(std)

    def __repr__(self):
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"
