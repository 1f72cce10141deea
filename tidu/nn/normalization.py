"""Normalization layers: BatchNorm1d/2d (running statistics, train/eval), LayerNorm, GroupNorm;
state_dict keys as PyTorch's (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``)."""
import numpy as np

from .. import backend
from ..ops import batch_norm, group_norm, layer_norm
from ..tensor import Parameter, Tensor
from .module import Module

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm"]


def _dtype(dtype):
    return np.dtype(dtype) if dtype is not None else backend.get_default_dtype()


def _affine(module, shape, dtype, weight=True, bias=True):
    """Register ``weight`` (ones) and ``bias`` (zeros) of ``shape``, or None for those switched off."""
    dtype = _dtype(dtype)
    module.register_parameter("weight", Parameter(np.ones(shape, dtype=dtype)) if weight else None)
    module.register_parameter("bias", Parameter(np.zeros(shape, dtype=dtype)) if weight and bias else None)
    return dtype


class _BatchNorm(Module):
    _ranks = ()  # the accepted input ranks
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = _affine(self, num_features, dtype, affine)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype=dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype=dtype)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        if device is not None:
            self.to(device=device)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def forward(self, input):
        shape = tuple(getattr(input, "shape", ()))
        if len(shape) not in self._ranks:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected a {self._layout} input, "
                             f"got shape {shape}")
        if shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input with "
                             f"{self.num_features} channels (dim 1), got shape {shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        # without running statistics, evaluation normalizes with the batch's own, as PyTorch does
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                          self.weight, self.bias, use_batch, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs, per channel.

    Training normalizes with the batch's mean and variance and updates ``running_mean`` and
    ``running_var`` (``momentum=None``: a cumulative average); ``eval()`` normalizes with them.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> bn = nn.BatchNorm1d(3)
    >>> y = bn(td.randn(16, 3) * 5 + 2)
    >>> round(y.mean().item(), 4) + 0.0, sorted(bn.state_dict())
    (0.0, ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight'])
    """
    _ranks, _layout = (2, 3), "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs, per channel (see BatchNorm1d)."""
    _ranks, _layout = (4,), "4-D (N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalization of (N, C, D, H, W) inputs, per channel (see BatchNorm1d)."""
    _ranks, _layout = (5,), "5-D (N, C, D, H, W)"


class LayerNorm(Module):
    """Normalize over the trailing ``normalized_shape`` dimensions, then scale by ``weight`` and shift
    by ``bias`` (each of ``normalized_shape``).

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> ln = nn.LayerNorm(8)
    >>> ln(td.randn(2, 5, 8)).shape, ln.weight.shape
    ((2, 5, 8), (8,))
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        _affine(self, self.normalized_shape, dtype, elementwise_affine, bias)
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Normalize each sample over groups of ``num_channels / num_groups`` channels, then apply a
    per-channel ``weight`` and ``bias``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> nn.GroupNorm(2, 6)(td.randn(4, 6, 5, 5)).shape
    (4, 6, 5, 5)
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        _affine(self, num_channels, dtype, affine)
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def forward(self, input):
        shape = tuple(getattr(input, "shape", ()))
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}): expected input of shape "
                             f"(N, {self.num_channels}, ...), got {shape}")
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
