"""A tiny, randomly initialised CLIP in OpenAI's state-dict format, for tests without real weights.

Defaults (ViT): 32 px images, 8 px patches (16 patches + CLS), vision width 128 (2 heads),
12 vision layers; text width 64 (1 head), 12 layers, context 77, the full 49408-token vocabulary;
joint embedding 32. Vision and text widths differ on purpose, to catch code that mixes them up.
ResNet kind: stage depths (1, 1, 1, 1), stem width 8 (attention pool width 256, 4 heads), 64 px.
Heads always follow OpenAI's inference rule (width // 64; ResNet: width * 32 // 64), so
``clip.build_model`` rebuilds exactly the same architecture from the weights.
"""
import os
from typing import Optional

import torch
from torch import nn

from clip.model import CLIP, infer_clip_config


def _perturb_batch_norms(model: nn.Module) -> None:
    """Give every BatchNorm non-trivial statistics so eval-mode comparisons exercise them.

    OpenAI's initialisation zeroes each bottleneck's last BN scale, which would make every
    residual branch a no-op and hide mistakes in it.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.weight.data.uniform_(0.5, 1.0)
            module.bias.data.normal_(0.0, 0.1)
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(channels)


def make_tiny_clip_state_dict(kind: str = "vit", seed: int = 0, *,
                              vision_width: Optional[int] = None,
                              vision_layers: int = 12,
                              image_resolution: Optional[int] = None,
                              patch_size: int = 8,
                              text_width: int = 64,
                              text_layers: int = 12,
                              embed_dim: int = 32,
                              context_length: int = 77,
                              vocab_size: int = 49408) -> dict:
    """A fp32 state dict with OpenAI CLIP key names for a tiny random model.

    ``kind`` is ``"vit"`` or ``"rn"``; the same ``seed`` always gives the same tensors, and the
    global RNG state is left untouched.
    """
    if kind == "vit":
        vision_width = vision_width or 128
        image_resolution = image_resolution or 32
        architecture = dict(vision_layers=vision_layers, vision_width=vision_width,
                            vision_patch_size=patch_size)
    elif kind == "rn":
        vision_width = vision_width or 8
        image_resolution = image_resolution or 64
        architecture = dict(vision_layers=(1, 1, 1, 1), vision_width=vision_width,
                            vision_patch_size=None)
    else:
        raise ValueError(f"kind must be 'vit' or 'rn', got {kind!r}")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(embed_dim=embed_dim, image_resolution=image_resolution,
                     context_length=context_length, vocab_size=vocab_size,
                     transformer_width=text_width, transformer_heads=text_width // 64,
                     transformer_layers=text_layers, **architecture)
        if kind == "rn":
            _perturb_batch_norms(model)
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def to_openai_precision(state_dict: dict) -> dict:
    """Cast the tensors OpenAI stores in fp16 (conv/linear weights and biases, attention input
    projections, ``text_projection``, ``visual.proj``) to fp16, as in their released files."""
    half_suffixes = (".weight", ".bias", "in_proj_weight", "in_proj_bias")
    converted = {}
    for key, value in state_dict.items():
        is_norm = ".ln_" in key or key.startswith("ln_") or ".bn" in key or "downsample.1." in key
        is_conv_or_linear = key.endswith(half_suffixes) and not is_norm and key != "token_embedding.weight"
        if value.is_floating_point() and (is_conv_or_linear or key in ("text_projection", "visual.proj")):
            value = value.half()
        converted[key] = value
    return converted


def save_tiny_clip(path: str, kind: str = "vit", seed: int = 0, **kwargs) -> str:
    """``torch.save`` a tiny CLIP state dict (in OpenAI's mixed fp16 precision) to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    torch.save(to_openai_precision(make_tiny_clip_state_dict(kind, seed, **kwargs)), path)
    return path


class _TensorHolder(nn.Module):
    """A module that only carries tensors, so a TorchScript archive can hold CLIP's state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_tiny_clip_jit(path: str, kind: str = "vit", seed: int = 0, **kwargs) -> str:
    """Save a tiny CLIP as a TorchScript archive whose ``state_dict()`` has OpenAI's keys,
    including the scalar ``input_resolution``/``context_length``/``vocab_size`` entries that
    OpenAI's JIT files carry. Returns ``path``."""
    import warnings

    state_dict = to_openai_precision(make_tiny_clip_state_dict(kind, seed, **kwargs))
    state_dict["input_resolution"] = torch.tensor(infer_clip_config(state_dict)["image_resolution"])
    state_dict["context_length"] = torch.tensor(state_dict["positional_embedding"].shape[0])
    state_dict["vocab_size"] = torch.tensor(state_dict["token_embedding.weight"].shape[0])
    root = _TensorHolder()
    for key, value in state_dict.items():
        *module_path, leaf = key.split(".")
        module = root
        for part in module_path:
            if part not in module._modules:
                module.add_module(part, _TensorHolder())
            module = module._modules[part]
        if value.is_floating_point():
            module.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
        else:
            module.register_buffer(leaf, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated upstream
        torch.jit.script(root).save(path)
    return path
