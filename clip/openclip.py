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
from torch import nn

from .model import CLIP

__all__ = ["PREFIX", "is_openclip_name", "config_dir", "read_config", "clip_arguments", "read_weights",
           "build_openclip", "preprocess_config", "OPENAI_PREPROCESS"]

PREFIX = "openclip:"

# OpenAI CLIP's preprocessing, open_clip's default (clip.CLIP_MEAN / CLIP_STD are these).
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
             "init_logit_scale", "init_logit_bias", "cast_dtype"}
# Options that are only a setting of open_clip's training or of its unused outputs, so any value
# builds the same frozen network (the value a timm/hf option takes is irrelevant when its name is None).
_IRRELEVANT = {"output_tokens", "attn_pooler_queries", "attn_pooler_heads", "timm_model_pretrained",
               "timm_proj_bias", "timm_drop", "timm_drop_path", "hf_model_pretrained",
               "hf_proj_type", "hf_pooler_type", "eos_id"}


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
                     f"native ViTs (GELU or QuickGELU) and SigLIP-style models (docs/BACKBONES.md)")


# Options whose value is read by clip_arguments (any supported value allowed there).
_HANDLED = {"vision_cfg.": {"norm_kwargs", "act_kwargs", "timm_model_name", "timm_pool", "timm_proj"},
            "text_cfg.": {"norm_kwargs", "act_kwargs", "no_causal_mask", "pool_type", "proj_bias", "hf_tokenizer_name",
                          "tokenizer_kwargs", "pad_id"}}


def _check_options(name: str, section: dict, defaults: dict, where: str) -> None:
    for key, value in section.items():
        if key not in defaults:
            _refuse(name, where, key, value, "an option this package does not know")
        if key in _FREE or key in _HANDLED[where]:
            continue
        if value != defaults[key] and not (value is None and defaults[key] in (False, 0.0)):
            if key == "hf_model_name":
                _refuse(name, where, key, value, "a Hugging Face text tower, not supported yet")
            _refuse(name, where, key, value)


def _norm_eps(name: str, where: str, kwargs) -> float:
    kwargs = dict(kwargs or {})
    if set(kwargs) - {"eps"}:
        _refuse(name, where, "norm_kwargs", kwargs, "not supported (only eps)")
    return float(kwargs.get("eps", 1e-5))


def _activation(name: str, where: str, quick_gelu: bool, kwargs) -> str:
    kwargs = dict(kwargs or {})
    if not kwargs:
        return "quick_gelu" if quick_gelu else "gelu"
    if kwargs == {"approximate": "tanh"} and not quick_gelu:
        return "gelu_tanh"
    _refuse(name, where, "act_kwargs", kwargs, "not supported (only GELU's approximate=tanh)")


def timm_trunk_arguments(name: str, vision: dict) -> dict:
    """The image-tower arguments of a timm trunk (SigLIP's: no class token, attention pooling),
    read from timm's own definition of ``timm_model_name`` built on the meta device (no weights, no
    memory). Sizes are the named model's; :func:`build_openclip` takes them from the weights when
    it has weights, so a config naming the trunk family also describes other sizes of it."""
    trunk_name = vision["timm_model_name"]
    if vision.get("timm_pool", "avg") != "map" or vision.get("timm_proj", "linear") not in ("none", "", None):
        _refuse(name, "vision_cfg.", "timm_pool", vision.get("timm_pool", "avg"),
                "not supported with a timm tower (only SigLIP's: timm_pool map, timm_proj none)")
    try:
        import timm
        from timm.layers import AttentionPoolLatent
        from timm.models.vision_transformer import VisionTransformer as TimmViT
        with torch.device("meta"):
            trunk = timm.create_model(trunk_name, num_classes=0, global_pool="map")
    except Exception as error:  # unknown name, timm missing
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _refuse(name, "vision_cfg.", "timm_model_name", trunk_name, f"not a timm model this timm builds ({first})")
    block = trunk.blocks[0] if isinstance(trunk, TimmViT) and len(trunk.blocks) else None
    pool = getattr(trunk, "attn_pool", None)
    simple = (block is not None and trunk.cls_token is None and trunk.num_reg_tokens == 0
              and isinstance(trunk.norm_pre, nn.Identity) and isinstance(trunk.fc_norm, nn.Identity)
              and not trunk.dynamic_img_size and isinstance(block.ls1, nn.Identity)
              and isinstance(block.attn.q_norm, nn.Identity) and isinstance(block.attn.norm, nn.Identity)
              and isinstance(block.mlp.norm, nn.Identity) and block.attn.qkv.bias is not None
              and isinstance(block.mlp.act, nn.GELU) and isinstance(trunk.norm, nn.LayerNorm)
              and isinstance(pool, AttentionPoolLatent) and pool.latent_len == 1 and pool.pos_embed is None
              and isinstance(pool.q_norm, nn.Identity) and pool.pool == "token" and pool.mlp is not None
              and pool.num_heads == block.attn.num_heads)
    if not simple:
        _refuse(name, "vision_cfg.", "timm_model_name", trunk_name,
                "a timm tower outside the supported kind (a ViT without class or register tokens, layer scale or "
                "q/k norm, pooled by one-query attention: SigLIP's)")
    return dict(
        image_resolution=int(trunk.patch_embed.img_size[0]),
        vision_layers=len(trunk.blocks),
        vision_width=int(trunk.embed_dim),
        vision_patch_size=int(trunk.patch_embed.patch_size[0]),
        vision_heads=int(block.attn.num_heads),
        vision_mlp_ratio=block.mlp.fc1.out_features / trunk.embed_dim,
        vision_activation="gelu_tanh" if block.mlp.act.approximate == "tanh" else "gelu",
        vision_norm_eps=float(trunk.norm.eps),
        vision_class_token=False, vision_patch_bias=True, vision_ln_pre=False, vision_pool="map", vision_proj=False,
    )


