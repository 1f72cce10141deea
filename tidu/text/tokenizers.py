"""Tokenizers: characters (no dependencies) and byte-pair encoding (the ``tokenizers`` package).

Both share one small interface: ``encode(text) -> list[int]``, ``decode(ids) -> str``,
``vocab_size``, ``save(path)`` and ``load(path)``.
"""
import json

import numpy as np

from ..io import atomic_write, read_json, write_json

__all__ = ["CharTokenizer", "BPETokenizer"]


class CharTokenizer:
    """One token per character, ids in the order of ``chars`` (``from_text`` sorts the characters of a text).

    >>> from tidu.text import CharTokenizer
    >>> tok = CharTokenizer.from_text("hello world")
    >>> tok.vocab_size, tok.encode("hello")
    (8, [3, 2, 4, 4, 5])
    >>> tok.decode(tok.encode("world"))
    'world'
    """

    def __init__(self, chars):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer: chars must be single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: chars must not repeat")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        self._order = np.argsort(codes)
        self._sorted_codes = codes[self._order]

    @classmethod
    def from_text(cls, text):
        """The tokenizer of every distinct character of ``text``, in code-point order."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars)

    def __len__(self):
        return len(self.chars)

    def encode(self, text, as_array=False):
        """Token ids of ``text`` as a list (or an int64 array with ``as_array``, fast for long texts)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._sorted_codes, codes)
        pos = np.minimum(pos, len(self._sorted_codes) - 1) if len(self._sorted_codes) else pos
        found = self._sorted_codes[pos] == codes if len(self._sorted_codes) else np.zeros(codes.shape, bool)
        if not found.all():
            i = int(np.argmin(found))
            raise ValueError(f"CharTokenizer: character {text[i]!r} at position {i} is not in the vocabulary "
                             f"of {self.vocab_size} characters")
        ids = self._order[pos]
        return ids if as_array else ids.tolist()

    def decode(self, ids):
        ids = np.asarray(ids.numpy() if hasattr(ids, "numpy") else ids).reshape(-1)
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.size:
            raise ValueError(f"CharTokenizer: token id {int(bad[0])} is out of range for vocab_size {self.vocab_size}")
        return "".join(self.chars[i] for i in ids.tolist())

    def save(self, path):
        """Write the vocabulary as JSON (atomically)."""
        write_json({"type": "CharTokenizer", "chars": "".join(self.chars)}, path)

    @classmethod
    def load(cls, path):
        data = read_json(path)
        if data.get("type") != "CharTokenizer":
            raise ValueError(f"CharTokenizer.load: {path} does not hold a CharTokenizer (type {data.get('type')!r})")
        return cls(data["chars"])

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("BPETokenizer needs the `tokenizers` package: pip install 'tidu[text]'") from None
    return tokenizers


class BPETokenizer:
    """Byte-level byte-pair encoding (GPT-2's scheme) through Hugging Face's ``tokenizers``.

    Train one on your texts with ``BPETokenizer.train(texts, vocab_size)``, or load a saved or
    pretrained ``tokenizer.json`` with ``BPETokenizer.load(path)``. Byte-level: any text encodes,
    with no unknown tokens, and ``decode(encode(text)) == text``.

    >>> from tidu.text import BPETokenizer
    >>> tok = BPETokenizer.train(["low lower lowest"] * 20, vocab_size=270)
    >>> tok.decode(tok.encode("lowest low")) == "lowest low"
    True
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts, vocab_size=1000, min_frequency=2, special_tokens=("<|endoftext|>",)):
        """Learn ``vocab_size`` tokens (the 256 byte tokens included) from an iterable of strings."""
        tk = _tokenizers()
        if vocab_size < 257:
            raise ValueError(f"BPETokenizer.train: vocab_size must exceed the 256 byte tokens, got {vocab_size}")
        tok = tk.Tokenizer(tk.models.BPE())
        tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                         special_tokens=list(special_tokens), show_progress=False,
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts if not isinstance(texts, str) else [texts], trainer)
        return cls(tok)

    @classmethod
    def load(cls, path):
        """A tokenizer from a ``tokenizer.json`` file (as ``save`` writes, or a Hugging Face one)."""
        tk = _tokenizers()
        return cls(tk.Tokenizer.from_str(json.dumps(read_json(path))))

    @property
    def vocab_size(self):
        return self.tokenizer.get_vocab_size()

    def __len__(self):
        return self.vocab_size

    def encode(self, text, as_array=False):
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return np.asarray(ids, dtype=np.int64) if as_array else list(ids)

    def decode(self, ids):
        ids = np.asarray(ids.numpy() if hasattr(ids, "numpy") else ids).reshape(-1)
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.size:
            raise ValueError(f"BPETokenizer: token id {int(bad[0])} is out of range for vocab_size {self.vocab_size}")
        return self.tokenizer.decode(ids.tolist(), skip_special_tokens=False)

    def token_to_id(self, token):
        return self.tokenizer.token_to_id(token)

    def save(self, path):
        """Write ``tokenizer.json`` (atomically)."""
        with atomic_write(path, "w") as f:
            f.write(self.tokenizer.to_str())

    def __repr__(self):
        return f"BPETokenizer(vocab_size={self.vocab_size})"
