"""``tidu.text``: tokenizers that turn text into token ids and back.

``CharTokenizer`` (one id per character, no dependencies) and ``BPETokenizer`` (byte-pair encoding
through the ``tokenizers`` package: ``pip install tidu[text]``).
"""
from .tokenizers import BPETokenizer, CharTokenizer

__all__ = ["CharTokenizer", "BPETokenizer"]
