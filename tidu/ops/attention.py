"""Attention and the transformer's other fused ops: scaled_dot_product_attention, rms_norm, apply_rotary_emb.

``scaled_dot_product_attention`` is one op with its own backward. With S = q kᵀ · scale + mask and
P = softmax(S) over the keys:

    out = P v
    dv = Pᵀ g,   dP = g vᵀ,   dS = P ∘ (dP − rowsum(g ∘ out)),   dq = scale · dS k,   dk = scale · dSᵀ q

(rowsum(dP ∘ P) = rowsum(g ∘ out) is FlashAttention's identity: it reads an (L, Ev) array instead of
an (L, S) one). The forward keeps P and the inputs it was given — no scores, no expanded mask, no
copies of q, k, v. The softmax subtracts each row's maximum, so large scores cannot overflow, and a
query whose keys are all masked gets zeros (output and gradients), as PyTorch's SDPA gives.
"""
import functools

import numpy as np

from .. import backend
from ..backend import parallel_parts, run_parallel
from ..autograd import unbroadcast
from ..tensor import Tensor, _result

__all__ = ["scaled_dot_product_attention", "rms_norm", "apply_rotary_emb"]

_NEG_INF = -np.inf


@functools.lru_cache(maxsize=32)
def _causal_blocked(n_query, n_key):
    """True above the diagonal: the keys a query may NOT see (top-left aligned, as PyTorch's is_causal)."""
    return np.triu(np.ones((n_query, n_key), dtype=bool), k=1)


def _check_qkv(op, q, k, v):
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.data.ndim < 2:
            raise ValueError(f"{op}: {name} must have at least 2 dimensions (..., L, E), got shape {tuple(t.shape)}")
        if t.data.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be floating, got {t.data.dtype}")
    if not (q.data.dtype == k.data.dtype == v.data.dtype):
        raise TypeError(f"{op}: query, key and value must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    qs, ks, vs = q.data.shape, k.data.shape, v.data.shape
    if qs[-1] != ks[-1]:
        raise ValueError(f"{op}: query of shape {qs} and key of shape {ks} must have the same last dimension E")
    if ks[-2] != vs[-2]:
        raise ValueError(f"{op}: key of shape {ks} and value of shape {vs} must have the same number of "
                         f"positions S (dimension -2)")
    try:
        batch = np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2])
    except ValueError:
        raise ValueError(f"{op}: the batch dimensions of query {qs}, key {ks} and value {vs} "
                         "do not broadcast") from None
    return batch + (qs[-2], ks[-2])


def _mask_array(op, attn_mask, is_causal, scores_shape, dtype):
    """(mask array or None, is it boolean); checks the mask against the (..., L, S) shape of the scores."""
    if attn_mask is None:
        return None, False
    if is_causal:
        raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both")
    m = attn_mask.data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
    if m.dtype != np.bool_ and m.dtype.kind != "f":
        raise TypeError(f"{op}: attn_mask must be bool (True = may attend) or float (added to the scores), "
                        f"got {m.dtype}")
    try:
        fits = np.broadcast_shapes(m.shape, scores_shape) == tuple(scores_shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{op}: attn_mask of shape {tuple(m.shape)} does not broadcast to the attention "
                         f"scores' shape {tuple(scores_shape)} (batch..., L queries, S keys)")
    if m.dtype != np.bool_ and m.dtype != dtype:
        m = m.astype(dtype)
    return m, m.dtype == np.bool_


def _probs(qd, kd, mask, mask_is_bool, is_causal, scale, out=None):
    """P = softmax(q kᵀ · scale + mask), computed in place in one (..., L, S) buffer (``out`` if
    given); a row whose keys are all masked gives zeros."""
    s = np.matmul(qd, np.swapaxes(kd, -1, -2), out=out)
    s *= scale
    masked = mask is not None or is_causal
    if mask is not None:
        if mask_is_bool:
            np.copyto(s, _NEG_INF, where=~mask)
        else:
            s += mask
    if is_causal:
        np.copyto(s, _NEG_INF, where=_causal_blocked(*s.shape[-2:]))
    row_max = s.max(axis=-1, keepdims=True)
    if masked:  # a row of -inf would give -inf - -inf = NaN: shift it by 0 instead, its exps are 0
        row_max[~np.isfinite(row_max)] = 0
    s -= row_max
    np.exp(s, out=s)
    total = s.sum(axis=-1, keepdims=True)
    if masked:
        total[total == 0] = 1  # fully masked rows stay all-zero
    s *= 1 / total
    return s


