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
                if name.endswith(("bias", "ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "norm1.weight",
                                  "norm2.weight", "norm.weight", "latent")):
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
    model = build_small_trunk_model(config, seed)
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


# A SigLIP at test scale: open_clip's ViT-B-16-SigLIP config (timm trunk vit_base_patch16_siglip_224:
# no class token, attention pooling; bidirectional text pooled at the last position, projection
# bias, logit bias), with the trunk built small (the same timm definition, other sizes; head width
# 64 as in the named model) and a Hugging Face tokenizer trained here.
WORDS = ("a photo of the an x itap bad cropped bright dark drawing close up rendition good small large clean "
         "jpeg blurry black white satellite view aerial above from seen forest river sea or lake pasture annual "
         "crop land herbaceous vegetation highway road industrial buildings permanent residential art sculpture "
         "origami toy plastic sketch tattoo painting embroidered cartoon doodle low resolution pixelated weird "
         "one my nice it this is red green blue circle square heart star triangle purple orange yellow cyan")
# the tokenizer's vocabulary: <pad>, </s>, <unk> and the words
TINY_VOCAB_SIZE = 3 + len(set(WORDS.split()))

TINY_SIGLIP = {
    "embed_dim": 64, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": {"image_size": 32, "timm_model_name": "vit_base_patch16_siglip_224", "timm_model_pretrained": False,
                   "timm_pool": "map", "timm_proj": "none"},
    "text_cfg": {"context_length": 32, "vocab_size": TINY_VOCAB_SIZE, "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
                 "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 64, "heads": 1, "layers": 12,
                 "no_causal_mask": True, "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6}},
}
TINY_SIGLIP_TRUNK = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 12, "num_heads": 1}


def save_tiny_hf_tokenizer(folder) -> str:
    """A word-level Hugging Face tokenizer (``<pad>`` 0, ``</s>`` 1 appended to every text, ``<unk>`` 2),
    saved the way AutoTokenizer reads it; trained offline from a fixed word list."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in sorted(set(WORDS.split())):
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))
    return str(folder)


def build_small_trunk_model(config: dict, seed: int = 0, trunk: Optional[dict] = None):
    """:func:`build_open_clip_model`, with the timm trunk open_clip creates given other sizes."""
    if not config["vision_cfg"].get("timm_model_name"):
        return build_open_clip_model(config, seed)
    from functools import partial
    from unittest import mock

    import timm

    with mock.patch.object(timm, "create_model", partial(timm.create_model, **(trunk or TINY_SIGLIP_TRUNK))):
        return build_open_clip_model(config, seed)
