"""``SyncBatchNorm``: batch normalization with the statistics of the whole global batch.

Under plain DDP each rank normalizes with its own share of the batch (PyTorch's ``BatchNorm`` does
the same), so 2 ranks × 32 is *not* the same model update as 1 process × 64. ``SyncBatchNorm``
makes it the same: in training it combines the per-rank counts, means and squared deviations of
every channel (one ``allgather``) into the statistics of the global batch, and in backward it sums
the two per-channel reductions of the gradient over the ranks (one ``allreduce``). Running
statistics are updated with the global mean and unbiased variance, so they too match one process.
In eval mode, or with one process, it is ``BatchNorm``.

    model = SyncBatchNorm.convert_sync_batchnorm(model)    # before wrapping in DDP, as in PyTorch
    ddp = DistributedDataParallel(model)

>>> import tidu as td, tidu.nn as nn
>>> from tidu.distributed import SyncBatchNorm
>>> net = SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)))
>>> type(net[1]).__name__, net(td.randn(8, 4)).shape
('SyncBatchNorm', (8, 3))
"""
import numpy as np

from ..nn.normalization import _BatchNorm
from ..tensor import _result
from . import mpi

__all__ = ["SyncBatchNorm", "sync_batch_norm"]


def sync_batch_norm(input, running_mean, running_var, weight, bias, momentum, eps, group):
    """``batch_norm`` in training mode over the batch of every rank of ``group`` together.

    With x̂ = (x - μ) / σ over all N values of a channel on all ranks and y = w x̂ + b, the backward is
    dx = (w / σ) (g - Σg / N - x̂ Σ(g x̂) / N), where the two sums run over all ranks; dw = Σ g x̂ and
    db = Σ g stay local (DDP averages them like any gradient).
    """
    x = input.data
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)
    n_local = x.size // c if c else 0
    comm = group.comm
    # per rank: count, mean and sum of squared deviations; combined exactly (Chan et al.) in float64
    if n_local:
        mean_local = x.mean(axis=axes, dtype=np.float64)
        m2_local = np.square(x - mean_local.astype(x.dtype).reshape(shape), dtype=np.float64).sum(axis=axes)
    else:
        mean_local = m2_local = np.zeros(c)
    stats = np.empty((group.size, 1 + 2 * c))
    comm.Allgather(np.concatenate([[n_local], mean_local, m2_local]), stats)
    counts, means, m2s = stats[:, :1], stats[:, 1:1 + c], stats[:, 1 + c:]
    n = counts.sum()
    if n <= 1:
        raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel when training, got {int(n)} over "
                         f"all ranks (input of shape {tuple(x.shape)} here)")
    mean = (counts * means).sum(axis=0) / n
    var = (m2s.sum(axis=0) + (counts * np.square(means - mean)).sum(axis=0)) / n
    if running_mean is not None:
        running_mean.data *= 1 - momentum
        running_mean.data += (momentum * mean).astype(running_mean.dtype)
    if running_var is not None:
        running_var.data *= 1 - momentum
        running_var.data += (momentum * n / (n - 1) * var).astype(running_var.dtype)
    mean, rstd = mean.astype(x.dtype), (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    scale = rstd if weight is None else weight.data * rstd
    shift = -mean * scale if bias is None else bias.data - mean * scale
    out = x * scale.reshape(shape)
    out += shift.reshape(shape)

    def backward(g):
        xhat = (x - mean.reshape(shape)) * rstd.reshape(shape)
        sg, sgx = g.sum(axis=axes), (g * xhat).sum(axis=axes)
        gw = sgx if weight is not None and weight.requires_grad else None
        gb = sg if bias is not None and bias.requires_grad else None
        gx = None
        if input.requires_grad:
            sums = np.concatenate([sg, sgx]).astype(np.float64)
            comm.Allreduce(mpi._mpi().IN_PLACE, sums)
            total_g, total_gx = (sums[:c] / n).astype(x.dtype), (sums[c:] / n).astype(x.dtype)
            # dx = scale (g - Σg / N - x̂ Σ(g x̂) / N), the sums over every rank
            gx = g - total_g.reshape(shape)
            xhat *= total_gx.reshape(shape)
            gx -= xhat
            gx *= scale.reshape(shape)
        grads = (gx,) + ((gw,) if weight is not None else ()) + ((gb,) if bias is not None else ())
        return grads
    parents = (input,) + ((weight,) if weight is not None else ()) + ((bias,) if bias is not None else ())
    return _result(out, parents, backward)


class SyncBatchNorm(_BatchNorm):
    """Batch normalization over the global batch of all ranks, for (N, C, ...) inputs (see the module
    docstring). Arguments as ``BatchNorm1d``, plus ``process_group`` (default: the default group)."""
    _ranks, _layout = (2, 3, 4, 5), "(N, C, ...) input of 2 to 5 dimensions"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def forward(self, input):
        group = self.process_group if self.process_group is not None else mpi._default
        if not self.training or group is None or group.size == 1:
            return super().forward(input)
        shape = tuple(getattr(input, "shape", ()))
        if len(shape) not in self._ranks or shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm({self.num_features}): expected an (N, {self.num_features}, ...) input "
                             f"of 2 to 5 dimensions, got shape {shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # a cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        track = self.track_running_stats
        return sync_batch_norm(input, self.running_mean if track else None, self.running_var if track else None,
                               self.weight, self.bias, float(factor), self.eps, group)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm layer replaced by a SyncBatchNorm that shares its parameters
        and buffers (PyTorch's classmethod). Returns the new module, or ``module`` itself changed in place."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      process_group)
            for name in ("weight", "bias"):
                if module._parameters.get(name) is not None:
                    setattr(new, name, module._parameters[name])
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                new.register_buffer(name, module._buffers.get(name))
            new.training = module.training
            return new
        for name, child in list(module._modules.items()):
            if child is not None:
                converted = cls.convert_sync_batchnorm(child, process_group)
                if converted is not child:
                    setattr(module, name, converted)
        return module