def _score_grads(ds, qd, kd, q, k, attn_mask, scale):
    """Gradients of q, k and a float mask from dS, the gradient of the (masked) scores."""
    gmask = None
    if isinstance(attn_mask, Tensor) and attn_mask.requires_grad:
        gmask = unbroadcast(ds, attn_mask.data.shape).astype(attn_mask.data.dtype, copy=False)
        if gmask is ds:
            gmask = ds.copy()  # ds is scaled in place next
    ds *= scale
    gq = unbroadcast(np.matmul(ds, kd), qd.shape) if q.requires_grad else None
    gk = unbroadcast(np.matmul(np.swapaxes(ds, -1, -2), qd), kd.shape) if k.requires_grad else None
    return gq, gk, gmask


# --- heads in parallel ---------------------------------------------------------------------------
# numpy runs a batched matmul as one small BLAS call per matrix; with several BLAS threads each of
# those calls is split and synchronized, which costs more than it gains for (T × D) matrices and
# collapses on a busy machine. So, like PyTorch's fused kernel, attention splits its leading
# (batch) axis over as many Python threads as BLAS has (numpy releases the GIL in BLAS and in its
# ufuncs), each running BLAS single-threaded. It needs threadpoolctl to reach the BLAS.
MIN_PARALLEL_SCORES = 1 << 16  # fewer attention scores than this run in the calling thread alone


def _parts(n_lead, n_scores):
    """Slices of the leading axis, one per BLAS thread, or None to run in one piece."""
    ranges = parallel_parts(n_lead, n_scores >= MIN_PARALLEL_SCORES)
    return None if len(ranges) == 1 else [slice(a, b) for a, b in ranges]


