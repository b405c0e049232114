"""Tiny random open_clip models built by open_clip itself, saved the way its pretrained files are.

The config JSONs use open_clip's own format and modules (``open_clip.model.CLIP`` /
``CustomTextCLIP``), so loading them through ``clip.load("openclip:<json>")`` checks our
architecture against open_clip's, not against our own reading of it.
"""
import json
import os
from typing import Optional

import torch

# open_clip's native ViT at test scale: 12 layers per tower like tests/helpers/tiny_clip.py (so the
# smoke configs' prompt depths fit), 32 px images, differing vision and text widths.
TINY_NATIVE = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 12, "width": 128, "head_width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 12},
}


def build_open_clip_model(config: dict, seed: int = 0):
    """open_clip's own model for ``config`` (random weights from ``seed``), fp32, eval mode."""
    from open_clip.model import CLIP, CustomTextCLIP

    config = dict(config)
    config.pop("preprocess_cfg", None)
    cls = CustomTextCLIP if config.pop("custom_text", False) else CLIP
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = cls(**config)
        with torch.no_grad():  # biases and norms start at constants: make them informative
            for name, param in model.named_parameters():
                if name.endswith(("bias", "ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight")):
                    param.add_(0.05 * torch.randn_like(param))
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def save_open_clip_model(folder, config: dict, seed: int = 0, fmt: str = "bin", name: str = "tiny",
                         wrap: Optional[str] = None):
    """Write ``<name>.json`` (the config) and its weights into ``folder``; return (json, weights, model).

    ``fmt``: ``bin``/``pt`` (``torch.save``) or ``safetensors``; ``wrap="state_dict"`` stores the
    dict as open_clip's training checkpoints do (``{"state_dict": {"module." + key: ...}}``)."""
    os.makedirs(folder, exist_ok=True)
    model = build_open_clip_model(config, seed)
    config_path = os.path.join(folder, f"{name}.json")
    with open(config_path, "w") as handle:
        json.dump(config, handle)
    weights_path = os.path.join(folder, f"{name}.{fmt}")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file
        save_file(state, weights_path)
    else:
        if wrap == "state_dict":
            state = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
        torch.save(state, weights_path)
    return config_path, weights_path, model
