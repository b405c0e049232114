"""MiniShapes: a procedurally rendered benchmark of coloured shapes with compositional class names.

Every class is a colour x shape composition named with real words ("red circle", "purple heart").
The world has 8 colours x 8 shapes = 64 compositions, split so that base and new classes share
every colour and every shape but no combination (a checkerboard: a composition is a base class when
its colour index plus shape index is even). Labels 0-31 are the base classes, 32-63 the new ones,
so the usual base-to-novel subsampling (first half of the labels = base) gives exactly that split.

Two image styles exist, both rendered deterministically from a seed with vectorised torch code:

* ``"web"``: a single large shape on a plain, slightly shaded background. The mini CLIP
  (``tools/pretrain_mini_clip.py``) is pretrained on captions of these images, with the 16
  compositions of :func:`is_held_out` (all new classes) never shown, so zero-shot accuracy on them measures
  compositional generalisation.
* ``"field"``: the benchmark's own domain, as a downstream dataset is for web-pretrained CLIP:
  smaller shapes on textured backgrounds (stripes, checks, noise) under a warm light that shifts
  every colour, plus sensor noise. Zero-shot CLIP transfers imperfectly, which leaves the headroom
  prompt learning is meant to close.

The dataset writes itself on first use:
``DATASET.ROOT/minishapes/images/<label>_<colour>_<shape>/<split>_<n>.png`` (32 x 32 PNG) and
``split_minishapes.json`` in CoOp's split format, 40 train / 10 val / 30 test images per class. After that it is an ordinary on-disk benchmark.
"""
import math
import os
import shutil
import tempfile

import torch
import torch.nn.functional as F

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .base import BenchmarkDataset, save_split

COLOURS = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.96, 0.52, 0.08),
    "yellow": (0.95, 0.88, 0.15),
    "green": (0.15, 0.68, 0.22),
    "blue": (0.14, 0.30, 0.90),
    "purple": (0.56, 0.20, 0.78),
    "pink": (0.98, 0.55, 0.75),
    "brown": (0.50, 0.30, 0.12),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "heart", "moon")
COLOUR_NAMES = tuple(COLOURS)


def is_base(colour: int, shape: int) -> bool:
    """Base classes form a checkerboard over (colour, shape)."""
    return (colour + shape) % 2 == 0


def is_held_out(colour: int, shape: int) -> bool:
    """The 16 compositions never shown during pretraining: two per colour and two per shape
    (shape = colour + 1 or colour + 3, mod 8), all of them new classes."""
    return (shape - colour) % len(SHAPES) in (1, 3)


def compositions():
    """``[(colour index, shape index), ...]`` in label order: the 32 base, then the 32 new classes."""
    pairs = [(c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES))]
    return [p for p in pairs if is_base(*p)] + [p for p in pairs if not is_base(*p)]


def classname(colour: int, shape: int) -> str:
    return f"{COLOUR_NAMES[colour]} {SHAPES[shape]}"


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
_SUPERSAMPLE = 2
_WARM_LIGHT = torch.tensor([1.08, 0.95, 0.72])  # the "field" domain's colour cast


def _regular_polygon(radius, angle, sides):
    sector = 2 * math.pi / sides
    local = torch.remainder(angle, sector) - sector / 2
    return radius * torch.cos(local) <= math.cos(math.pi / sides)


def _shape_masks(x, y, shape):
    """Inside-masks of every shape at unit size, for local coordinates ``x``, ``y`` (B, H, W);
    ``shape`` (B,) selects which mask each image gets."""
    radius = torch.sqrt(x * x + y * y)
    angle = torch.atan2(y, x)
    star_angle = torch.remainder(angle + math.pi / 2, 2 * math.pi / 5) - math.pi / 5
    star_edge = 0.42 + 0.58 * (1 - star_angle.abs() / (math.pi / 5))
    hx, hy = x * 1.25, -y * 1.25 + 0.2
    masks = torch.stack([
        radius <= 0.9,                                                       # circle
        (x.abs() <= 0.75) & (y.abs() <= 0.75),                               # square
        _regular_polygon(radius, angle + math.pi / 2, 3) & (radius <= 1.2),  # triangle
        radius <= star_edge,                                                 # star
        ((x.abs() <= 0.28) & (y.abs() <= 0.95)) | ((y.abs() <= 0.28) & (x.abs() <= 0.95)),  # cross
        (radius <= 0.95) & (radius >= 0.55),                                 # ring
        (hx * hx + hy * hy - 1) ** 3 - hx * hx * hy ** 3 <= 0,              # heart
        (radius <= 0.92) & ((x - 0.45) ** 2 + (y + 0.1) ** 2 >= 0.72 ** 2),  # moon
    ], dim=1)
    return masks[torch.arange(len(shape)), shape]


