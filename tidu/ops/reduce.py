"""Reductions over ``dim`` (an int, a tuple, or None for all) with ``keepdim``."""
import builtins
from collections import namedtuple

import numpy as np

from ..tensor import Tensor, _result

__all__ = ["sum", "mean", "max", "min", "amax", "amin", "var", "std", "logsumexp", "argmax", "argmin",
           "all", "any", "norm", "cumsum"]

values_indices = namedtuple("values_indices", ["values", "indices"])


def _axes(op, x, dim):
    """Normalize ``dim`` to a tuple of non-negative axes, with a clear error when out of range."""
    nd = x.ndim
    if dim is None:
        return tuple(range(nd))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    top = builtins.max(nd, 1)
    for d in dims:
        if not -top <= d < top:
            raise IndexError(f"{op}: dim {d} is out of range for a tensor of shape {tuple(x.shape)} "
                             f"(expected {-top} to {top - 1})")
        out.append(d % nd if nd else 0)
    return tuple(out) if nd else ()


def _expand_back(g, shape, axes, keepdim):
    """Broadcast a reduced gradient back over the reduced axes (a view, no copy)."""
    if not keepdim and axes:
        g = np.expand_dims(g, axes)
    return np.broadcast_to(g, shape)


def sum(a, dim=None, keepdim=False, dtype=None):
    x = a.data
    if dim is None and not keepdim:
        out = x.sum(dtype=dtype)
        shape = x.shape
        return _result(np.asarray(out), (a,), lambda g: (np.broadcast_to(g, shape),))  # d sum = 1
    axes = _axes("sum", x, dim)
    out = x.sum(axis=axes, keepdims=keepdim, dtype=dtype)
    return _result(np.asarray(out) if np.ndim(out) == 0 else out, (a,),
                   lambda g: (_expand_back(g, x.shape, axes, keepdim),))


def mean(a, dim=None, keepdim=False, dtype=None):
    x = a.data
    if x.dtype.kind not in "fc" and dtype is None:
        raise TypeError(f"mean: input dtype {x.dtype} is not floating; call .float() first (as PyTorch requires)")
    axes = _axes("mean", x, dim)
    n = 1
    for ax in axes:
        n *= x.shape[ax]
    out = x.mean(axis=axes, keepdims=keepdim, dtype=dtype)
    scale = 1.0 / n if n else float("nan")
    # d mean = 1/n
    return _result(np.asarray(out) if np.ndim(out) == 0 else out, (a,),
                   lambda g: (_expand_back(g * scale, x.shape, axes, keepdim),))


def _extreme(name, reduce_fn, arg_fn, a, dim, keepdim):
    x = a.data
    if x.size == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if dim is None:
        out = reduce_fn(x)
        # ties share the gradient evenly (PyTorch's rule for a full reduction)
        ties = x == out
        return _result(np.asarray(out), (a,), lambda g: (g * ties / int(ties.sum()),))
    if not isinstance(dim, int):
        raise TypeError(f"{name}: dim must be an int when indices are returned, got {dim!r}")
    (axis,) = _axes(name, x, dim)
    idx = np.expand_dims(arg_fn(x, axis=axis), axis)
    vals = np.take_along_axis(x, idx, axis=axis)

    def backward(g):  # the gradient goes to the element whose index is returned
        gx = np.zeros_like(x)
        np.put_along_axis(gx, idx, g if keepdim else np.expand_dims(g, axis), axis=axis)
        return (gx,)
    if keepdim:
        return values_indices(_result(vals, (a,), backward), Tensor(idx.astype(np.int64)))
    return values_indices(_result(vals.squeeze(axis), (a,), backward), Tensor(idx.squeeze(axis).astype(np.int64)))


def max(a, dim=None, keepdim=False):
    """``x.max()`` → the largest value; ``x.max(dim)`` → ``(values, indices)``; ``max(a, b)`` elementwise."""
    if isinstance(dim, Tensor):
        from .elementwise import maximum
        return maximum(a, dim)
    return _extreme("max", np.max, np.argmax, a, dim, keepdim)


