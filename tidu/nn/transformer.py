"""Transformer blocks: PyTorch's encoder layer, a decoder-only (GPT) block, RMSNorm, and position encodings.

- ``TransformerEncoderLayer`` / ``TransformerEncoder``: PyTorch's, with its submodule names
  (``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``, ``dropout``…), so a PyTorch
  state_dict loads by name.
- ``DecoderBlock``: pre-norm causal self-attention + MLP, the block of GPT (``tidu.nn.GPT``), with an
  optional ``KVCache`` so generating a token costs one position.
- ``RMSNorm`` (as PyTorch's); ``LearnedPositionalEmbedding``, ``SinusoidalPositionalEncoding``
  (Vaswani et al., 2017) and ``RotaryEmbedding`` (Su et al., 2021).
"""
import copy
import math

import numpy as np

from .. import backend
from ..autograd import is_grad_enabled
from ..ops import apply_rotary_emb, gelu, relu, rms_norm, scaled_dot_product_attention
from ..tensor import Parameter, Tensor
from . import init
from .attention import MultiheadAttention
from .container import ModuleList
from .linear import Dropout, Linear
from .module import Module
from .normalization import LayerNorm

__all__ = ["TransformerEncoderLayer", "TransformerEncoder", "RMSNorm", "LearnedPositionalEmbedding",
           "SinusoidalPositionalEncoding", "RotaryEmbedding", "KVCache", "CausalSelfAttention", "MLP",
           "DecoderBlock"]

_ACTIVATIONS = {"relu": relu, "gelu": gelu}


def _activation(op, activation):
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{op}: activation should be one of {sorted(_ACTIVATIONS)} or a callable, "
                             f"got {activation!r}")
        return _ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"{op}: activation must be a string or a callable, got {type(activation).__name__}")
    return activation


def _norm(kind, d_model, eps, bias):
    if kind == "layer":
        return LayerNorm(d_model, eps=eps) if bias else LayerNorm(d_model, eps=eps, bias=False)
    if kind == "rms":
        return RMSNorm(d_model, eps=eps)
    raise ValueError(f"norm must be 'layer' or 'rms', got {kind!r}")


class RMSNorm(Module):
    """x / sqrt(mean(x²) + eps) · weight over the trailing ``normalized_shape`` dims (Zhang & Sennrich,
    2019), as PyTorch's ``nn.RMSNorm``: ``eps=None`` means the dtype's machine epsilon.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> [round(v, 4) for v in nn.RMSNorm(2)(td.tensor([[3.0, 4.0]]))[0].tolist()]   # rms = sqrt((9 + 16) / 2)
    [0.8485, 1.1314]
    """

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        if elementwise_affine:
            dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
            self.weight = Parameter(np.ones(shape, dtype=dt))
        else:
            self.register_parameter("weight", None)
        if device is not None:
            self.to(device=device)

    def forward(self, input):
        return rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


# --- position encodings: each adds (or applies) position information to x of shape (..., T, d) ---

def _positions(op, x, offset, max_len, batch_first=True):
    t = x.shape[-2] if batch_first or x.ndim < 3 else x.shape[0]
    if offset < 0 or offset + t > max_len:
        raise ValueError(f"{op}: positions {offset}..{offset + t - 1} (a sequence of length {t} at offset {offset}) "
                         f"do not fit the position table of max_len {max_len}")
    return t


class LearnedPositionalEmbedding(Module):
    """A learned vector per position, added to the input (GPT-2's ``wpe``); initialized N(0, 0.02²).

    ``forward(x, offset=0)`` adds the vectors of positions offset … offset+T-1 to x of shape
    (..., T, d_model), or (T, N, d_model) with ``batch_first=False``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> nn.LearnedPositionalEmbedding(16, 8)(td.zeros(2, 5, 8)).shape
    (2, 5, 8)
    """

    def __init__(self, max_len, d_model, batch_first=True, device=None, dtype=None):
        super().__init__()
        self.max_len, self.d_model, self.batch_first = max_len, d_model, batch_first
        dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        self.weight = Parameter(np.empty((max_len, d_model), dtype=dt))
        init.normal_(self.weight, 0.0, 0.02)
        if device is not None:
            self.to(device=device)

    def forward(self, x, offset=0):
        t = _positions(type(self).__name__, x, offset, self.max_len, self.batch_first)
        pos = self.weight[offset:offset + t]
        return x + (pos if self.batch_first or x.ndim < 3 else pos.unsqueeze(1))

    def extra_repr(self):
        return f"{self.max_len}, {self.d_model}"