def clip_arguments(name: str, config: dict) -> dict:
    """The :class:`CLIP` constructor arguments of an open_clip config (after checking it is supported)."""
    vision, text = dict(config["vision_cfg"]), dict(config["text_cfg"])
    _check_options(name, vision, _VISION_DEFAULTS, "vision_cfg.")
    _check_options(name, text, _TEXT_DEFAULTS, "text_cfg.")
    for key, value in config.items():
        if key not in _TOP_KEYS:
            _refuse(name, "", key, value, "an option this package does not know")
    quick = bool(config.get("quick_gelu"))
    if vision.get("timm_model_name"):
        arguments = timm_trunk_arguments(name, vision)
    else:
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
        arguments = dict(
            image_resolution=int(image_size), vision_layers=int(layers), vision_width=int(width),
            vision_patch_size=int(vision.get("patch_size", 16)), vision_heads=int(width // head_width),
            vision_mlp_ratio=float(vision.get("mlp_ratio", 4.0)),
            vision_activation=_activation(name, "vision_cfg.", quick, vision.get("act_kwargs")),
            vision_norm_eps=_norm_eps(name, "vision_cfg.", vision.get("norm_kwargs")))
    pool = text.get("pool_type", "argmax")
    if pool not in ("argmax", "last"):
        _refuse(name, "text_cfg.", "pool_type", pool, "not supported (argmax: end-of-text token, last)")
    causal = not text.get("no_causal_mask", False)
    if causal and pool == "last":
        _refuse(name, "text_cfg.", "pool_type", pool, "not supported with a causal mask")
    clean = dict(text.get("tokenizer_kwargs") or {}).get("clean", "whitespace")
    if set(text.get("tokenizer_kwargs") or {}) - {"clean"} or clean not in ("whitespace", "canonicalize", "lower"):
        _refuse(name, "text_cfg.", "tokenizer_kwargs", text.get("tokenizer_kwargs"), "not supported (only clean)")
    arguments.update(
        embed_dim=int(config["embed_dim"]),
        context_length=int(text.get("context_length", 77)),
        vocab_size=int(text.get("vocab_size", 49408)),
        transformer_width=int(text.get("width", 512)),
        transformer_heads=int(text.get("heads", 8)),
        transformer_layers=int(text.get("layers", 12)),
        text_mlp_ratio=float(text.get("mlp_ratio", 4.0)),
        activation=_activation(name, "text_cfg.", quick, text.get("act_kwargs")),
        text_norm_eps=_norm_eps(name, "text_cfg.", text.get("norm_kwargs")),
        text_causal=causal, text_pool=pool, text_proj_bias=bool(text.get("proj_bias", False)),
        logit_bias=None if config.get("init_logit_bias") is None else float(config["init_logit_bias"]),
    )
    return arguments


def text_tokenizer(model: str, folder: Optional[str] = None):
    """The tokenizer of open_clip's ``model`` without building the model (OpenAI's BPE, or the Hugging
    Face tokenizer in ``folder`` when the config names one)."""
    from .tokenizer import BPETextTokenizer, HFTextTokenizer

    name, config = read_config(model)
    settings = tokenizer_settings(config)
    context_length = int(config["text_cfg"].get("context_length", 77))
    if settings is None:
        return BPETextTokenizer(context_length)
    return HFTextTokenizer(folder, context_length, settings["clean"], settings["name"])


def tokenizer_settings(config: dict) -> Optional[dict]:
    """``{"name", "clean"}`` of a Hugging Face tokenizer the config names, else None (OpenAI's BPE)."""
    text = config["text_cfg"]
    if not text.get("hf_tokenizer_name"):
        return None
    return {"name": text["hf_tokenizer_name"],
            "clean": dict(text.get("tokenizer_kwargs") or {}).get("clean", "whitespace")}


_TIMM_BLOCK_KEYS = (("norm1.", "ln_1."), ("attn.qkv.weight", "attn.in_proj_weight"), ("attn.qkv.bias", "attn.in_proj_bias"),
                    ("attn.proj.", "attn.out_proj."), ("norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
                    ("mlp.fc2.", "mlp.c_proj."))


def _our_key(key: str, value: torch.Tensor):
    """An open_clip state-dict entry under this package's names (OpenAI's layout): a custom-text
    model's ``text.*`` at the top level, its ``text_projection`` Linear as the (in, out) matrix plus
    ``text_projection_bias``, a timm trunk's ``visual.trunk.*`` as our ViT's keys."""
    if key.startswith("text."):
        key = key[len("text."):]
    if key == "text_projection.weight":
        return "text_projection", value.t()
    if key == "text_projection.bias":
        return "text_projection_bias", value
    if not key.startswith("visual.trunk."):
        return key, value
    rest = key[len("visual.trunk."):]
    if rest.startswith("patch_embed.proj."):
        return "visual.conv1." + rest[len("patch_embed.proj."):], value
    if rest == "pos_embed":
        return "visual.positional_embedding", value[0]
    if rest.startswith("norm."):
        return "visual.ln_post." + rest[len("norm."):], value
    if rest.startswith("attn_pool."):
        return "visual." + rest, value
    if rest.startswith("blocks."):
        index, _, tail = rest[len("blocks."):].partition(".")
        for theirs, ours in _TIMM_BLOCK_KEYS:
            if tail.startswith(theirs):
                return f"visual.transformer.resblocks.{index}.{ours}{tail[len(theirs):]}", value
    return key, value  # left as it is: reported as unexpected


def read_weights(path: str) -> dict:
    """open_clip's state dict from ``path`` (``.safetensors``, or a ``torch.save``d ``.bin``/``.pt``,
    optionally wrapped in ``state_dict`` as open_clip's training checkpoints are, ``module.`` prefixes
    of DDP checkpoints removed), under this package's key names (:func:`_our_key`)."""
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
    return dict(_our_key(key, value) for key, value in state.items())


def _sizes_from_weights(arguments: dict, state: dict) -> dict:
    """A timm trunk's sizes as the weights have them (the config names the trunk's kind)."""
    conv = state.get("visual.conv1.weight")
    positions = state.get("visual.positional_embedding")
    fc = state.get("visual.transformer.resblocks.0.mlp.c_fc.weight")
    if conv is None or positions is None or fc is None:
        return arguments
    width, patch = conv.shape[0], conv.shape[-1]
    head_dim = arguments["vision_width"] // arguments["vision_heads"]
    grid = round(positions.shape[0] ** 0.5)
    return dict(arguments, vision_width=width, vision_patch_size=patch, image_resolution=grid * patch,
                vision_layers=len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")}),
                vision_heads=max(width // head_dim, 1), vision_mlp_ratio=fc.shape[0] / width)


def build_openclip(model: str, weights: Optional[str], tag: Optional[str] = None,
                   tokenizer: Optional[str] = None) -> CLIP:
    """A fp32 :class:`CLIP` in eval mode with the architecture of open_clip's ``model`` and the state
    dict of ``weights``; ``weights`` None gives open_clip-style random initialisation. With the
    pretrained ``tag`` of the weights, an activation that differs from the one the tag was trained
    with is an error (open_clip only warns: GELU weights under QuickGELU lose accuracy silently).
    A model whose text uses a Hugging Face tokenizer (SigLIP) needs its files: ``tokenizer`` is the
    local folder (nothing is downloaded)."""
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
    settings = tokenizer_settings(config)
    text_tokenizer = None
    if settings is not None:
        from .tokenizer import HFTextTokenizer
        text_tokenizer = HFTextTokenizer(tokenizer, arguments["context_length"], settings["clean"], settings["name"])
    state = read_weights(weights) if weights else None
    if state is not None and config["vision_cfg"].get("timm_model_name"):
        arguments = _sizes_from_weights(arguments, state)
    clip_model = CLIP(**arguments)
    clip_model.openclip_name = name
    clip_model.tokenizer = text_tokenizer
    if state is not None:
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
