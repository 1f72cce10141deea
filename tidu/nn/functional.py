"""``tidu.nn.functional`` (``F``): every op of ``tidu.ops`` under PyTorch's functional names, plus a few
activations composed from them (their gradients come from the primitives).

>>> import tidu as td
>>> import tidu.nn.functional as F
>>> F.relu(td.tensor([-1.0, 1.0]))
tensor([0., 1.])
>>> F.one_hot(td.tensor([0, 2]), 3)
tensor([[1, 0, 0],
        [0, 0, 1]])
"""
from ..ops import *  # noqa: F401,F403
from ..ops import __all__ as _ops_all
from ..ops import clamp, mul, neg, norm, softmax, softplus, sum, tanh, where

__all__ = list(_ops_all) + ["relu6", "hardtanh", "logsigmoid", "mish", "prelu", "softmin", "normalize",
                            "cosine_similarity"]


def relu6(input):
    """min(max(x, 0), 6)."""
    return clamp(input, 0.0, 6.0)


def hardtanh(input, min_val=-1.0, max_val=1.0):
    """x clamped to [min_val, max_val]."""
    return clamp(input, min_val, max_val)


def logsigmoid(input):
    """log sigmoid(x) = -softplus(-x), without overflow for large |x|."""
    return neg(softplus(neg(input)))


def mish(input):
    """x tanh(softplus(x)) (Misra, 2019)."""
    return mul(input, tanh(softplus(input)))


def prelu(input, weight):
    """x where x > 0, else weight · x; a weight of C values applies per channel (dim 1)."""
    w = weight
    if weight.data.size > 1 and input.ndim >= 2:
        w = weight.reshape((weight.data.size,) + (1,) * (input.ndim - 2))
    return where(input.data > 0, input, mul(input, w))


def softmin(input, dim=-1):
    """softmax(-x) over ``dim``."""
    return softmax(neg(input), dim)


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """x / max(‖x‖_p, eps) along ``dim``."""
    return input / clamp(norm(input, p, dim, keepdim=True), min=eps)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """Cosine of the angle between x1 and x2 along ``dim``: each is divided by max(its norm, eps) first."""
    return sum(mul(normalize(x1, 2.0, dim, eps), normalize(x2, 2.0, dim, eps)), dim)