def _sinusoids(max_len, d_model):
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    freq = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq[: d_model // 2])
    return pe


class SinusoidalPositionalEncoding(Module):
    """The fixed sine/cosine position encoding of "Attention Is All You Need", added to the input,
    then dropout. ``forward(x, offset=0)`` as ``LearnedPositionalEmbedding``. No parameters, and the
    table is not part of the state_dict (it is recomputed).

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> pe = nn.SinusoidalPositionalEncoding(4, max_len=10)
    >>> pe(td.zeros(1, 2, 4))[0, 1]     # position 1: sin(1), cos(1), sin(1/100), cos(1/100)
    tensor([0.8415, 0.5403, 0.01  , 0.9999])
    """

    def __init__(self, d_model, max_len=5000, dropout=0.0, batch_first=True):
        super().__init__()
        self.d_model, self.max_len, self.batch_first = d_model, max_len, batch_first
        self.dropout = Dropout(dropout)
        pe = _sinusoids(max_len, d_model).astype(backend.get_default_dtype())
        self.register_buffer("pe", Tensor(pe), persistent=False)

    def forward(self, x, offset=0):
        t = _positions(type(self).__name__, x, offset, self.max_len, self.batch_first)
        pe = self.pe.data[offset:offset + t]
        if not self.batch_first and x.ndim >= 3:
            pe = pe[:, None, :]
        return self.dropout(x + Tensor(pe.astype(x.dtype, copy=False)))

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}"


class RotaryEmbedding(Module):
    """Rotary position embedding (RoPE, Su et al., 2021) for queries and keys of ``dim`` features per head:
    ``forward(x, offset=0)`` rotates each pair (x_i, x_{i+dim/2}) of x (..., T, dim) by the angle
    position · base^(-2i/dim). Attention scores then depend only on relative positions. Not part of the
    state_dict. The halves layout is GPT-NeoX's and LLaMA's (Hugging Face) ``rotate_half``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> rope = nn.RotaryEmbedding(8, max_len=32)
    >>> rope(td.ones(1, 4, 3, 8)).shape     # (N, H, T, D)
    (1, 4, 3, 8)
    """

    def __init__(self, dim, max_len=2048, base=10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"RotaryEmbedding: dim must be even, got {dim}")
        self.dim, self.max_len, self.base = dim, max_len, base
        inv_freq = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
        angles = np.arange(max_len, dtype=np.float64)[:, None] * inv_freq
        angles = np.concatenate([angles, angles], axis=1)
        dt = backend.get_default_dtype()
        self.register_buffer("cos", Tensor(np.cos(angles).astype(dt)), persistent=False)
        self.register_buffer("sin", Tensor(np.sin(angles).astype(dt)), persistent=False)

    def forward(self, x, offset=0):
        t = _positions(type(self).__name__, x, offset, self.max_len)
        if x.shape[-1] != self.dim:
            raise ValueError(f"RotaryEmbedding: input of shape {tuple(x.shape)} should have {self.dim} features "
                             "in its last dimension")
        return apply_rotary_emb(x, self.cos.data[offset:offset + t], self.sin.data[offset:offset + t])

    def extra_repr(self):
        return f"dim={self.dim}, max_len={self.max_len}, base={self.base}"


# --- PyTorch's encoder ---

