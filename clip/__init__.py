"""The patched CLIP: one model implementation with prompt/hook entry points, a loader, a tokenizer.

Public names mirror OpenAI's ``clip`` package (``load``, ``available_models``, ``tokenize``,
``build_model``) so code written against it keeps working.
"""
from .loader import (CLIP_MEAN, CLIP_STD, MODEL_URLS, _download, _MODELS, _transform,
                     available_models, default_cache_dir, download, load, make_preprocess,
                     read_state_dict)
from .model import (CLIP, LayerHook, LayerNorm, ModifiedResNet, QuickGELU,
                    ResidualAttentionBlock, Transformer, VisionTransformer, build_model,
                    infer_clip_config)
from .tokenizer import SimpleTokenizer, _Tokenizer, get_tokenizer, tokenize
from . import openclip  # noqa: F401,E402  (``clip.openclip``: open_clip models)
from . import simple_tokenizer  # noqa: F401,E402  (``clip.simple_tokenizer``, as in OpenAI's package)

__all__ = [
    "CLIP", "CLIP_MEAN", "CLIP_STD", "MODEL_URLS", "LayerHook", "LayerNorm", "ModifiedResNet",
    "QuickGELU", "ResidualAttentionBlock", "SimpleTokenizer", "Transformer", "VisionTransformer",
    "available_models", "build_model", "default_cache_dir", "download", "get_tokenizer", "infer_clip_config", "load",
    "make_preprocess", "read_state_dict", "tokenize",
]
