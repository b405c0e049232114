"""open_clip models (LAION, DataComp, ... and configs of one's own) on this package's CLIP.

``clip.load("openclip:<model>", pretrained=<weights file>)`` reads the model's open_clip configuration
(a name from open_clip's ``model_configs`` folder, e.g. ``ViT-B-16`` or ``ViT-L-14-quickgelu``, or the
path of a config JSON in open_clip's format), builds :class:`clip.model.CLIP` with that architecture,
and loads open_clip's state dict into it. Nothing is downloaded: the weights are a local file (open_clip's
``.bin``/``.pt``/``.safetensors``), and only open_clip's files on disk are read.

What differs between CLIP families is decided here and in :mod:`clip.model`, never in a method: every
prompt-learning method sees the same ``CLIP`` with the same hook. Supported today: open_clip's native
ViT (the OpenAI layout with GELU or QuickGELU, any width, depth, patch size, resolution and context
length). A configuration option this package does not implement is a one-line error naming it.
"""
import difflib
import importlib.util
import json
import os
from typing import Optional, Tuple

import torch

from .model import CLIP

__all__ = ["PREFIX", "is_openclip_name", "config_dir", "read_config", "clip_arguments", "read_weights",
           "build_openclip", "preprocess_config", "OPENAI_PREPROCESS"]

PREFIX = "openclip:"

OPENAI_PREPROCESS = {
    "mean": (0.48145466, 0.4578275, 0.40821073),
    "std": (0.26862954, 0.26130258, 0.27577711),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}

# Config options whose value must be the one given here for the architecture to be ours; any other
# value is refused with its name (rather than silently building a different network).
_VISION_DEFAULTS = {
    "head_width": None, "mlp_ratio": None, "patch_size": None, "image_size": None, "layers": None, "width": None,
    "ls_init_value": None, "patch_dropout": 0.0, "attentional_pool": False, "attn_pooler_queries": None,
    "attn_pooler_heads": None, "no_ln_pre": False, "pos_embed_type": "learnable", "final_ln_after_pool": False,
    "pool_type": "tok", "output_tokens": False, "act_kwargs": None, "norm_kwargs": None, "block_type": None,
    "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
    "scale_attn": False, "scale_fc": False, "timm_model_name": None, "timm_model_pretrained": None,
    "timm_pool": None, "timm_proj": None, "timm_proj_bias": None, "timm_drop": None, "timm_drop_path": None,
}
_TEXT_DEFAULTS = {
    "context_length": None, "vocab_size": None, "width": None, "heads": None, "layers": None, "mlp_ratio": None,
    "hf_tokenizer_name": None, "tokenizer_mode": None, "tokenizer_kwargs": None, "ls_init_value": None,
    "embed_cls": False, "pad_id": 0, "eos_id": None, "no_causal_mask": False, "final_ln_after_pool": False,
    "pool_type": "argmax", "proj_bias": False, "proj_type": "linear", "output_tokens": False, "act_kwargs": None,
    "norm_kwargs": None, "block_type": None, "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False,
    "scale_attn_inner": False, "scale_attn": False, "scale_fc": False, "hf_model_name": None,
    "hf_model_pretrained": None, "hf_proj_type": None, "hf_pooler_type": None,
}
_TOP_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text", "preprocess_cfg",
             "init_logit_scale", "cast_dtype"}
# Options that are only a setting of open_clip's training or of its unused outputs, so any value
# builds the same frozen network (the value a timm/hf option takes is irrelevant when its name is None).
_IRRELEVANT = {"output_tokens", "attn_pooler_queries", "attn_pooler_heads", "timm_model_pretrained", "timm_pool",
               "timm_proj", "timm_proj_bias", "timm_drop", "timm_drop_path", "hf_model_pretrained",
               "hf_proj_type", "hf_pooler_type", "eos_id", "tokenizer_mode", "tokenizer_kwargs"}


# The architecture's sizes (read by clip_arguments) and the options above that change nothing here.
_FREE = {"head_width", "mlp_ratio", "patch_size", "image_size", "layers", "width", "context_length", "vocab_size",
         "heads"} | _IRRELEVANT