class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward network, each with a residual connection and layer norm
    (after each, or before with ``norm_first=True``): PyTorch's ``nn.TransformerEncoderLayer``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, batch_first=True)
    >>> layer(td.randn(2, 5, 16)).shape
    (2, 5, 16)
    >>> sorted(k for k in layer.state_dict() if k.startswith("self_attn"))
    ['self_attn.in_proj_bias', 'self_attn.in_proj_weight', 'self_attn.out_proj.bias', 'self_attn.out_proj.weight']
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = _norm("layer", d_model, layer_norm_eps, bias)
        self.norm2 = _norm("layer", d_model, layer_norm_eps, bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(type(self).__name__, activation)
        if device is not None:
            self.to(device=device)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` (``layers.0``, ``layers.1`` …), then an optional ``norm``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), num_layers=2)
    >>> enc(td.randn(3, 4, 8)).shape, len(enc.layers)
    ((3, 4, 8), 2)
    """

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x


# --- the decoder-only (GPT) block ---

class KVCache:
    """Keys and values of the positions seen so far by one attention layer, in buffers preallocated
    for ``max_len`` positions, so adding a position copies only that position's keys and values.

    >>> import numpy as np
    >>> import tidu.nn as nn
    >>> cache = nn.KVCache(max_len=8)
    >>> k, v = cache.update(np.ones((1, 2, 3, 4), np.float32), np.ones((1, 2, 3, 4), np.float32))
    >>> cache.length, k.shape
    (3, (1, 2, 3, 4))
    """

    def __init__(self, max_len):
        self.max_len, self.length = max_len, 0
        self.k = self.v = None

    def update(self, k, v):
        """Append k, v arrays of shape (N, H, T, D); returns views of all keys and values so far."""
        t = k.shape[2]
        if self.length + t > self.max_len:
            raise ValueError(f"KVCache: {self.length} cached positions + {t} new ones exceed max_len {self.max_len}")
        if self.k is None:
            self.k = np.empty(k.shape[:2] + (self.max_len, k.shape[3]), dtype=k.dtype)
            self.v = np.empty(v.shape[:2] + (self.max_len, v.shape[3]), dtype=v.dtype)
        self.k[:, :, self.length:self.length + t] = k
        self.v[:, :, self.length:self.length + t] = v
        self.length += t
        return self.k[:, :, :self.length], self.v[:, :, :self.length]


class CausalSelfAttention(Module):
    """Multi-head causal self-attention with one fused q/k/v projection (``c_attn``), an output
    projection (``c_proj``) and residual dropout: GPT-2's, with its names. Input (N, T, d_model)."""

    def __init__(self, d_model, n_head, dropout=0.0, bias=True, rotary_max_len=None):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"CausalSelfAttention: d_model {d_model} must be divisible by n_head {n_head}")
        self.d_model, self.n_head, self.head_dim, self.dropout = d_model, n_head, d_model // n_head, dropout
        self.c_attn = Linear(d_model, 3 * d_model, bias=bias)
        self.c_proj = Linear(d_model, d_model, bias=bias)
        self.resid_dropout = Dropout(dropout)
        self.rotary = RotaryEmbedding(self.head_dim, rotary_max_len) if rotary_max_len else None

    def forward(self, x, cache=None):
        n, t, c = x.shape
        h, d = self.n_head, self.head_dim
        q, k, v = (y.reshape(n, t, h, d).transpose(1, 2) for y in self.c_attn(x).split(c, dim=2))  # (N, H, T, D)
        offset = 0 if cache is None else cache.length
        if self.rotary is not None:
            q, k = self.rotary(q, offset), self.rotary(k, offset)
        p = self.dropout if self.training else 0.0
        if cache is None:
            y = scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            if is_grad_enabled() and x.requires_grad:
                raise RuntimeError("CausalSelfAttention: a KVCache is for inference; run it under td.no_grad()")
            keys, values = cache.update(k.data, v.data)
            # query i (position offset+i) sees keys 0..offset+i: causal, aligned to the end
            mask = None if t == 1 else np.tril(np.ones((t, offset + t), dtype=bool), k=offset)
            y = scaled_dot_product_attention(q, Tensor(keys), Tensor(values), attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(n, t, c)
        return self.resid_dropout(self.c_proj(y))

    def extra_repr(self):
        return f"d_model={self.d_model}, n_head={self.n_head}"


class MLP(Module):
    """Linear (``c_fc``) → activation → Linear (``c_proj``) → dropout: the transformer's feed-forward network."""

    def __init__(self, d_model, hidden, dropout=0.0, bias=True, activation="gelu"):
        super().__init__()
        self.c_fc = Linear(d_model, hidden, bias=bias)
        self.c_proj = Linear(hidden, d_model, bias=bias)
        self.dropout = Dropout(dropout)
        self.activation = _activation("MLP", activation)

    def forward(self, x):
        return self.dropout(self.c_proj(self.activation(self.c_fc(x))))


class DecoderBlock(Module):
    """A pre-norm decoder-only block (GPT-2): x + attn(ln_1(x)), then x + mlp(ln_2(x)).

    ``norm`` is ``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm); ``rotary_max_len`` turns on rotary
    position embedding of queries and keys for up to that many positions. ``forward(x, cache=None)``
    takes (N, T, d_model); with a ``KVCache`` (inference only) the positions continue the cached ones.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> block = nn.DecoderBlock(16, 4)
    >>> block(td.randn(2, 5, 16)).shape
    (2, 5, 16)
    """

    def __init__(self, d_model, n_head, dim_feedforward=None, dropout=0.0, bias=True, activation="gelu",
                 norm="layer", layer_norm_eps=1e-5, rotary_max_len=None):
        super().__init__()
        self.ln_1 = _norm(norm, d_model, layer_norm_eps, bias)
        self.attn = CausalSelfAttention(d_model, n_head, dropout, bias, rotary_max_len)
        self.ln_2 = _norm(norm, d_model, layer_norm_eps, bias)
        self.mlp = MLP(d_model, dim_feedforward or 4 * d_model, dropout, bias, activation)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))
