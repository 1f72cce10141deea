"""Matrix products: matmul (batched, broadcast, 1-D cases) and the fused linear layer."""
import numpy as np

from ..autograd import unbroadcast
from ..tensor import _result

__all__ = ["matmul", "mm", "bmm", "linear", "outer", "dot"]


def _matmul_error(op, a, b):
    return ValueError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
                      f"(the last dimension of the first, {a.shape[-1] if a.ndim else '-'}, must equal "
                      f"the {'only' if b.ndim == 1 else 'second-to-last'} dimension of the second, "
                      f"{b.shape[0] if b.ndim == 1 else b.shape[-2] if b.ndim else '-'}; "
                      "batch dimensions must broadcast)")


def matmul(a, b):
    x, w = a.data, b.data
    if x.ndim == 0 or w.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension, got shapes {tuple(x.shape)} and {tuple(w.shape)}")
    try:
        out = x @ w
    except ValueError:
        raise _matmul_error("matmul", x, w) from None
    if x.ndim == 2 and w.ndim == 2:
        # d(XW)/dX = G W^T, d(XW)/dW = X^T G
        return _result(out, (a, b), lambda g: (g @ w.T if a.requires_grad else None,
                                               x.T @ g if b.requires_grad else None))

    if x.ndim == 1 and w.ndim == 1:  # inner product
        return _result(out, (a, b), lambda g: (g * w, g * x))

    def backward(g):  # promote 1-D operands to matrices, then reduce broadcast batch dims
        x2 = x[None, :] if x.ndim == 1 else x
        w2 = w[:, None] if w.ndim == 1 else w
        g2 = g
        if x.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if w.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        gx = unbroadcast(g2 @ np.swapaxes(w2, -1, -2), x2.shape).reshape(x.shape) if a.requires_grad else None
        gw = unbroadcast(np.swapaxes(x2, -1, -2) @ g2, w2.shape).reshape(w.shape) if b.requires_grad else None
        return gx, gw
    return _result(out, (a, b), backward)


def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm: expects two matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(f"bmm: expects (B, n, k) and (B, k, m) with the same B, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def dot(a, b):
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"dot: expects two 1-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def outer(a, b):
    from .shape import unsqueeze
    return matmul(unsqueeze(a, 1), unsqueeze(b, 0))


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` in one op: weight is (out_features, in_features), as in PyTorch."""
    x, w = input.data, weight.data
    if x.ndim == 0 or x.shape[-1] != w.shape[-1]:
        raise ValueError(f"linear: input of shape {tuple(x.shape)} does not fit weight of shape {tuple(w.shape)} "
                         f"(input's last dimension must be in_features = {w.shape[-1]})")
    x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
    out = x2 @ w.T
    if bias is not None:
        out += bias.data
    if x.ndim != 2:
        out = out.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(g):
        g2 = g.reshape(-1, w.shape[0]) if g.ndim != 2 else g
        gx = (g2 @ w).reshape(x.shape) if input.requires_grad else None   # dX = G W
        gw = g2.T @ x2 if weight.requires_grad else None                   # dW = G^T X
        gb = g2.sum(0) if bias is not None and bias.requires_grad else None  # db = sum of G over rows
        return gx, gw, gb
    parents = (input, weight) if bias is None else (input, weight, bias)
    return _result(out, parents, backward)
