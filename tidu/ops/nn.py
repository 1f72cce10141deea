"""Neural-network ops with fused, numerically stable backward: softmax, log_softmax, dropout, layer_norm."""
import numpy as np

from .. import backend
from ..tensor import _result

__all__ = ["softmax", "log_softmax", "dropout", "layer_norm"]


def _softmax_array(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax(a, dim=-1):
    x = a.data
    y = _softmax_array(x, dim)
    # dx = y * (g - sum(g * y))
    return _result(y, (a,), lambda g: (y * (g - (g * y).sum(axis=dim, keepdims=True)),))


def log_softmax(a, dim=-1):
    x = a.data
    shifted = x - x.max(axis=dim, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    # dx = g - softmax * sum(g)
    return _result(out, (a,), lambda g: (g - np.exp(out) * g.sum(axis=dim, keepdims=True),))


def dropout(a, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (inverted dropout)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return a
    x = a.data
    if p == 1.0:
        mask = np.zeros_like(x)
    else:
        mask = (backend.rng().random(x.shape, dtype=np.float32) >= p).astype(x.dtype)
        mask *= 1.0 / (1.0 - p)
    return _result(x * mask, (a,), lambda g: (g * mask,))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the trailing ``normalized_shape`` dims, then scale and shift (one fused op)."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    x = input.data
    k = len(normalized_shape)
    if x.shape[x.ndim - k:] != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {tuple(x.shape)} does not end with "
                         f"normalized_shape {normalized_shape}")
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = centered * rstd
    out = xhat
    if weight is not None:
        out = out * weight.data
    if bias is not None:
        out = out + bias.data
    lead = tuple(range(x.ndim - k))

    def backward(g):
        gw = (g * xhat).sum(axis=lead) if weight is not None and weight.requires_grad else None
        gb = g.sum(axis=lead) if bias is not None and bias.requires_grad else None
        gx = None
        if input.requires_grad:
            gxhat = g * weight.data if weight is not None else g
            # dx = rstd (gxhat - mean(gxhat) - xhat mean(gxhat xhat))
            gx = rstd * (gxhat - gxhat.mean(axis=axes, keepdims=True)
                         - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))
        return (gx,) + ((gw,) if weight is not None else ()) + ((gb,) if bias is not None else ())
    parents = (input,) + ((weight,) if weight is not None else ()) + ((bias,) if bias is not None else ())
    return _result(out, parents, backward)
