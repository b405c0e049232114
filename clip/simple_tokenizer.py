"""Compatibility module for code written against OpenAI's ``clip.simple_tokenizer``."""
from .tokenizer import SimpleTokenizer, _Tokenizer

__all__ = ["SimpleTokenizer", "_Tokenizer"]
