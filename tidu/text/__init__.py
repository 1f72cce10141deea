"""``tidu.text``: tokenizers that turn text into token ids and back, and decoding for sequence models.

``CharTokenizer`` (one id per character, no dependencies) and ``BPETokenizer`` (byte-pair encoding
through the ``tokenizers`` package: ``pip install tidu[text]``); ``greedy_decode`` and ``beam_search``
for encoder-decoder models.
"""
from .decoding import beam_search, greedy_decode
from .tokenizers import BPETokenizer, CharTokenizer

__all__ = ["CharTokenizer", "BPETokenizer", "greedy_decode", "beam_search"]
