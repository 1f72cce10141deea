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
from . import functional, init, pretrained, utils
from .activation import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .gpt import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .module import IncompatibleKeys, Module, RemovableHandle, StateDictError
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .seq2seq import *  # noqa: F401,F403
from .summary import ModelSummary, summary, to_mermaid
from .transformer import *  # noqa: F401,F403
from . import (activation, attention, container, conv, gpt, linear, loss, normalization, pooling, recurrent, seq2seq,
               transformer)

__all__ = (["Module", "Parameter", "IncompatibleKeys", "RemovableHandle", "StateDictError", "functional", "init",
            "pretrained", "utils", "summary", "ModelSummary", "to_mermaid"]
           + [name for m in (activation, attention, container, conv, gpt, linear, loss, normalization, pooling,
                             recurrent, seq2seq, transformer) for name in m.__all__])
