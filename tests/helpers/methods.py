"""Shared helpers for the method tests: class names, configs with every trainer
node, deterministic images, a block recorder, parameter counting, and the
ViT-B/16-shaped CLIP builder."""
import torch

import clip
import trainers
from dassl.config import get_cfg_default
from tests.helpers.tiny_clip import make_tiny_clip_state_dict

CLASSNAMES = ["annual crop", "forest", "river", "sea or lake", "pasture"]


def make_cfg(share=None, **nodes):
    """Default config with every trainer node; ``nodes`` = {"MAPLE": {"N_CTX": 2}, ...};
    ``share`` sets both SHARE.SHARE_PARAMETER_* keys when given."""
    cfg = get_cfg_default()
    trainers.add_trainer_configs(cfg)
    if share is not None:
        cfg.SHARE.SHARE_PARAMETER_VISUAL = share
        cfg.SHARE.SHARE_PARAMETER_TEXT = share
    for node, values in nodes.items():
        for k, v in values.items():
            cfg.TRAINER[node][k] = v
    return cfg


def images(n, seed, size=32):
    """``n`` deterministic random images (n, 3, size, size)."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


class RecordingBlock:
    """Wraps a block, recording what it receives and returns."""

    def __init__(self, block, i, log):
        self.block, self.i, self.log = block, i, log

    def __call__(self, x):
        out = self.block(x)
        self.log[self.i] = (x.detach().clone(), out.detach().clone())
        return out


def record(hook, log):
    """A hook that runs ``hook`` (or the plain block) and logs each block's input and output."""
    return lambda i, x, block: (hook or (lambda j, y, b: b(y)))(i, x, RecordingBlock(block, i, log))


def n_params(module):
    """Number of trainable values in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def frozen_tiny_vit_clip():
    """The tiny ViT CLIP of the tests with every weight frozen."""
    model = clip.build_model(make_tiny_clip_state_dict(kind="vit", seed=0))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def vit_b16_shaped_clip():
    """A CLIP with ViT-B/16's widths and depths (random weights, 32 px input)."""
    sd = make_tiny_clip_state_dict(kind="vit", vision_width=768, vision_layers=12, image_resolution=32,
                                   patch_size=16, text_width=512, text_layers=12, embed_dim=512)
    return clip.build_model(sd)
