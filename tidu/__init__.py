"""tidu (梯度, "gradient"): a deep-learning framework on NumPy with a PyTorch-familiar API.

>>> import tidu as td
>>> x = td.tensor([[1.0, 2.0]], requires_grad=True)
>>> y = (x * x).sum(); y.backward(); x.grad
tensor([[2., 4.]])
"""
import importlib

from . import backend
from .autograd import (GradcheckError, enable_grad, grad, gradcheck, inference_mode, is_grad_enabled,
                       no_grad, set_grad_enabled)
from .backend import (bool_, double, float, float16, float32, float64, get_default_dtype, get_rng_state, half,
                      int, int8, int16, int32, int64, long, manual_seed, set_default_dtype, set_rng_state, short,
                      uint8)
from .ops import *  # noqa: F401,F403
from .ops import __all__ as _ops_all
from .tensor import Parameter, Tensor, as_tensor, from_numpy, tensor

bool = bool_  # td.bool, as torch.bool
__version__ = "0.1.0"

# Subpackages load on first use, so `import tidu` stays fast and optional extras stay optional.
_SUBMODULES = {"nn", "optim", "data", "train", "io", "privacy", "explain", "fairness", "distributed", "cli", "text",
               "utils"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tidu' has no attribute {name!r}")


def save(obj, path):
    """Save a (nested) dict of tensors and numbers to a safetensors file, atomically; never pickle."""
    from .io import save as _save
    return _save(obj, path)


def load(path, map_location=None):
    """Load what ``save`` wrote (or any safetensors file) back as tensors."""
    from .io import load as _load
    return _load(path, map_location)


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(t):
    return t.numel()


__all__ = sorted(set(_ops_all) | {"Tensor", "Parameter", "tensor", "as_tensor", "from_numpy", "no_grad",
                                  "enable_grad", "set_grad_enabled", "inference_mode", "is_grad_enabled", "grad",
                                  "gradcheck", "GradcheckError", "manual_seed", "save", "load", "float32",
                                  "float64", "int64", "bool", "backend"})
