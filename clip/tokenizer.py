"""CLIP's byte-pair-encoding tokenizer and :func:`tokenize`.

The BPE vocabulary is not vendored here: the tokenizer class and its vocabulary file come from the
``open_clip_torch`` package (which ships ``bpe_simple_vocab_16e6.txt.gz``), and are read from disk,
never from the network. Token ids are identical to OpenAI's (start 49406, end 49407).
"""
import importlib
import importlib.util
import os
import sys
from typing import List, Union

import torch

__all__ = ["SimpleTokenizer", "_Tokenizer", "tokenize", "get_tokenizer"]


def load_open_clip_module(name):
    """open_clip's module ``open_clip.<name>``, preferably without importing all of open_clip.

    ``import open_clip`` pulls in timm and huggingface_hub (seconds of start-up for every run and
    test); the modules used here (the tokenizer: ftfy, regex and torch; the zero-shot metadata:
    plain data) are loaded from their files directly. If that ever stops working, fall back to
    the regular import.
    """
    if f"open_clip.{name}" in sys.modules:
        return sys.modules[f"open_clip.{name}"]
    package_spec = importlib.util.find_spec("open_clip")
    if package_spec is None or not package_spec.submodule_search_locations:
        raise ImportError("clip needs the open_clip_torch package (CLIP's BPE vocabulary, prompt templates): "
                          "pip install open_clip_torch")
    module_name = f"clip._open_clip_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = os.path.join(list(package_spec.submodule_search_locations)[0], f"{name}.py")
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError, AttributeError):
        return importlib.import_module(f"open_clip.{name}")
    sys.modules[module_name] = module
    return module


_open_clip_tokenizer = load_open_clip_module("tokenizer")


class SimpleTokenizer(_open_clip_tokenizer.SimpleTokenizer):
    """OpenAI's CLIP BPE tokenizer (lower-cased, ftfy-cleaned text).

    ``encode(text) -> list[int]`` (no start/end tokens), ``decode(ids) -> str``, ``encoder``
    (token string -> id), ``sot_token_id`` and ``eot_token_id``. Built from the vocabulary file
    bundled with open_clip, so construction never touches the network.
    """


# The name CoOp-style code imports: ``from clip.simple_tokenizer import SimpleTokenizer as _Tokenizer``.
_Tokenizer = SimpleTokenizer

_default_tokenizer = None


def get_tokenizer() -> SimpleTokenizer:
    """The shared tokenizer instance (built on first use; reading the vocabulary takes ~0.2 s)."""
    global _default_tokenizer
    if _default_tokenizer is None:
        _default_tokenizer = SimpleTokenizer()
    return _default_tokenizer


def tokenize(texts: Union[str, List[str]], context_length: int = 77,
             truncate: bool = False) -> torch.LongTensor:
    """Token ids ``(N, context_length)``: start token, BPE tokens, end token, then zeros.

    A text whose tokens (with start and end) exceed ``context_length`` raises ``RuntimeError``
    unless ``truncate`` is set, in which case it is cut and its last kept token becomes the end
    token. The end token has the highest id, so ``argmax(-1)`` finds its position.
    """
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = get_tokenizer()
    sot, eot = tokenizer.sot_token_id, tokenizer.eot_token_id
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    # One Python pass per text is inherent to BPE; this runs once per class list, not per step.
    for row, text in enumerate(texts):
        tokens = [sot] + tokenizer.encode(text) + [eot]
        if len(tokens) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text!r} is too long for context length "
                                   f"{context_length} ({len(tokens)} tokens)")
            tokens = tokens[:context_length]
            tokens[-1] = eot
        result[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return result
