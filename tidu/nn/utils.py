"""Helpers over a model's parameters: flatten them to one vector and back; gradient clipping
(``clip_grad_norm_``, ``clip_grad_value_``) lives in ``tidu.optim`` and is re-exported here, as
PyTorch users find it under ``torch.nn.utils``.

>>> import tidu.nn as nn
>>> from tidu.nn.utils import parameters_to_vector, vector_to_parameters
>>> net = nn.Linear(3, 2)
>>> v = parameters_to_vector(net.parameters()); v.shape
(8,)
>>> vector_to_parameters(v * 0, net.parameters()); float(net.weight.abs().sum())
0.0
"""
import importlib

from ..ops import cat, reshape
from ..tensor import Tensor

__all__ = ["parameters_to_vector", "vector_to_parameters"]  # + the clipping functions, loaded on first use

_FROM_OPTIM = ("clip_grad_norm_", "clip_grad_value_")


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return cat([reshape(p, -1) for p in params])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D ``vec`` into the parameters, in place."""
    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise TypeError(f"vector_to_parameters: expected a 1-D Tensor, got "
                        f"{'shape ' + str(tuple(vec.shape)) if isinstance(vec, Tensor) else type(vec).__name__}")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    total = sum(p.data.size for p in params)
    if vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: the vector has {vec.shape[0]} elements but the parameters "
                         f"hold {total}")
    offset = 0
    for p in params:
        n = p.data.size
        p.data[...] = vec.data[offset:offset + n].reshape(p.data.shape)
        offset += n


def __getattr__(name):
    # Lazy: tidu.optim imports tidu.nn, so importing it here at load time would be circular.
    if name in _FROM_OPTIM:
        try:
            return getattr(importlib.import_module("tidu.optim.clip"), name)
        except ModuleNotFoundError:
            return getattr(importlib.import_module("tidu.optim"), name)
    raise AttributeError(f"module 'tidu.nn.utils' has no attribute {name!r}")
