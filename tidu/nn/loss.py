"""Loss modules: each holds its options and calls the fused loss op of ``tidu.nn.functional``.
Class weights and ``pos_weight`` are buffers, so they are in ``state_dict`` as in PyTorch.

>>> import tidu as td
>>> import tidu.nn as nn
>>> loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
>>> loss = loss_fn(td.zeros(4, 3), td.tensor([0, 1, 2, 0]))
>>> round(loss.item(), 4)   # log 3: uniform predictions
1.0986
"""
from ..ops import loss as L
from ..tensor import Tensor, as_array
from .module import Module

__all__ = ["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "CrossEntropyLoss", "NLLLoss", "BCELoss",
           "BCEWithLogitsLoss", "KLDivLoss"]


class _Loss(Module):
    def __init__(self, reduction="mean", allowed=L._REDUCTIONS):
        super().__init__()
        L._check_reduction(type(self).__name__, reduction, allowed)  # fail at construction, not mid-training
        self.reduction = reduction

    def _buffer(self, name, value):
        self.register_buffer(name, None if value is None else
                             value if isinstance(value, Tensor) else Tensor(as_array(value)))

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error: ``F.mse_loss``."""

    def forward(self, input, target):
        return L.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error: ``F.l1_loss``."""

    def forward(self, input, target):
        return L.l1_loss(input, target, self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic below ``beta``, linear above: ``F.smooth_l1_loss``."""

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return L.smooth_l1_loss(input, target, self.reduction, self.beta)


class HuberLoss(_Loss):
    """Quadratic below ``delta``, linear above, scaled by delta: ``F.huber_loss``."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return L.huber_loss(input, target, self.reduction, self.delta)


class CrossEntropyLoss(_Loss):
    """Cross-entropy of softmax(logits) against class indices or class probabilities: ``F.cross_entropy``."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must lie in [0, 1], got {label_smoothing}")
        self._buffer("weight", weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return L.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities: ``F.nll_loss``."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self._buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return L.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities: ``F.binary_cross_entropy``."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self._buffer("weight", weight)

    def forward(self, input, target):
        return L.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of sigmoid(logits), stable: ``F.binary_cross_entropy_with_logits``."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self._buffer("weight", weight)
        self._buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return L.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction, self.pos_weight)


class KLDivLoss(_Loss):
    """KL divergence of log-probabilities from a target distribution: ``F.kl_div``."""

    def __init__(self, reduction="mean", log_target=False):
        super().__init__(reduction, L._REDUCTIONS + ("batchmean",))
        self.log_target = log_target

    def forward(self, input, target):
        return L.kl_div(input, target, self.reduction, self.log_target)