def is_openclip_name(name) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def config_dir() -> str:
    """open_clip's ``model_configs`` folder (found without importing open_clip)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("openclip: backbones need the open_clip_torch package: pip install open_clip_torch")
    return os.path.join(list(spec.submodule_search_locations)[0], "model_configs")


def read_config(model: str) -> Tuple[str, dict]:
    """``(name, config)`` of an open_clip model name or a config JSON path (``openclip:`` prefix optional)."""
    if is_openclip_name(model):
        model = model[len(PREFIX):]
    if not model:
        raise ValueError("openclip: needs a model name or config JSON, e.g. openclip:ViT-B-16")
    path = os.path.expanduser(model)
    if model.endswith(".json") or os.path.sep in model:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"open_clip model config {path} does not exist")
        name = os.path.splitext(os.path.basename(path))[0]
    else:
        folder = config_dir()
        path = os.path.join(folder, f"{model}.json")
        if not os.path.isfile(path):
            known = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json"))
            close = difflib.get_close_matches(model, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(known)} known, in {folder})"
            raise ValueError(f"unknown open_clip model {model!r}{hint}")
        name = model
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"open_clip model config {path} is not readable JSON: {error}") from None
    if not isinstance(config, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(config):
        raise ValueError(f"open_clip model config {path} needs embed_dim, vision_cfg and text_cfg")
    return name, config


def _refuse(name: str, where: str, key: str, value, why: str = "not supported") -> None:
    raise ValueError(f"open_clip model {name}: {where}{key}={json.dumps(value)} is {why}; supported are open_clip's "
                     f"native ViT models (OpenAI's layout, GELU or QuickGELU)")


def _check_options(name: str, section: dict, defaults: dict, where: str) -> None:
    for key, value in section.items():
        if key not in defaults:
            _refuse(name, where, key, value, "an option this package does not know")
        if key in _FREE:
            continue
        if value != defaults[key] and not (value is None and defaults[key] in (False, 0.0)):
            if key == "timm_model_name":
                _refuse(name, where, key, value, "a timm image tower, not supported yet")
            if key in ("hf_model_name", "hf_tokenizer_name"):
                _refuse(name, where, key, value, "a Hugging Face text tower/tokenizer, not supported yet")
            _refuse(name, where, key, value)


def clip_arguments(name: str, config: dict) -> dict:
    """The :class:`CLIP` constructor arguments of an open_clip config (after checking it is supported)."""
    vision, text = dict(config["vision_cfg"]), dict(config["text_cfg"])
    _check_options(name, vision, _VISION_DEFAULTS, "vision_cfg.")
    _check_options(name, text, _TEXT_DEFAULTS, "text_cfg.")
    for key, value in config.items():
        if key not in _TOP_KEYS:
            _refuse(name, "", key, value, "an option this package does not know" if key != "init_logit_bias"
                    else "a learned logit bias (SigLIP), not supported yet")
    layers = vision.get("layers", 12)
    if isinstance(layers, (list, tuple)):
        _refuse(name, "vision_cfg.", "layers", layers, "a ResNet image tower, not supported for open_clip configs")
    image_size = vision.get("image_size", 224)
    if isinstance(image_size, (list, tuple)):
        if len(set(image_size)) != 1:
            _refuse(name, "vision_cfg.", "image_size", image_size, "non-square, not supported")
        image_size = image_size[0]
    width = vision.get("width", 768)
    head_width = vision.get("head_width", 64)
    if width % head_width:
        _refuse(name, "vision_cfg.", "head_width", head_width, f"not a divisor of width {width}")
    return dict(
        embed_dim=int(config["embed_dim"]),
        image_resolution=int(image_size),
        vision_layers=int(layers),
        vision_width=int(width),
        vision_patch_size=int(vision.get("patch_size", 16)),
        vision_heads=int(width // head_width),
        vision_mlp_ratio=float(vision.get("mlp_ratio", 4.0)),
        context_length=int(text.get("context_length", 77)),
        vocab_size=int(text.get("vocab_size", 49408)),
        transformer_width=int(text.get("width", 512)),
        transformer_heads=int(text.get("heads", 8)),
        transformer_layers=int(text.get("layers", 12)),
        text_mlp_ratio=float(text.get("mlp_ratio", 4.0)),
        activation="quick_gelu" if config.get("quick_gelu") else "gelu",
    )


def read_weights(path: str) -> dict:
    """open_clip's state dict from ``path`` (``.safetensors``, or a ``torch.save``d ``.bin``/``.pt``,
    optionally wrapped in ``state_dict`` as open_clip's training checkpoints are, ``module.`` prefixes
    of DDP checkpoints removed; a custom-text model's ``text.`` keys moved to the top level)."""
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"open_clip weights file {path} does not exist (open_clip's pretrained tags name "
                                f"the Hugging Face repository each file comes from: see docs/INSTALL.md)")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # damaged file, wrong format
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"could not read open_clip weights from {path}: {first}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise RuntimeError(f"{path} does not hold an open_clip state dict")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return {(key[len("text."):] if key.startswith("text.") else key): value for key, value in state.items()}


