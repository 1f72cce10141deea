"""Creating tensors: constants, ranges and random draws from tidu's seeded generator."""
import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["zeros", "ones", "full", "empty", "arange", "linspace", "eye", "rand", "randn", "randint",
           "randperm", "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
           "randint_like"]


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    size = tuple(int(n) for n in size)
    if any(n < 0 for n in size):
        raise ValueError(f"negative dimension in shape {size}")
    return size


def _make(array, dtype, device, requires_grad):
    if dtype is not None:
        array = array.astype(np.dtype(dtype), copy=False)
    if device is not None and str(device) != "cpu":
        array = backend.to_device(array, device)
    t = Tensor(array)
    return t.requires_grad_(True) if requires_grad else t


def _float(dtype):
    return np.dtype(dtype) if dtype is not None else backend.get_default_dtype()


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.zeros(_shape(size), _float(dtype)), None, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.ones(_shape(size), _float(dtype)), None, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _make(np.empty(_shape(size), _float(dtype)), None, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = backend.get_default_dtype() if isinstance(fill_value, float) else \
            np.bool_ if isinstance(fill_value, bool) else np.int64
    return _make(np.full(_shape((size,)), fill_value, np.dtype(dtype)), None, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        floats = any(isinstance(v, float) for v in (start, end, step))
        dtype = backend.get_default_dtype() if floats else np.int64
    return _make(np.arange(start, end, step, dtype=np.dtype(dtype)), None, device, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    return _make(np.linspace(start, end, int(steps)), _float(dtype), device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _make(np.eye(n, m, dtype=_float(dtype)), None, device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False):
    """Uniform on [0, 1)."""
    return _make(backend.rng().random(_shape(size)), _float(dtype), device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False):
    """Standard normal."""
    return _make(backend.rng().standard_normal(_shape(size)), _float(dtype), device, requires_grad)


def randint(low, high=None, size=(), dtype=None, device=None):
    """Integers in [low, high) (``randint(high, size)`` starts at 0), int64 by default."""
    if high is None:
        low, high = 0, low
    if low >= high:
        raise ValueError(f"randint: low ({low}) must be below high ({high})")
    return _make(backend.rng().integers(low, high, _shape((size,))), dtype or np.int64, device, False)


def randperm(n, dtype=None, device=None):
    return _make(backend.rng().permutation(n), dtype or np.int64, device, False)


def _like(t, dtype):
    return t.shape, (np.dtype(dtype) if dtype is not None else t.dtype), t.device


def zeros_like(t, dtype=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype)
    return _make(np.zeros(shape, dtype), None, device, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype)
    return _make(np.ones(shape, dtype), None, device, requires_grad)


def empty_like(t, dtype=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype)
    return _make(np.empty(shape, dtype), None, device, requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype)
    return _make(np.full(shape, fill_value, dtype), None, device, requires_grad)


def rand_like(t, dtype=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype)
    return _make(backend.rng().random(shape), dtype, device, requires_grad)


def randn_like(t, dtype=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype)
    return _make(backend.rng().standard_normal(shape), dtype, device, requires_grad)


def randint_like(t, low, high=None, dtype=None):
    shape, dtype, device = _like(t, dtype)
    return randint(low, high, shape, dtype, device)
