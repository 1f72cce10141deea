"""``tidu.nn``: modules, layers, losses, initialization, and the functional API (``tidu.nn.functional``).

>>> import tidu as td
>>> import tidu.nn as nn
>>> import tidu.nn.functional as F
>>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
>>> loss = F.cross_entropy(model(td.randn(8, 4)), td.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
>>> loss.backward()
>>> model[0].weight.grad.shape
(16, 4)
"""
from ..tensor import Parameter
from . import functional, init, utils
from .activation import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .module import IncompatibleKeys, Module, RemovableHandle, StateDictError
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from . import activation, container, conv, linear, loss, normalization, pooling

__all__ = (["Module", "Parameter", "IncompatibleKeys", "RemovableHandle", "StateDictError", "functional", "init",
            "utils"] + activation.__all__ + container.__all__ + linear.__all__ + loss.__all__ + conv.__all__
           + pooling.__all__ + normalization.__all__)
