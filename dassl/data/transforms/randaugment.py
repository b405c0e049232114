"""Dassl's RandAugment family (``randaugment``, ``randaugment2``, ``randaugment_fixmatch``).

A re-implementation, on PIL and NumPy only (no torch, no torchvision), of the three PIL-image
augmenters Dassl builds for those transform names. Given the same input image and the same
state of Python's ``random`` and of NumPy's global (legacy) generator, each returns the image
Dassl returns, pixel for pixel, and leaves both generators in the state Dassl leaves them:

* the ``n`` operations of a call are picked first, together, by
  ``random.choices(ops, k=n)`` (one ``random.random()`` per pick, with replacement);
* ``RandAugment`` applies each at a fixed value ``m / 30 * (high - low) + low``;
  ``RandAugment2`` first draws ``random.random()`` and skips the operation when that draw
  exceeds ``p``, then draws the magnitude ``random.random()``; ``RandAugmentFixMatch`` draws
  only the magnitude;
* rotate, shear and translate then draw ``random.random()`` once more and negate their value
  when the draw exceeds 0.5; ``cutout_abs`` draws its centre from NumPy
  (``np.random.uniform(low=width)``, then ``low=height``);
* no other operation draws anything.

The PIL calls are Dassl's: nearest-neighbour affine transforms and rotations of the same size
filled with black, ``ImageOps`` / ``ImageEnhance`` for the photometric operations, and a cutout
square painted ``(125, 123, 114)``. The modern spellings of the PIL constants are used
(``Image.Transform.AFFINE``, ``Image.Resampling.NEAREST``) and ``int`` replaces the removed
``np.int``; neither changes a result.
"""
import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

try:  # Pillow >= 9.1
    _AFFINE = Image.Transform.AFFINE
    _NEAREST = Image.Resampling.NEAREST
except AttributeError:  # Pillow 9.0
    _AFFINE = Image.AFFINE
    _NEAREST = Image.NEAREST

# Colour of the square pasted by ``cutout_abs`` (Dassl's value).
CUTOUT_FILL = (125, 123, 114)

__all__ = [
    "CUTOUT_FILL",
    "FIXMATCH_OPS",
    "RANDAUGMENT2_OPS",
    "RANDAUGMENT_OPS",
    "RandAugment",
    "RandAugment2",
    "RandAugmentFixMatch",
]


def _check_range(name, value, low=None, high=None):
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}: value {value} outside [{low}, {high}]")


def _random_sign(value):
    """``value`` negated with probability 1/2 (one ``random.random()`` draw, as Dassl)."""
    return -value if random.random() > 0.5 else value


def _affine(img, coefficients):
    return img.transform(img.size, _AFFINE, coefficients, resample=_NEAREST)


# ----------------------------------------------------------------------------- operations
# Each takes (PIL image, value) and returns a PIL image; the value is ignored by some.


def identity(img, _value):
    return img


def auto_contrast(img, _value):
    return ImageOps.autocontrast(img)


def equalize(img, _value):
    return ImageOps.equalize(img)


def invert(img, _value):
    return ImageOps.invert(img)


def rotate(img, degrees):
    """Rotate by +-``degrees`` (counter-clockwise when positive) about the centre."""
    _check_range("rotate", degrees, -30, 30)
    return img.rotate(_random_sign(degrees), resample=_NEAREST)


def posterize(img, bits):
    """Keep the ``int(bits)`` most significant bits of every channel."""
    _check_range("posterize", bits, 4, 8)
    return ImageOps.posterize(img, int(bits))


def solarize(img, threshold):
    """Invert the channel values that are not below ``threshold``."""
    _check_range("solarize", threshold, 0, 256)
    return ImageOps.solarize(img, threshold)


def solarize_add(img, addition, threshold=128):
    """Add ``addition`` to every value (clipped to 0..255, truncated to uint8), then solarize
    at ``threshold``. The image goes through a NumPy array, so its mode is the one
    ``Image.fromarray`` infers for the uint8 array."""
    values = np.asarray(img).astype(int) + addition
    values = np.clip(values, 0, 255).astype(np.uint8)
    return ImageOps.solarize(Image.fromarray(values), threshold)


def _enhance(enhancer, name):
    def op(img, factor):
        _check_range(name, factor, 0.0, 2.0)
        return enhancer(img).enhance(factor)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"``ImageEnhance.{enhancer.__name__}`` with the given factor (1 = unchanged)."
    return op


color = _enhance(ImageEnhance.Color, "color")
contrast = _enhance(ImageEnhance.Contrast, "contrast")
brightness = _enhance(ImageEnhance.Brightness, "brightness")
sharpness = _enhance(ImageEnhance.Sharpness, "sharpness")


def shear_x(img, shear):
    _check_range("shear_x", shear, -0.3, 0.3)
    return _affine(img, (1, _random_sign(shear), 0, 0, 1, 0))


def shear_y(img, shear):
    _check_range("shear_y", shear, -0.3, 0.3)
    return _affine(img, (1, 0, 0, _random_sign(shear), 1, 0))


def translate_x(img, fraction):
    """Shift horizontally by +-``fraction`` of the width."""
    _check_range("translate_x", fraction, -0.45, 0.45)
    return _affine(img, (1, 0, _random_sign(fraction) * img.size[0], 0, 1, 0))


def translate_y(img, fraction):
    """Shift vertically by +-``fraction`` of the height."""
    _check_range("translate_y", fraction, -0.45, 0.45)
    return _affine(img, (1, 0, 0, 0, 1, _random_sign(fraction) * img.size[1]))