def _textures(u, v, kind, colour_a, colour_b, scale, phase, noise):
    """Background images (B, 3, H, W): 0 plain, 1 stripes, 2 checks, 3 blotchy noise."""
    t = (u * scale[:, None, None] + phase[:, None, None])
    stripes = (torch.sin(t) > 0).float()
    checks = ((torch.sin(u * scale[:, None, None]) * torch.sin(v * scale[:, None, None] + phase[:, None, None])) > 0).float()
    choice = torch.stack([torch.zeros_like(stripes), stripes, checks, noise], dim=1)
    weight = choice[torch.arange(len(kind)), kind][:, None]
    return colour_a[:, :, None, None] * (1 - weight) + colour_b[:, :, None, None] * weight


_PAINT_CHUNK = 512  # images painted at once: bounds the memory of the supersampled pixel maths


def render(colours, shapes, style: str, generator: torch.Generator, size: int = 32) -> torch.Tensor:
    """Render one image per ``(colours[i], shapes[i])`` (index tensors); returns float (B, 3, size, size) in [0, 1].

    All randomness (position, scale, rotation, colour jitter, background, noise) comes from
    ``generator``, so the same generator state always gives the same images. Every random value is
    drawn first, for the whole batch; the pixels are then painted in chunks of ``_PAINT_CHUNK``
    images, so memory stays bounded and the chunking does not change the images.
    """
    if style not in ("web", "field"):
        raise ValueError(f"unknown MiniShapes style {style!r}; use 'web' or 'field'")
    batch = len(colours)

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator)

    palette = torch.tensor(list(COLOURS.values()))
    draws = {"shapes": torch.as_tensor(shapes)}
    draws["colour"] = palette[colours] + uniform(-0.06, 0.06, batch, 3)
    if style == "web":
        draws["half_size"] = uniform(0.26, 0.42, batch)
        draws["background_kind"] = torch.zeros(batch, dtype=torch.long)
    else:
        draws["half_size"] = uniform(0.2, 0.32, batch)
        draws["background_kind"] = torch.randint(0, 4, (batch,), generator=generator)
    draws["centre"] = uniform(-1, 1, batch, 2) * (0.95 - draws["half_size"])[:, None]
    draws["rotation"] = uniform(-0.35, 0.35, batch)
    # Backgrounds: grey-ish tones far enough from the object to keep it visible.
    base_tone = uniform(0.15, 0.85, batch, 1) + uniform(-0.08, 0.08, batch, 3)
    direction = torch.where(base_tone.mean(1, keepdim=True) > 0.5, -1.0, 1.0)
    draws["base_tone"] = base_tone
    draws["other_tone"] = (base_tone + uniform(0.15, 0.35, batch, 1) * direction).clamp(0, 1)
    draws["blotches"] = torch.rand(batch, 1, 4, 4, generator=generator)
    draws["texture_scale"] = uniform(1.5, 4.0, batch)
    draws["texture_phase"] = uniform(0, 6.3, batch)
    draws["shading_u"] = uniform(-1, 1, batch)
    draws["shading_v"] = uniform(-1, 1, batch)
    noise = torch.randn(batch, 3, size, size, generator=generator)

    image = torch.cat([_paint({key: value[start:start + _PAINT_CHUNK] for key, value in draws.items()}, size)
                       for start in range(0, batch, _PAINT_CHUNK)]) if batch else torch.zeros(0, 3, size, size)
    if style == "field":
        image = image * _WARM_LIGHT[None, :, None, None] + 0.05 * noise
    else:
        image = image + 0.02 * noise
    return image.clamp(0, 1)


