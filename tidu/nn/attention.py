"""``MultiheadAttention``, with PyTorch's parameters, masks and return values.

Heads run as one batched ``scaled_dot_product_attention`` over (N, H, L, D). Masks follow PyTorch:
for ``attn_mask`` and ``key_padding_mask`` a bool True means *may not attend* (the opposite of
``F.scaled_dot_product_attention``'s bool mask) and a float mask is added to the scores.
"""
import numpy as np

from .. import backend
from ..ops import attention as _attn
from ..ops import dropout, linear, scaled_dot_product_attention
from ..tensor import Parameter, Tensor
from . import init
from .linear import Linear
from .module import Module

__all__ = ["MultiheadAttention"]


def _mask_data(name, mask):
    if mask is None:
        return None
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != np.bool_ and m.dtype.kind != "f":
        raise TypeError(f"MultiheadAttention: {name} must be bool (True = may not attend) or float (added to the "
                        f"scores), got {m.dtype}")
    return m


class MultiheadAttention(Module):
    """Attention over ``num_heads`` heads of ``embed_dim // num_heads`` features (Vaswani et al., 2017).

    Inputs are (L, N, E) — or (N, L, E) with ``batch_first=True``, or (L, E) unbatched. ``forward``
    returns ``(output, weights)``: the weights are averaged over heads, (N, L, S), unless
    ``average_attn_weights=False`` (then (N, H, L, S)), and None with ``need_weights=False`` (the
    fast path: one fused attention op). Parameter names are PyTorch's (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``; ``q_proj_weight`` … when ``kdim`` or
    ``vdim`` differ from ``embed_dim``), so a PyTorch state_dict loads as is.

    A query whose keys are all masked gets zeros where PyTorch's ``need_weights`` path gives NaN
    (PyTorch's fast path gives zeros too). Masks carry no gradient.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
    >>> x = td.randn(3, 5, 8)
    >>> out, w = mha(x, x, x)
    >>> out.shape, w.shape
    ((3, 5, 8), (3, 5, 5))
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be positive, got {embed_dim} "
                             f"and {num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiheadAttention: dropout must lie in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout, self.batch_first = dropout, batch_first
        dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((3 * embed_dim, embed_dim), dtype=dt))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(np.empty((embed_dim, embed_dim), dtype=dt))
            self.k_proj_weight = Parameter(np.empty((embed_dim, self.kdim), dtype=dt))
            self.v_proj_weight = Parameter(np.empty((embed_dim, self.vdim), dtype=dt))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(np.empty(3 * embed_dim, dtype=dt))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self._reset_parameters()
        if device is not None:
            self.to(device=device)

    def _reset_parameters(self):
        # PyTorch's: Xavier-uniform projections, zero biases (out_proj.weight keeps Linear's init)
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _project(self, query, key, value):
        e, b = self.embed_dim, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e:2 * e], b[2 * e:])
        if self._qkv_same_embed_dim:
            if query is key and key is value:  # self-attention: one matrix product for q, k and v
                return linear(query, self.in_proj_weight, b).split(e, dim=-1)
            w = self.in_proj_weight
            return linear(query, w[:e], bq), linear(key, w[e:2 * e], bk), linear(value, w[2 * e:], bv)
        return (linear(query, self.q_proj_weight, bq), linear(key, self.k_proj_weight, bk),
                linear(value, self.v_proj_weight, bv))

    def _check_inputs(self, query, key, value):
        op = type(self).__name__
        for name, t, dim in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
            if t.ndim not in (2, 3) or t.shape[-1] != dim:
                layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
                raise ValueError(f"{op}: {name} of shape {tuple(t.shape)} should be {layout} or unbatched (L, E) "
                                 f"with E = {dim}")
        if not query.ndim == key.ndim == value.ndim:
            raise ValueError(f"{op}: query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                             f"{tuple(value.shape)} must all be batched (3-D) or all unbatched (2-D)")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"{op}: key of shape {tuple(key.shape)} and value of shape {tuple(value.shape)} "
                             "must have the same batch size and length")
        if query.ndim == 3:
            bd = 0 if self.batch_first else 1
            if query.shape[bd] != key.shape[bd]:
                raise ValueError(f"{op}: query of shape {tuple(query.shape)} and key of shape {tuple(key.shape)} "
                                 f"have different batch sizes ({query.shape[bd]} and {key.shape[bd]})")

    def _merge_masks(self, attn_mask, key_padding_mask, n, lq, s):
        """One mask for SDPA over (N, H, L, S), or None: bool (True = may attend) when both are bool,
        else float (-inf where blocked)."""
        op, h = type(self).__name__, self.num_heads
        am, kpm = _mask_data("attn_mask", attn_mask), _mask_data("key_padding_mask", key_padding_mask)
        if am is not None:
            if am.shape == (lq, s):
                pass
            elif am.ndim == 3 and am.shape == ((n or 1) * h, lq, s):
                am = am.reshape(n or 1, h, lq, s) if n else am
            else:
                want = f"({lq}, {s}) or ({(n or 1) * h}, {lq}, {s})"
                raise ValueError(f"{op}: attn_mask of shape {tuple(am.shape)} does not fit {lq} queries and {s} "
                                 f"keys with {h} heads and batch size {n or 1}: expected {want}")
        if kpm is not None:
            want = (n, s) if n else (s,)
            if kpm.shape != want:
                raise ValueError(f"{op}: key_padding_mask of shape {tuple(kpm.shape)} does not fit batch size "
                                 f"{n or 1} and {s} keys: expected {want}")
            kpm = kpm[:, None, None, :] if n else kpm[None, None, :]
        masks = [m for m in (am, kpm) if m is not None]
        if not masks:
            return None
        if all(m.dtype == np.bool_ for m in masks):
            allowed = ~masks[0]
            for m in masks[1:]:
                allowed = allowed & ~m
            return allowed
        dtype = next(m.dtype for m in masks if m.dtype != np.bool_)
        total = 0
        for m in masks:
            total = total + (np.where(m, -np.inf, 0).astype(dtype) if m.dtype == np.bool_ else m)
        return total

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        self._check_inputs(query, key, value)
        batched = query.ndim == 3
        h, d = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        if batched and not self.batch_first:  # (L, N, ·) → (N, L, ·)
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        if not batched:
            q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
        n, lq, s = q.shape[0], q.shape[1], k.shape[1]
        q, k, v = (t.reshape(n, t.shape[1], h, d).transpose(1, 2) for t in (q, k, v))  # (N, H, ·, D)
        if is_causal and attn_mask is None and key_padding_mask is not None:
            attn_mask = np.triu(np.ones((lq, s), dtype=bool), k=1)  # causal AND padding: one merged mask
        mask = self._merge_masks(attn_mask, key_padding_mask, n if batched else 0, lq, s)
        causal = bool(is_causal) and mask is None  # with a mask, is_causal is only a hint, as in PyTorch
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            w = _attn._attention_weights(q, k, mask, causal, op="MultiheadAttention")
            if p > 0:  # PyTorch returns the weights after dropout, as used
                w = dropout(w, p, True)
            out = w @ v
            weights = w.mean(dim=1) if average_attn_weights else w
            if not batched:
                weights = weights.squeeze(0)
        else:
            out = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        out = out.transpose(1, 2).reshape(n, lq, self.embed_dim)
        if batched and not self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(0)
        return self.out_proj(out), weights

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")