def min(a, dim=None, keepdim=False):
    if isinstance(dim, Tensor):
        from .elementwise import minimum
        return minimum(a, dim)
    return _extreme("min", np.min, np.argmin, a, dim, keepdim)


def _amax_like(name, reduce_fn, a, dim, keepdim):
    x = a.data
    axes = _axes(name, x, dim)
    out = reduce_fn(x, axis=axes, keepdims=True)
    mask = x == out
    count = mask.sum(axis=axes, keepdims=True).astype(x.dtype)
    res = out if keepdim else out.squeeze(axes) if axes else out
    return _result(res, (a,), lambda g: (mask * (_expand_back(g, x.shape, axes, keepdim) / count),))


def amax(a, dim=None, keepdim=False):
    return _amax_like("amax", np.max, a, dim, keepdim)


def amin(a, dim=None, keepdim=False):
    return _amax_like("amin", np.min, a, dim, keepdim)


def var(a, dim=None, unbiased=None, keepdim=False, correction=None):
    """Variance; ``correction=1`` (default, Bessel) or ``unbiased=False`` for the population variance."""
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    x = a.data
    axes = _axes("var", x, dim)
    n = 1
    for ax in axes:
        n *= x.shape[ax]
    centered = x - x.mean(axis=axes, keepdims=True)
    denom = n - correction
    out = (centered * centered).sum(axis=axes, keepdims=keepdim) / denom if denom > 0 else \
        np.full(np.sum(centered, axis=axes, keepdims=keepdim).shape, np.nan, x.dtype)
    scale = 2 / denom if denom > 0 else float("nan")
    # d var / dx = 2 (x - mean) / (n - correction)
    return _result(np.asarray(out, dtype=x.dtype), (a,),
                   lambda g: (_expand_back(g, x.shape, axes, keepdim) * centered * scale,))


def std(a, dim=None, unbiased=None, keepdim=False, correction=None):
    from .elementwise import sqrt
    return sqrt(var(a, dim, unbiased, keepdim, correction))


def logsumexp(a, dim, keepdim=False):
    x = a.data
    axes = _axes("logsumexp", x, dim)
    m = x.max(axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.exp(x - m).sum(axis=axes, keepdims=True)
    out_keep = np.log(s) + m
    out = out_keep if keepdim else out_keep.squeeze(axes)
    # d lse / dx = softmax(x)
    return _result(out, (a,), lambda g: (_expand_back(g, x.shape, axes, keepdim) * np.exp(x - out_keep),))


def cumsum(a, dim):
    x = a.data
    (axis,) = _axes("cumsum", x, dim)
    # the adjoint of a running sum is a reversed running sum
    return _result(np.cumsum(x, axis=axis), (a,),
                   lambda g: (np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis),))


def norm(a, p=2, dim=None, keepdim=False):
    from .elementwise import abs as abs_, sqrt
    if p == 2 or p == "fro":
        return sqrt(sum(a * a, dim, keepdim))
    if p == 1:
        return sum(abs_(a), dim, keepdim)
    if p == float("inf"):
        return amax(abs_(a), dim, keepdim)
    return sum(abs_(a) ** p, dim, keepdim) ** (1.0 / p)


def argmax(a, dim=None, keepdim=False):
    x = a.data
    if dim is None:
        return Tensor(np.asarray(np.argmax(x), dtype=np.int64))
    (axis,) = _axes("argmax", x, dim)
    return Tensor(np.argmax(x, axis=axis, keepdims=keepdim).astype(np.int64))


def argmin(a, dim=None, keepdim=False):
    x = a.data
    if dim is None:
        return Tensor(np.asarray(np.argmin(x), dtype=np.int64))
    (axis,) = _axes("argmin", x, dim)
    return Tensor(np.argmin(x, axis=axis, keepdims=keepdim).astype(np.int64))


def all(a, dim=None, keepdim=False):
    return Tensor(np.asarray(np.all(a.data, axis=None if dim is None else _axes("all", a.data, dim), keepdims=keepdim)))


def any(a, dim=None, keepdim=False):
    return Tensor(np.asarray(np.any(a.data, axis=None if dim is None else _axes("any", a.data, dim), keepdims=keepdim)))