def _paint(draws, size):
    """Noise-free pixels (B, 3, size, size) of the images described by ``draws``."""
    batch = len(draws["shapes"])
    hi = size * _SUPERSAMPLE
    grid = (torch.arange(hi, dtype=torch.float32) + 0.5) / hi * 2 - 1
    v, u = torch.meshgrid(grid, grid, indexing="ij")
    u, v = u.expand(batch, hi, hi), v.expand(batch, hi, hi)
    centre, half_size, rotation = draws["centre"], draws["half_size"], draws["rotation"]
    du, dv = u - centre[:, 0, None, None], v - centre[:, 1, None, None]
    cos, sin = torch.cos(rotation)[:, None, None], torch.sin(rotation)[:, None, None]
    x = (du * cos + dv * sin) / half_size[:, None, None]
    y = (-du * sin + dv * cos) / half_size[:, None, None]
    inside = _shape_masks(x, y, draws["shapes"]).float()[:, None]

    blotches = F.interpolate(draws["blotches"], size=(hi, hi), mode="bilinear", align_corners=False)[:, 0]
    background = _textures(u * 3, v * 3, draws["background_kind"], draws["base_tone"], draws["other_tone"],
                           draws["texture_scale"], draws["texture_phase"], (blotches > 0.5).float())
    shading = 1 + 0.12 * (u * draws["shading_u"][:, None, None] + v * draws["shading_v"][:, None, None])
    image = background * (1 - inside) + draws["colour"][:, :, None, None] * inside
    image = image * shading[:, None]
    return F.avg_pool2d(image, _SUPERSAMPLE)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) floats in [0, 1] -> (B, H, W, 3) uint8, ready for PIL."""
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------
SPLIT_SIZES = {"train": 40, "val": 10, "test": 30}
GENERATION_SEED = 2026


def render_benchmark(seed: int = GENERATION_SEED, size: int = 32):
    """The benchmark's images in label order: ``{split: uint8 tensor (classes, n, H, W, 3)}``
    with ``SPLIT_SIZES[split]`` images per class. Deterministic in ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    per_class = sum(SPLIT_SIZES.values())
    pairs = torch.tensor(compositions())
    colours = pairs[:, 0].repeat_interleave(per_class)
    shapes = pairs[:, 1].repeat_interleave(per_class)
    images = to_uint8(render(colours, shapes, "field", generator, size))
    images = images.view(len(pairs), per_class, size, size, 3)
    return dict(zip(SPLIT_SIZES, images.split(list(SPLIT_SIZES.values()), dim=1)))


def render_split(image_dir: str, seed: int = GENERATION_SEED, size: int = 32):
    """Write :func:`render_benchmark`'s images as ``image_dir/<label>_<colour>_<shape>/<split>_<n>.png``;
    return the ``(train, val, test)`` Datum lists."""
    from PIL import Image

    parts = {}
    for split, images in render_benchmark(seed, size).items():
        parts[split] = []
        for label, (colour, shape) in enumerate(compositions()):
            name = classname(colour, shape)
            folder = os.path.join(image_dir, f"{label:02d}_{name.replace(' ', '_')}")
            os.makedirs(folder, exist_ok=True)
            for index, image in enumerate(images[label].numpy()):
                path = os.path.join(folder, f"{split}_{index:03d}.png")
                Image.fromarray(image).save(path)
                parts[split].append(Datum(impath=path, label=label, classname=name))
    return parts["train"], parts["val"], parts["test"]


@DATASET_REGISTRY.register()
class MiniShapes(BenchmarkDataset):
    """The synthetic benchmark; rendered into ``DATASET.ROOT/minishapes`` on first use."""

    dataset_dir = "minishapes"
    image_subdir = "images"
    split_file = "split_minishapes.json"

    def prepare(self):
        """Render the dataset when its split file is missing.

        Everything is written into a temporary folder beside the target and renamed into place
        at the end, so an interrupted or concurrent first use never leaves a half-written dataset.
        """
        if os.path.isfile(self.split_path):
            return
        if os.path.exists(self.dataset_dir):
            if os.path.isfile(self.split_path):  # a concurrent first use finished meanwhile
                return
            raise FileNotFoundError(
                f"{self.name}: {self.dataset_dir} exists but holds no {self.split_file}; delete the "
                f"folder and it is rendered again")
        staging = tempfile.mkdtemp(prefix=".minishapes-", dir=self.root)
        try:
            # mkdtemp makes the folder private (0700); the dataset gets the usual permissions.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)
            image_dir = os.path.join(staging, self.image_subdir)
            print(f"Rendering MiniShapes into {self.dataset_dir} (once)")
            train, val, test = render_split(image_dir)
            save_split(train, val, test, os.path.join(staging, self.split_file), image_dir)
            try:
                os.rename(staging, self.dataset_dir)
            except OSError:
                if not os.path.isfile(self.split_path):  # not a concurrent run that finished first
                    raise
        finally:
            if os.path.exists(staging):
                shutil.rmtree(staging, ignore_errors=True)

    def build_full_split(self):
        raise FileNotFoundError(f"{self.name}: {self.split_path} is missing; delete "
                                f"{self.dataset_dir} and it is rendered again")