def _lead(a, part, n_dims):
    """``a[part]`` when ``a`` spans the leading axis of the (n_dims)-dimensional batch of scores, else ``a``
    (it broadcasts over that axis)."""
    if part is None or a is None or a.ndim < n_dims or a.shape[0] == 1:
        return a
    return a[part]


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """softmax(query keyᵀ · scale + mask) value, with PyTorch's semantics, as one fused op.

    query (..., L, E), key (..., S, E), value (..., S, Ev) → (..., L, Ev); batch dimensions broadcast.
    ``attn_mask`` broadcasts to (..., L, S): a bool mask says where a query MAY attend (True), a float
    mask is added to the scores. ``is_causal`` lets query i see keys 0..i (top-left aligned). ``scale``
    defaults to 1/√E. ``dropout_p`` drops attention weights (always, as in PyTorch's functional form:
    pass 0 in evaluation). A query that may attend to nothing gets zeros, not NaN.

    >>> import tidu as td
    >>> q = k = v = td.eye(3).reshape(1, 3, 3)
    >>> out = td.scaled_dot_product_attention(q, k, v, is_causal=True)
    >>> out[0, 0].tolist()          # the first query sees only the first key
    [1.0, 0.0, 0.0]
    >>> out.shape
    (1, 3, 3)
    """
    op = "scaled_dot_product_attention"
    scores_shape = _check_qkv(op, query, key, value)
    qd, kd, vd = query.data, key.data, value.data
    mask, mask_is_bool = _mask_array(op, attn_mask, is_causal, scores_shape, qd.dtype)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must lie in [0, 1), got {dropout_p}")
    scale = 1.0 / np.sqrt(qd.shape[-1]) if scale is None else float(scale)
    mask_grad = isinstance(attn_mask, Tensor) and attn_mask.requires_grad
    nd = len(scores_shape)
    same_batch = qd.shape[:-2] == kd.shape[:-2] == vd.shape[:-2] == scores_shape[:-2]
    parts = _parts(scores_shape[0], int(np.prod(scores_shape))) if nd > 2 and same_batch and not mask_grad else None
    keep = None
    if dropout_p > 0:  # drawn whole, so the mask does not depend on the threads
        keep = backend.rng().random(scores_shape, dtype=np.float32) >= dropout_p
    p = np.empty(scores_shape, dtype=qd.dtype)
    out = np.empty(scores_shape[:-1] + vd.shape[-1:], dtype=qd.dtype)

    def dropped(pp, part):  # P ∘ keep / (1 - p): the weights as applied
        if keep is None:
            return pp
        pd = pp * _lead(keep, part, nd)
        pd *= 1 / (1 - dropout_p)
        return pd

    def forward(part):
        pp = _lead(p, part, nd)
        _probs(_lead(qd, part, nd), _lead(kd, part, nd), _lead(mask, part, nd), mask_is_bool, is_causal, scale, pp)
        np.matmul(dropped(pp, part), _lead(vd, part, nd), out=_lead(out, part, nd))

    if parts is None:
        forward(None)
    else:
        run_parallel(forward, parts)

    def score_grad(pp, gg, part):  # dS = P ∘ (dP − rowsum(g ∘ out)), dP = g vᵀ (∘ the dropout mask)
        ds = np.matmul(gg, np.swapaxes(_lead(vd, part, nd), -1, -2))
        if keep is not None:
            ds *= _lead(keep, part, nd)
            ds *= 1 / (1 - dropout_p)
        ds -= (gg * _lead(out, part, nd)).sum(axis=-1, keepdims=True)
        ds *= pp
        return ds

    def backward(g):
        want_q, want_k, want_v = query.requires_grad, key.requires_grad, value.requires_grad
        if parts is None:  # arrays of the broadcast batch shape, reduced to each input's shape
            gv = unbroadcast(np.matmul(np.swapaxes(dropped(p, None), -1, -2), g), vd.shape) if want_v else None
            gq = gk = gmask = None
            if want_q or want_k or mask_grad:
                gq, gk, gmask = _score_grads(score_grad(p, g, None), qd, kd, query, key, attn_mask, scale)
            return (gq, gk, gv) + ((gmask,) if isinstance(attn_mask, Tensor) else ())
        gq = np.empty(qd.shape, qd.dtype) if want_q else None  # each part writes its rows
        gk = np.empty(kd.shape, kd.dtype) if want_k else None
        gv = np.empty(vd.shape, vd.dtype) if want_v else None

        def backward_part(part):
            pp, gg = _lead(p, part, nd), _lead(g, part, nd)
            if want_v:  # dv = Pᵀ g
                np.matmul(np.swapaxes(dropped(pp, part), -1, -2), gg, out=_lead(gv, part, nd))
            if want_q or want_k:
                ds = score_grad(pp, gg, part)
                ds *= scale
                if want_q:  # dq = scale · dS k
                    np.matmul(ds, _lead(kd, part, nd), out=_lead(gq, part, nd))
                if want_k:  # dk = scale · dSᵀ q
                    np.matmul(np.swapaxes(ds, -1, -2), _lead(qd, part, nd), out=_lead(gk, part, nd))
        run_parallel(backward_part, parts)
        return (gq, gk, gv) + ((None,) if isinstance(attn_mask, Tensor) else ())
    parents = (query, key, value) + ((attn_mask,) if isinstance(attn_mask, Tensor) else ())
    return _result(out, parents, backward)


