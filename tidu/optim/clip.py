"""Gradient clipping, in place on ``.grad`` (PyTorch's ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``)."""
import math

import numpy as np

from ..tensor import Tensor


def _grads(parameters, op):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: expected Tensors (parameters), got {type(p).__name__} at position {i}")
        if p.grad is not None:
            grads.append(p.grad.data)
    return grads


def _norm(a, norm_type):
    if norm_type == math.inf:
        return np.max(np.abs(a)) if a.size else a.dtype.type(0)
    if norm_type == -math.inf:
        return np.min(np.abs(a)) if a.size else a.dtype.type(math.inf)
    if norm_type == 2:
        flat = a.reshape(-1)
        return np.sqrt(np.dot(flat, flat))
    if norm_type == 1:
        return np.sum(np.abs(a))
    if norm_type == 0:
        return a.dtype.type(np.count_nonzero(a))
    return np.sum(np.abs(a) ** norm_type) ** (1.0 / norm_type)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of ``parameters`` together so that their total norm is at most ``max_norm``.

    The total norm is that of all gradients seen as one vector (``norm_type`` 2 by default; ``inf`` or
    ``'inf'`` for the largest absolute value). Gradients are multiplied in place by
    ``min(1, max_norm / (total_norm + 1e-6))``. Returns the total norm before clipping, as a 0-d Tensor.
    A non-finite norm raises when ``error_if_nonfinite`` (otherwise the gradients become non-finite too,
    as in PyTorch).

    >>> import tidu as td
    >>> w = td.tensor([3.0, 4.0], requires_grad=True)
    >>> (w * 1.0).sum().backward(); w.grad.data[:] = [3.0, 4.0]
    >>> td.optim.clip_grad_norm_([w], max_norm=1.0)
    tensor(5.)
    >>> w.grad
    tensor([0.6, 0.8])
    """
    norm_type = float(norm_type)
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.floating, np.integer)):
        raise TypeError(f"clip_grad_norm_: max_norm must be a number, got {type(max_norm).__name__}")
    grads = _grads(parameters, "clip_grad_norm_")
    if not grads:
        return Tensor(np.asarray(0.0, dtype=np.float32))
    norms = [_norm(g, norm_type) for g in grads]
    total = norms[0] if len(norms) == 1 else _norm(np.stack([np.asarray(n, dtype=grads[0].dtype) for n in norms]),
                                                   norm_type)
    total = np.asarray(total, dtype=grads[0].dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {float(total)}, "
                           "so it cannot be clipped; pass error_if_nonfinite=False to scale by it anyway")
    coef = np.minimum(max_norm / (total + 1e-6), 1.0)  # in the gradients' dtype, as PyTorch; NaN stays NaN
    if not coef == 1.0:
        for g in grads:
            g *= coef
    return Tensor(total)


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient of ``parameters`` in place to ``[-clip_value, clip_value]``.

    >>> import tidu as td
    >>> w = td.tensor([1.0, 1.0, 1.0], requires_grad=True)
    >>> (w * td.tensor([-3.0, 0.5, 3.0])).sum().backward()
    >>> td.optim.clip_grad_value_([w], 1.0); w.grad
    tensor([-1. ,  0.5,  1. ])
    """
    if isinstance(clip_value, bool) or not isinstance(clip_value, (int, float, np.floating, np.integer)):
        raise TypeError(f"clip_grad_value_: clip_value must be a number, got {type(clip_value).__name__}")
    clip_value = float(clip_value)
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for g in _grads(parameters, "clip_grad_value_"):
        np.clip(g, -clip_value, clip_value, out=g)
