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

__all__ = ["SimpleTokenizer", "_Tokenizer", "tokenize", "get_tokenizer", "BPETextTokenizer", "HFTextTokenizer"]


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


class BPETextTokenizer:
    """OpenAI's BPE as a model's tokenizer: what the prompt learners ask of any CLIP's text side.

    ``tokenize(texts)`` -> ``(N, context_length)`` ids, ``encode(text)`` the ids of a text without
    special tokens, ``decode(ids)``, and ``prefix_length``: how many special tokens precede the first
    word (1: the start token), i.e. where learnable context goes.
    """

    prefix_length = 1

    def __init__(self, context_length: int = 77):
        self.context_length = context_length

    def tokenize(self, texts: Union[str, List[str]]) -> torch.LongTensor:
        return tokenize(texts, context_length=self.context_length)

    def encode(self, text: str) -> List[int]:
        return get_tokenizer().encode(text)

    def decode(self, ids) -> str:
        return get_tokenizer().decode(list(ids))

    def token_string(self, token_id: int) -> str:
        """The vocabulary entry of one id (BPE's, with ``</w>`` marking a word end)."""
        return get_tokenizer().decoder[int(token_id)]


class HFTextTokenizer:
    """A Hugging Face tokenizer from a local folder, run as open_clip runs it (its ``HFTokenizer``:
    the configured text cleaning, then the tokenizer's own special tokens, padded or cut to the
    context length). SigLIP's: canonicalised text (lower case, no punctuation), an end token, no
    start token, so ``prefix_length`` is 0.

    ``folder`` must hold the tokenizer files (``tokenizer.json`` or a SentencePiece model, and
    ``tokenizer_config.json``) of the repository open_clip's config names (``hub_name``); nothing is
    downloaded.
    """

    def __init__(self, folder, context_length: int, clean: str = "whitespace", hub_name: str = ""):
        where = (f"the tokenizer files of the Hugging Face repository {hub_name}" if hub_name
                 else "a Hugging Face tokenizer folder")
        if not folder:
            raise ValueError(f"this model's text uses a Hugging Face tokenizer: set MODEL.BACKBONE.TOKENIZER to a "
                             f"local folder with {where} (e.g. huggingface-cli download {hub_name or 'REPO'} "
                             f"--local-dir DIR); nothing is downloaded at run time")
        folder = os.path.expanduser(str(folder))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"MODEL.BACKBONE.TOKENIZER {folder} is not a folder; it must hold {where}")
        module = load_open_clip_module("tokenizer")
        try:
            self.hf = module.HFTokenizer(folder, context_length=context_length, clean=clean, local_files_only=True)
        except ImportError as error:
            raise ImportError(f"Hugging Face tokenizers need the transformers package: pip install transformers "
                              f"({error})") from None
        except Exception as error:  # noqa: BLE001  (missing or unreadable files)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RuntimeError(f"MODEL.BACKBONE.TOKENIZER {folder}: cannot load {where}: {first}") from None
        self.context_length = context_length
        self.clean = self.hf.clean_fn
        probe = self.encode("x")
        full = self.tokenize(["x"])[0].tolist()
        starts = [i for i in range(len(full) - len(probe) + 1) if full[i:i + len(probe)] == probe]
        self.prefix_length = starts[0] if starts else 0

    def tokenize(self, texts: Union[str, List[str]]) -> torch.LongTensor:
        return self.hf([texts] if isinstance(texts, str) else list(texts))

    def encode(self, text: str) -> List[int]:
        return list(self.hf.tokenizer(self.clean(text), add_special_tokens=False).input_ids)

    def decode(self, ids) -> str:
        return self.hf.tokenizer.decode(list(ids))

    def token_string(self, token_id: int) -> str:
        """The vocabulary entry of one id (e.g. SentencePiece's, with ``▁`` marking a word start)."""
        return self.hf.tokenizer.convert_ids_to_tokens(int(token_id))