def _attention_weights(query, key, attn_mask=None, is_causal=False, scale=None, op="attention_weights"):
    """P = softmax(query keyᵀ · scale + mask) as a differentiable op (MultiheadAttention's
    ``need_weights`` path); the same masking rules as scaled_dot_product_attention."""
    scores_shape = _check_qkv(op, query, key, key)
    qd, kd = query.data, key.data
    mask, mask_is_bool = _mask_array(op, attn_mask, is_causal, scores_shape, qd.dtype)
    scale = 1.0 / np.sqrt(qd.shape[-1]) if scale is None else float(scale)
    p = _probs(qd, kd, mask, mask_is_bool, is_causal, scale)

    def backward(g):
        ds = g - (g * p).sum(axis=-1, keepdims=True)  # dS = P ∘ (g − rowsum(g ∘ P))
        ds *= p
        gq, gk, gmask = _score_grads(ds, qd, kd, query, key, attn_mask, scale)
        return (gq, gk) + ((gmask,) if isinstance(attn_mask, Tensor) else ())
    parents = (query, key) + ((attn_mask,) if isinstance(attn_mask, Tensor) else ())
    return _result(p, parents, backward)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x², over the trailing ``normalized_shape`` dims) + eps), times ``weight`` (one fused op).

    ``eps`` defaults to the dtype's machine epsilon, as in PyTorch.

    >>> import tidu as td
    >>> td.rms_norm(td.tensor([[3.0, 4.0]]), 2)     # rms = sqrt((9 + 16) / 2)
    tensor([[0.8485, 1.1314]])
    """
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    x = input.data
    k = len(normalized_shape)
    if x.shape[x.ndim - k:] != normalized_shape or k > x.ndim:
        raise ValueError(f"rms_norm: input of shape {tuple(x.shape)} does not end with normalized_shape "
                         f"{normalized_shape}")
    if weight is not None and tuple(weight.shape) != normalized_shape:
        raise ValueError(f"rms_norm: weight of shape {tuple(weight.shape)} does not match normalized_shape "
                         f"{normalized_shape}")
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    axes = tuple(range(x.ndim - k, x.ndim))
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + eps)
    xhat = x * rstd
    out = xhat if weight is None else xhat * weight.data

    def backward(g):
        gw = None
        if weight is not None and weight.requires_grad:
            gw = (g * xhat).reshape(-1, *normalized_shape).sum(axis=0)
        gx = None
        if input.requires_grad:
            gxhat = g if weight is None else g * weight.data
            # dx = rstd (ĝ − x̂ mean(ĝ x̂))
            gx = rstd * (gxhat - xhat * np.mean(gxhat * xhat, axis=axes, keepdims=True))
        return (gx,) if weight is None else (gx, gw)
    return _result(out, (input,) if weight is None else (input, weight), backward)


def _rotate_half(x, transpose=False):
    """R x = [-x2, x1] for the halves x1, x2 of the last dim; Rᵀ y = [y2, -y1]."""
    h = x.shape[-1] // 2
    out = np.empty_like(x)
    if transpose:
        out[..., :h] = x[..., h:]
        np.negative(x[..., :h], out=out[..., h:])
    else:
        np.negative(x[..., h:], out=out[..., :h])
        out[..., h:] = x[..., :h]
    return out


def apply_rotary_emb(input, cos, sin):
    """Rotary position embedding (Su et al., 2021): x cos + rotate_half(x) sin, with
    rotate_half([x1, x2]) = [-x2, x1] over the two halves of the last dim (the GPT-NeoX / LLaMA layout).

    ``cos`` and ``sin`` (arrays or tensors, no gradient) broadcast against ``input`` (..., T, D); each
    is (T, D), the angles of the D/2 frequencies repeated for both halves. A rotation keeps the norm:

    >>> import tidu as td
    >>> x = td.tensor([[1.0, 0.0]])
    >>> td.apply_rotary_emb(x, td.tensor([[0.0, 0.0]]), td.tensor([[1.0, 1.0]]))  # 90 degrees
    tensor([[0., 1.]])
    """
    x = input.data
    if x.ndim == 0 or x.shape[-1] % 2:
        raise ValueError(f"apply_rotary_emb: the last dimension of input {tuple(x.shape)} must be even")
    c = cos.data if isinstance(cos, Tensor) else np.asarray(cos)
    s = sin.data if isinstance(sin, Tensor) else np.asarray(sin)
    try:
        out = x * c
    except ValueError:
        raise ValueError(f"apply_rotary_emb: cos of shape {tuple(c.shape)} does not broadcast to input "
                         f"{tuple(x.shape)}") from None
    if s.shape != c.shape:
        raise ValueError(f"apply_rotary_emb: cos {tuple(c.shape)} and sin {tuple(s.shape)} must have one shape")
    rot = _rotate_half(x)
    rot *= s
    out += rot
    # the map is linear, x -> x cos + R x sin, so dx = g cos + Rᵀ (g sin)
    return _result(out, (input,), lambda g: (g * c + _rotate_half(g * s, transpose=True),))
