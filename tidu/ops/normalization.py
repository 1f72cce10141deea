"""Batch and group normalization, each one fused op with its own backward.

With x̂ = (x - mean) / sqrt(var + eps) over a set of n elements and y = w x̂ + b, the backward is

    dw = Σ g x̂,   db = Σ g,   dx = (w / sqrt(var + eps)) (g - db / n - x̂ dw / n)

(batch norm: the set is a channel across the batch and the spatial positions; group norm: a group
of channels within one sample). In eval mode batch norm is the affine map x * scale + shift.
"""
import numpy as np

from ..tensor import _result

__all__ = ["batch_norm", "group_norm"]


def _affine_grads(g, xhat, axes, weight, bias):
    gw = (g * xhat).sum(axis=axes) if weight is not None and weight.requires_grad else None
    gb = g.sum(axis=axes) if bias is not None and bias.requires_grad else None
    return gw, gb


def _params(input, weight, bias):
    return (input,) + ((weight,) if weight is not None else ()) + ((bias,) if bias is not None else ())


def _grads(gx, gw, gb, weight, bias):
    return (gx,) + ((gw,) if weight is not None else ()) + ((gb,) if bias is not None else ())


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalize each channel (dim 1) of an (N, C), (N, C, L) or (N, C, H, W) input over the batch and
    spatial positions, then scale by ``weight`` and shift by ``bias``.

    Training uses the batch statistics and updates ``running_mean`` / ``running_var`` in place (when
    given) as PyTorch does: ``running = (1 - momentum) * running + momentum * batch``, with the unbiased
    batch variance. Evaluation (``training=False``) uses the running statistics.

    >>> import tidu as td
    >>> x = td.tensor([[1.0], [3.0]])
    >>> rm, rv = td.zeros(1), td.ones(1)
    >>> td.batch_norm(x, rm, rv, training=True)
    tensor([[-1.],
            [ 1.]])
    >>> rm, rv
    (tensor([0.2]), tensor([1.1]))
    """
    x = input.data
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of at least 2 dimensions (N, C, ...), "
                         f"got shape {tuple(x.shape)}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"batch_norm: {name} of shape {tuple(t.shape)} does not match the {c} channels "
                             f"of the input of shape {tuple(x.shape)}")
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)
    n = x.size // c if c else 0
    w = weight.data if weight is not None else None
    if training:
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                             f"shape {tuple(x.shape)}")
        mean = x.mean(axis=axes)
        centered = x - mean.reshape(shape)
        var = np.mean(np.square(centered), axis=axes)
        if running_mean is not None:  # in place, so the module's buffers (and state_dict) see it
            m = float(momentum)
            running_mean.data *= 1 - m
            running_mean.data += m * mean
        if running_var is not None:
            m = float(momentum)
            running_var.data *= 1 - m
            running_var.data += (m * n / (n - 1)) * var
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var; "
                             "pass training=True to normalize with the batch statistics")
        mean, var = running_mean.data, running_var.data
    rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    scale = rstd if w is None else w * rstd
    shift = -mean * scale if bias is None else bias.data - mean * scale
    out = x * scale.reshape(shape)  # y = x * scale + shift: two passes over the data
    out += shift.reshape(shape).astype(x.dtype, copy=False)

    def backward(g):
        xhat = x - mean.reshape(shape)
        xhat *= rstd.reshape(shape)
        gw, gb = _affine_grads(g, xhat, axes, weight, bias)
        gx = None
        if input.requires_grad:
            if not training:  # the running statistics are constants
                gx = g * scale.reshape(shape)
            else:
                sg = g.sum(axis=axes) if gb is None else gb
                sgx = (g * xhat).sum(axis=axes) if gw is None else gw
                # dx = scale (g - Σg / n - x̂ Σ(g x̂) / n)
                gx = g * scale.reshape(shape)
                xhat *= (-scale * sgx / n).reshape(shape)
                gx += xhat
                gx -= (scale * sg / n).reshape(shape)
        return _grads(gx, gw, gb, weight, bias)
    return _result(out, _params(input, weight, bias), backward)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalize each sample over groups of ``C / num_groups`` channels (and all spatial positions),
    then apply the per-channel ``weight`` and ``bias``.

    >>> import tidu as td
    >>> td.group_norm(td.tensor([[1.0, 3.0, 5.0, 9.0]]), 2).round()
    tensor([[-1.,  1., -1.,  1.]])
    """
    x = input.data
    if x.ndim < 2:
        raise ValueError(f"group_norm: expected an input of at least 2 dimensions (N, C, ...), "
                         f"got shape {tuple(x.shape)}")
    nb, c = x.shape[:2]
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"group_norm: the {c} channels of the input of shape {tuple(x.shape)} are not divisible "
                         f"by num_groups={num_groups}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ValueError(f"group_norm: {name} of shape {tuple(t.shape)} does not match the {c} channels "
                             f"of the input of shape {tuple(x.shape)}")
    xg = x.reshape(nb, num_groups, -1)
    mean = xg.mean(axis=2, keepdims=True)
    xhat = xg - mean
    rstd = (1.0 / np.sqrt(np.mean(np.square(xhat), axis=2, keepdims=True) + eps)).astype(x.dtype)
    xhat *= rstd
    xhat = xhat.reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    out = xhat if weight is None else xhat * weight.data.reshape(shape)
    if bias is not None:
        out = out + bias.data.reshape(shape)
    axes = (0,) + tuple(range(2, x.ndim))

    def backward(g):
        gw, gb = _affine_grads(g, xhat, axes, weight, bias)
        gx = None
        if input.requires_grad:
            gxhat = (g if weight is None else g * weight.data.reshape(shape)).reshape(nb, num_groups, -1)
            xh = xhat.reshape(nb, num_groups, -1)
            # dx = rstd (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)) within each group, ĝ = g w
            gx = rstd * (gxhat - gxhat.mean(axis=2, keepdims=True) - xh * (gxhat * xh).mean(axis=2, keepdims=True))
            gx = gx.reshape(x.shape)
        return _grads(gx, gw, gb, weight, bias)
    return _result(out, _params(input, weight, bias), backward)
