"""GPT: a configurable decoder-only transformer that trains on token ids and generates text.

>>> import tidu as td
>>> import tidu.nn as nn
>>> _ = td.manual_seed(0)
>>> model = nn.GPT(nn.GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, d_model=16))
>>> idx = td.tensor([[1, 2, 3]])
>>> logits, loss = model(idx, targets=td.tensor([[2, 3, 4]]))
>>> logits.shape, loss.shape
((1, 3, 10), ())
>>> model.generate(idx, max_new_tokens=4).shape
(1, 7)
"""
import math
from dataclasses import asdict, dataclass

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..ops import cross_entropy
from ..tensor import Tensor
from . import init
from .container import ModuleList
from .linear import Dropout, Embedding, Linear
from .module import Module
from .transformer import (DecoderBlock, KVCache, LearnedPositionalEmbedding, SinusoidalPositionalEncoding, _norm)

__all__ = ["GPTConfig", "GPT"]

_POSITIONS = ("learned", "sinusoidal", "rotary", "none")


@dataclass
class GPTConfig:
    """The shape of a GPT. ``d_model`` must divide by ``n_head``; the MLP is ``mlp_ratio`` × wide.

    ``pos_embedding``: ``"learned"`` (GPT-2), ``"sinusoidal"``, ``"rotary"`` (on queries and keys) or
    ``"none"``; ``norm``: ``"layer"`` or ``"rms"``; ``tie_weights`` shares the token embedding with the
    output layer (GPT-2 does).
    """
    vocab_size: int = 65
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    pos_embedding: str = "learned"
    norm: str = "layer"
    activation: str = "gelu"
    mlp_ratio: int = 4
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig: d_model {self.d_model} must be divisible by n_head {self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must lie in [0, 1), got {self.dropout}")
        if self.pos_embedding not in _POSITIONS:
            raise ValueError(f"GPTConfig: pos_embedding must be one of {_POSITIONS}, got {self.pos_embedding!r}")
        if self.norm not in ("layer", "rms"):
            raise ValueError(f"GPTConfig: norm must be 'layer' or 'rms', got {self.norm!r}")
        if self.pos_embedding == "rotary" and (self.d_model // self.n_head) % 2:
            raise ValueError(f"GPTConfig: rotary positions need an even head size, got {self.d_model // self.n_head}")

    def to_dict(self):
        return asdict(self)


class GPT(Module):
    """A decoder-only transformer (Radford et al., 2019): token embedding (``wte``) + positions
    (``wpe``), ``n_layer`` pre-norm ``DecoderBlock``s (``h.0`` …), a final norm (``ln_f``) and the
    output layer (``lm_head``, tied to ``wte`` by default). Initialized as GPT-2: N(0, 0.02²) weights,
    residual projections scaled by 1/√(2·n_layer), zero biases.

    ``forward(idx, targets=None)`` takes token ids (N, T) and returns ``(logits, loss)``: logits
    (N, T, vocab_size), and the mean cross-entropy against ``targets`` (N, T) when given (ids of -100
    are ignored), else None.
    """

    def __init__(self, config=None, **kwargs):
        super().__init__()
        if config is None:
            config = GPTConfig(**kwargs)
        elif kwargs:
            raise TypeError("GPT: pass a GPTConfig or keyword arguments, not both")
        c = self.config = config
        self.wte = Embedding(c.vocab_size, c.d_model)
        if c.pos_embedding == "learned":
            self.wpe = LearnedPositionalEmbedding(c.block_size, c.d_model)
        elif c.pos_embedding == "sinusoidal":
            self.wpe = SinusoidalPositionalEncoding(c.d_model, c.block_size)
        else:
            self.wpe = None
        self.drop = Dropout(c.dropout)
        rotary = c.block_size if c.pos_embedding == "rotary" else None
        self.h = ModuleList([DecoderBlock(c.d_model, c.n_head, c.mlp_ratio * c.d_model, c.dropout, c.bias,
                                          c.activation, c.norm, c.layer_norm_eps, rotary) for _ in range(c.n_layer)])
        self.ln_f = _norm(c.norm, c.d_model, c.layer_norm_eps, c.bias)
        self.lm_head = Linear(c.d_model, c.vocab_size, bias=False)
        self._init_weights()
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight

    def _init_weights(self):
        std = 0.02
        for name, m in self.named_modules():
            if isinstance(m, (Linear, Embedding)):
                init.normal_(m.weight, 0.0, std / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj")
                             else std)
                if getattr(m, "bias", None) is not None:
                    init.zeros_(m.bias)

    # --- forward ---
    def _check_idx(self, idx, offset=0):
        c = self.config
        ids = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"GPT: token ids must be integers, got {ids.dtype}")
        if ids.ndim != 2:
            raise ValueError(f"GPT: token ids must have shape (batch, T), got {tuple(ids.shape)}; "
                             "add a batch dimension with idx.unsqueeze(0)")
        if ids.size:
            lo, hi = ids.min(), ids.max()
            if lo < 0 or hi >= c.vocab_size:
                bad = lo if lo < 0 else hi
                raise ValueError(f"GPT: token id {int(bad)} is out of range for vocab_size {c.vocab_size} "
                                 f"(valid ids are 0..{c.vocab_size - 1})")
        t = ids.shape[1]
        if offset + t > c.block_size:
            what = f"a sequence of length {t}" + (f" after {offset} cached positions" if offset else "")
            raise ValueError(f"GPT: {what} is longer than the position table (block_size {c.block_size}); "
                             f"crop it to the last {c.block_size - offset} tokens")
        return idx if isinstance(idx, Tensor) else Tensor(ids.astype(np.int64, copy=False))

    def forward(self, idx, targets=None, kv_cache=None):
        """``kv_cache`` (a list of one ``KVCache`` per layer, inference only) continues cached positions."""
        offset = kv_cache[0].length if kv_cache else 0
        idx = self._check_idx(idx, offset)
        x = self.wte(idx)
        if self.wpe is not None:
            x = self.wpe(x, offset)
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, kv_cache[i] if kv_cache else None)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            t = targets if isinstance(targets, Tensor) else Tensor(np.asarray(targets, dtype=np.int64))
            if tuple(t.shape) != tuple(idx.shape):
                raise ValueError(f"GPT: targets of shape {tuple(t.shape)} must match the token ids' shape "
                                 f"{tuple(idx.shape)}")
            v = self.config.vocab_size
            loss = cross_entropy(logits.reshape(-1, v), t.reshape(-1))
        return logits, loss

    def new_cache(self):
        """An empty KV cache: one ``KVCache`` per layer, for ``block_size`` positions."""
        return [KVCache(self.config.block_size) for _ in self.h]

    # --- generation ---
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=None,
                 use_cache=True):
        """Continue each row of ``idx`` (N, T) — or one sequence (T,) — by ``max_new_tokens`` sampled tokens.

        ``temperature`` divides the logits (0 picks the most likely token: greedy); ``top_k`` keeps the
        k most likely tokens, ``top_p`` the smallest set whose probability reaches p (nucleus sampling).
        Generation ends early once every row has produced one of ``stop_tokens`` (a row that stopped
        repeats its stop token until the others do). With ``use_cache`` each new token runs one position
        through the model, reusing the keys and values of the earlier ones; past ``block_size`` tokens
        the window slides and the cache is rebuilt each step. Cached and uncached generation draw the
        same random numbers and give the same tokens. Runs in eval mode (no dropout) without gradients,
        and restores the mode afterwards. Returns the token ids, prompt included.
        """
        op = "GPT.generate"
        if max_new_tokens < 0:
            raise ValueError(f"{op}: max_new_tokens must be >= 0, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"{op}: temperature must be >= 0, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"{op}: top_k must be >= 1, got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"{op}: top_p must lie in (0, 1], got {top_p}")
        ids = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        single = ids.ndim == 1
        tokens = (ids[None, :] if single else ids).astype(np.int64)
        if tokens.shape[1] == 0:
            raise ValueError(f"{op}: the prompt is empty; give at least one token per row")
        self._check_idx(tokens[:, -self.config.block_size:])
        stops = None if stop_tokens is None else np.asarray(list(stop_tokens), dtype=np.int64)
        block = self.config.block_size
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                tokens = self._generate(tokens, max_new_tokens, temperature, top_k, top_p, stops, use_cache, block)
        finally:
            self.train(was_training)
        return Tensor(tokens[0] if single else tokens)

    def _generate(self, tokens, max_new_tokens, temperature, top_k, top_p, stops, use_cache, block):
        done = np.zeros(tokens.shape[0], dtype=bool)
        cache = None
        for _ in range(max_new_tokens):
            if use_cache and cache is not None and tokens.shape[1] <= block:
                logits, _ = self(tokens[:, -1:], kv_cache=cache)  # one new position
            else:  # no cache, the first step, or a slid window: run the whole window
                cache = self.new_cache() if use_cache else None
                logits, _ = self(tokens[:, -block:], kv_cache=cache)
            nxt = _sample(logits.data[:, -1, :], temperature, top_k, top_p)
            if stops is not None:
                nxt = np.where(done, tokens[:, -1], nxt)
                done |= np.isin(nxt, stops)
            tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
            if stops is not None and done.all():
                break
        return tokens


def _sample(logits, temperature, top_k, top_p):
    """One token id per row of ``logits`` (N, V), drawn with tidu's generator (one draw per row)."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    x = logits.astype(np.float64) / temperature
    v = x.shape[-1]
    if top_k is not None and top_k < v:
        kth = np.partition(x, v - top_k, axis=-1)[:, v - top_k, None]
        x = np.where(x < kth, -np.inf, x)
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=-1)
        outside = np.cumsum(sorted_p, axis=-1) - sorted_p >= top_p  # the nucleus is complete before them
        drop = np.empty_like(outside)
        np.put_along_axis(drop, order, outside, axis=-1)
        p[drop] = 0.0
    cdf = np.cumsum(p, axis=-1)
    u = (1.0 - backend.rng().random((p.shape[0], 1))) * cdf[:, -1:]  # in (0, total]
    return np.minimum((cdf < u).sum(axis=-1), v - 1)