def build_openclip(model: str, weights: Optional[str], tag: Optional[str] = None) -> CLIP:
    """A fp32 :class:`CLIP` in eval mode with the architecture of open_clip's ``model`` and the state
    dict of ``weights``; ``weights`` None gives open_clip-style random initialisation. With the
    pretrained ``tag`` of the weights, an activation that differs from the one the tag was trained
    with is an error (open_clip only warns: GELU weights under QuickGELU lose accuracy silently)."""
    name, config = read_config(model)
    arguments = clip_arguments(name, config)
    pretrained = _pretrained_module() if tag else None
    if pretrained is not None:
        _check_tag(pretrained, model, name, tag)
        wants_quick = bool(pretrained.get_pretrained_cfg(name, tag).get("quick_gelu"))
        if wants_quick != (arguments["activation"] == "quick_gelu"):
            other = f"{name}-quickgelu" if wants_quick else name.replace("-quickgelu", "")
            raise ValueError(f"open_clip tag {tag} was trained with {'QuickGELU' if wants_quick else 'GELU'} but "
                             f"model {name} uses {'GELU' if wants_quick else 'QuickGELU'}: use openclip:{other}")
    clip_model = CLIP(**arguments)
    clip_model.openclip_name = name
    if weights:
        state = read_weights(weights)
        mine = clip_model.state_dict()
        unexpected = sorted(set(state) - set(mine))
        missing = sorted(set(mine) - set(state))
        if unexpected or missing:
            what = f"unexpected key {unexpected[0]}" if unexpected else f"missing key {missing[0]}"
            raise RuntimeError(f"{weights} is not a checkpoint of open_clip model {name}: {what} "
                               f"({len(unexpected)} unexpected, {len(missing)} missing)")
        for key, value in state.items():
            if tuple(value.shape) != tuple(mine[key].shape):
                raise RuntimeError(f"{weights} is not a checkpoint of open_clip model {name}: {key} has shape "
                                   f"{tuple(value.shape)}, the config gives {tuple(mine[key].shape)}")
        clip_model.load_state_dict(state, strict=True)
    return clip_model.float().eval()


def preprocess_config(model: str, tag: Optional[str] = None) -> dict:
    """``{size, mean, std, interpolation, resize_mode}`` of open_clip's ``model``: open_clip's defaults,
    then the config's ``preprocess_cfg``, then the pretrained tag's values (``tag``, or the values all of
    the model's tags share; when they differ a tag is required). A config JSON of one's own has no tags:
    its ``preprocess_cfg`` is the whole story."""
    name, config = read_config(model)
    result = dict(OPENAI_PREPROCESS)
    result.update({k: v for k, v in config.get("preprocess_cfg", {}).items() if k in result})
    size = config["vision_cfg"].get("image_size", 224)
    result["size"] = int(size[0] if isinstance(size, (list, tuple)) else size)
    keys = ("mean", "std", "interpolation", "resize_mode")
    custom = str(model).endswith(".json") or os.path.sep in str(model)
    pretrained = None if custom and not tag else _pretrained_module()  # a config of one's own has no tags
    tags = pretrained.list_pretrained_tags_by_model(name) if pretrained else []
    if tag:
        _check_tag(pretrained, model, name, tag)
        chosen = pretrained.get_pretrained_cfg(name, tag) if pretrained else {}
    else:
        found = {tuple(str(pretrained.get_pretrained_cfg(name, t).get(k)) for k in keys): t for t in tags}
        if len(found) > 1:
            raise ValueError(f"open_clip model {name}: its pretrained tags use different preprocessing; name the tag "
                             f"of your weights with MODEL.BACKBONE.TAG (one of {', '.join(tags)})")
        chosen = pretrained.get_pretrained_cfg(name, tags[0]) if tags else {}
    result.update({k: tuple(chosen[k]) if isinstance(chosen[k], (list, tuple)) else chosen[k]
                   for k in keys if chosen.get(k) is not None})
    return result


def _check_tag(pretrained, model: str, name: str, tag: str) -> None:
    if str(model).endswith(".json") or os.path.sep in str(model):
        raise ValueError(f"MODEL.BACKBONE.TAG {tag} names an open_clip pretrained tag, but {model} is a config file "
                         f"of one's own (put its preprocessing in the file's preprocess_cfg)")
    tags = pretrained.list_pretrained_tags_by_model(name) if pretrained else []
    if tag not in tags:
        raise ValueError(f"open_clip model {name} has no pretrained tag {tag!r}; its tags: {', '.join(tags) or 'none'}")


def _pretrained_module():
    """open_clip's table of pretrained tags (imports open_clip: a few seconds, only for openclip: models)."""
    try:
        from open_clip import pretrained
    except ImportError:
        return None
    return pretrained