def translate_x_abs(img, pixels):
    """Shift horizontally by +-``pixels``."""
    _check_range("translate_x_abs", pixels, 0)
    return _affine(img, (1, 0, _random_sign(pixels), 0, 1, 0))


def translate_y_abs(img, pixels):
    """Shift vertically by +-``pixels``."""
    _check_range("translate_y_abs", pixels, 0)
    return _affine(img, (1, 0, 0, 0, 1, _random_sign(pixels)))


def cutout_abs(img, side):
    """Paint a square of side ``side`` with ``CUTOUT_FILL`` on a copy of the image.

    As in Dassl, the centre comes from ``np.random.uniform(low=width)`` and
    ``np.random.uniform(low=height)`` with the default ``high=1``, i.e. it lies in
    ``(1, width]`` x ``(1, height]``; the top-left corner is the centre minus ``side / 2``,
    clamped at 0 and truncated to int, and the far corner is clamped at ``(width, height)``.
    """
    if side < 0:
        return img
    width, height = img.size
    centre_x = np.random.uniform(low=width)
    centre_y = np.random.uniform(low=height)
    left = int(max(0, centre_x - side / 2.0))
    top = int(max(0, centre_y - side / 2.0))
    right = min(width, left + side)
    bottom = min(height, top + side)
    img = img.copy()
    ImageDraw.Draw(img).rectangle((left, top, right, bottom), CUTOUT_FILL)
    return img


# ----------------------------------------------------------------------------- op tables
# (operation, low, high), in Dassl's order: ``random.choices`` indexes into these lists, so the
# order decides which operation a given draw selects.

RANDAUGMENT_OPS = (
    (auto_contrast, 0, 1),
    (equalize, 0, 1),
    (invert, 0, 1),
    (rotate, 0, 30),
    (posterize, 4, 8),
    (solarize, 0, 256),
    (solarize_add, 0, 110),
    (color, 0.1, 1.9),
    (contrast, 0.1, 1.9),
    (brightness, 0.1, 1.9),
    (sharpness, 0.1, 1.9),
    (shear_x, 0.0, 0.3),
    (shear_y, 0.0, 0.3),
    (cutout_abs, 0, 40),
    (translate_x_abs, 0.0, 100),
    (translate_y_abs, 0.0, 100),
)

RANDAUGMENT2_OPS = (
    (auto_contrast, 0, 1),
    (brightness, 0.1, 1.9),
    (color, 0.1, 1.9),
    (contrast, 0.1, 1.9),
    (equalize, 0, 1),
    (identity, 0, 1),
    (invert, 0, 1),
    (posterize, 4, 8),
    (rotate, -30, 30),
    (sharpness, 0.1, 1.9),
    (shear_x, -0.3, 0.3),
    (shear_y, -0.3, 0.3),
    (solarize, 0, 256),
    (translate_x, -0.3, 0.3),
    (translate_y, -0.3, 0.3),
)

FIXMATCH_OPS = (
    (auto_contrast, 0, 1),
    (brightness, 0.05, 0.95),
    (color, 0.05, 0.95),
    (contrast, 0.05, 0.95),
    (equalize, 0, 1),
    (identity, 0, 1),
    (posterize, 4, 8),
    (rotate, -30, 30),
    (sharpness, 0.05, 0.95),
    (shear_x, -0.3, 0.3),
    (shear_y, -0.3, 0.3),
    (solarize, 0, 256),
    (translate_x, -0.3, 0.3),
    (translate_y, -0.3, 0.3),
)


def _check_n(n):
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the number of operations must be an int >= 0, got {n!r}")


class RandAugment:
    """Apply ``n`` operations drawn with replacement from ``RANDAUGMENT_OPS``, each at the
    fixed value ``m / 30 * (high - low) + low`` (``m`` in 0..30)."""

    ops = RANDAUGMENT_OPS

    def __init__(self, n=2, m=10):
        _check_n(n)
        if not 0 <= m <= 30:
            raise ValueError(f"RandAugment magnitude m must be in [0, 30], got {m!r}")
        self.n = n
        self.m = m

    def value(self, low, high):
        """The value an operation with range ``[low, high]`` is applied at."""
        return (self.m / 30) * (high - low) + low

    def __call__(self, img):
        for op, low, high in random.choices(self.ops, k=self.n):
            img = op(img, self.value(low, high))
        return img

    def __repr__(self):
        return f"{type(self).__name__}(n={self.n}, m={self.m})"


class RandAugment2:
    """Pick ``n`` operations from ``RANDAUGMENT2_OPS`` (with replacement); apply each with
    probability ``p`` at a value drawn uniformly from its range."""

    ops = RANDAUGMENT2_OPS

    def __init__(self, n=2, p=0.6):
        _check_n(n)
        self.n = n
        self.p = p

    def __call__(self, img):
        for op, low, high in random.choices(self.ops, k=self.n):
            if random.random() > self.p:
                continue
            img = op(img, random.random() * (high - low) + low)
        return img

    def __repr__(self):
        return f"{type(self).__name__}(n={self.n}, p={self.p})"


class RandAugmentFixMatch:
    """Apply ``n`` operations drawn with replacement from ``FIXMATCH_OPS``, each at a value
    drawn uniformly from its range (FixMatch's strong augmentation as Dassl implements it:
    no cutout step)."""

    ops = FIXMATCH_OPS

    def __init__(self, n=2):
        _check_n(n)
        self.n = n

    def __call__(self, img):
        for op, low, high in random.choices(self.ops, k=self.n):
            img = op(img, random.random() * (high - low) + low)
        return img

    def __repr__(self):
        return f"{type(self).__name__}(n={self.n})"
