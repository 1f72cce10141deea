"""Every differentiable op. Each module keeps an op's forward and backward side by side; this file
re-exports them and attaches them to ``Tensor`` as operators and methods."""
from ..tensor import Tensor
from . import (attention, conv, creation, elementwise, indexing, linalg, loss, nn, normalization, pool, recurrent,
               reduce, shape)
from .attention import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .creation import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .nn import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403

__all__ = [name for m in (conv, creation, elementwise, indexing, linalg, loss, nn, normalization, pool, reduce, shape,
                          attention, recurrent)
           for name in m.__all__]


def _reflected(op):
    return lambda self, other: op(other, self)


def _attach():
    E, R, S, L, I, N = elementwise, reduce, shape, linalg, indexing, nn
    T = Tensor
    T.__add__, T.__radd__ = E.add, _reflected(E.add)
    T.__sub__, T.__rsub__ = E.sub, _reflected(E.sub)
    T.__mul__, T.__rmul__ = E.mul, _reflected(E.mul)
    T.__truediv__, T.__rtruediv__ = E.div, _reflected(E.div)
    T.__pow__, T.__rpow__ = E.pow, _reflected(E.pow)
    T.__matmul__, T.__rmatmul__ = L.matmul, _reflected(L.matmul)
    T.__neg__ = E.neg
    T.__pos__ = lambda self: self
    T.__abs__ = E.abs
    T.__getitem__ = I.getitem
    T.__eq__, T.__ne__, T.__lt__, T.__le__, T.__gt__, T.__ge__ = E.eq, E.ne, E.lt, E.le, E.gt, E.ge
    T.__invert__ = E.logical_not
    T.__and__, T.__or__ = E.logical_and, E.logical_or
    for name in ["add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "rsqrt", "abs", "sin",
                 "cos", "tanh", "sigmoid", "relu", "clamp", "clip", "maximum", "minimum", "square", "sign",
                 "log1p", "expm1", "reciprocal", "erf", "eq", "ne", "lt", "le", "gt", "ge", "logical_not",
                 "isnan", "isinf", "isfinite", "floor", "ceil", "round"]:
        setattr(T, name, getattr(E, name))
    T.subtract, T.multiply, T.divide = E.sub, E.mul, E.div
    for name in ["sum", "mean", "max", "min", "amax", "amin", "var", "std", "logsumexp", "argmax", "argmin",
                 "all", "any", "norm", "cumsum"]:
        setattr(T, name, getattr(R, name))
    for name in ["reshape", "view", "flatten", "transpose", "permute", "swapaxes", "squeeze", "unsqueeze",
                 "expand", "expand_as", "contiguous", "repeat", "flip", "split", "chunk", "t"]:
        setattr(T, name, getattr(S, name))
    T.T = property(lambda self: S.permute(self, tuple(reversed(range(self.ndim)))))
    T.mT = property(lambda self: S.transpose(self, -2, -1))
    T.matmul, T.mm, T.bmm = L.matmul, L.mm, L.bmm
    T.gather = I.gather
    T.index_select = I.index_select
    T.masked_fill = I.masked_fill
    T.softmax, T.log_softmax = N.softmax, N.log_softmax
    T.clone = lambda self: E.mul(self, 1)


_attach()
