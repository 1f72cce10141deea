"""Losses as fused ops: each computes its value and its gradient in one place, from numerically stable
forms (log-softmax for cross-entropy, softplus for BCE with logits). Reductions, class weights and
``ignore_index`` follow PyTorch exactly: a weighted ``'mean'`` divides by the sum of the weights of the
targets counted, and ignored targets count for nothing.

>>> import tidu as td
>>> logits = td.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
>>> loss = td.cross_entropy(logits, td.tensor([0, 2]))
>>> round(loss.item(), 4)
0.1755
>>> loss.backward(); logits.grad.shape
(2, 3)
"""
import warnings

import numpy as np

from ..autograd import unbroadcast
from ..tensor import Tensor, _result, as_array
from .nn import _shifted_exps

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(op, reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        names = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{op}: reduction must be one of {names}, got {reduction!r}")


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(as_array(x))


def _float_input(op, input):
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.data.dtype.kind != "f":
        raise TypeError(f"{op}: input must be a floating tensor, got {input.data.dtype}")


def _float_target(input, target):
    """A float target in the input's dtype; the cast is differentiable, so a target that requires
    grad keeps its gradient (and no float64 target silently promotes a float32 loss)."""
    target = _tensor(target)
    return target if target.data.dtype == input.data.dtype else target.type(input.data.dtype)


def _reduce(loss, reduction):
    """Reduce per-element losses. Returns the output and the factor by which the output gradient
    scales each element's derivative (None for 'none': the gradient is already per element)."""
    if reduction == "none":
        return loss, None
    total = loss.sum()
    if reduction == "sum":
        return total, 1.0
    n = loss.size
    return (total / n if n else np.full((), np.nan, loss.dtype)), 1.0 / max(n, 1)  # mean of nothing: nan


def _scaled(g, factor):
    return g if factor is None or factor == 1.0 else g * factor


def _pointwise(op, input, target, reduction, value, slope):
    """Losses of d = input - target, element by element: ``value(d)`` and its derivative ``slope(d)``."""
    _float_input(op, input)
    _check_reduction(op, reduction)
    target = _float_target(input, target)
    x, t = input.data, target.data
    if x.shape != t.shape:
        try:
            np.broadcast_shapes(x.shape, t.shape)
        except ValueError:
            raise ValueError(f"{op}: input of shape {tuple(x.shape)} and target of shape {tuple(t.shape)} "
                             "do not broadcast; they should have the same shape") from None
        # PyTorch broadcasts with a warning: (N, 1) against (N,) silently makes an (N, N) loss
        warnings.warn(f"{op}: target shape {tuple(t.shape)} differs from input shape {tuple(x.shape)}; they "
                      "broadcast, which is rarely intended (check for a missing squeeze/unsqueeze)", stacklevel=3)
    d = x - t
    out, factor = _reduce(value(d), reduction)

    def backward(g):
        s = slope(d) * _scaled(g, factor)
        return (unbroadcast(s, x.shape) if input.requires_grad else None,
                unbroadcast(-s, t.shape) if target.requires_grad else None)
    return _result(out, (input, target), backward)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error ``(input - target)**2``, reduced.

    >>> import tidu as td
    >>> td.mse_loss(td.tensor([1.0, 2.0]), td.tensor([0.0, 0.0])).item()
    2.5
    """
    # d (d^2) = 2 d
    return _pointwise("mse_loss", input, target, reduction, lambda d: d * d, lambda d: 2 * d)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error ``|input - target|``, reduced (its gradient at 0 is 0, as in PyTorch)."""
    # d |d| = sign(d)
    return _pointwise("l1_loss", input, target, reduction, np.abs, np.sign)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``beta=0`` is the L1 loss)."""
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    if beta == 0:
        return l1_loss(input, target, reduction)
    # d/dd = d / beta inside, sign(d) outside
    return _pointwise("smooth_l1_loss", input, target, reduction,
                      lambda d: np.where(np.abs(d) < beta, (0.5 / beta) * d * d, np.abs(d) - 0.5 * beta),
                      lambda d: np.where(np.abs(d) < beta, d * (1.0 / beta), np.sign(d)))


def huber_loss(input, target, reduction="mean", delta=1.0):
    """``0.5 d**2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``: smooth_l1 scaled by delta."""
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    # d/dd = d clipped to [-delta, delta]
    return _pointwise("huber_loss", input, target, reduction,
                      lambda d: np.where(np.abs(d) < delta, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta)),
                      lambda d: np.clip(d, -delta, delta))


# --- classification over a class axis: input (N, C, d1, ...) or unbatched (C,) ---
def _rows(x):
    """View the class axis (1, or 0 for an unbatched (C,) input) as the columns of an (M, C) matrix;
    returns it and the function that maps an (M, C) gradient back to ``x``'s layout."""
    if x.ndim == 2:
        return x, lambda g: g
    if x.ndim == 1:
        return x[None], lambda g: g[0]
    moved = np.moveaxis(x, 1, -1)
    shape = moved.shape
    return moved.reshape(-1, x.shape[1]), lambda g: np.moveaxis(g.reshape(shape), -1, 1)


def _class_weight(op, weight, n_classes, dtype):
    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
    if w.shape != (n_classes,):
        raise ValueError(f"{op}: weight must hold one value per class, shape ({n_classes},), "
                         f"got shape {tuple(w.shape)}")
    return w.astype(dtype, copy=False)


def _target_shape(x):
    return () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]


def _class_targets(op, x, target, weight, ignore_index):
    """Check integer class targets against input ``x``; return the flat targets with ignored ones
    replaced by 0, the weight of each target (0 where ignored), and the loss shape for 'none'."""
    t = target.data
    expected = _target_shape(x)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold class indices as integers (int64), got dtype {t.dtype} "
                        f"(shape {tuple(t.shape)}); convert it with target.long()")
    if t.shape != expected:
        raise ValueError(f"{op}: input of shape {tuple(x.shape)} needs a target of shape {expected}, got target "
                         f"of shape {tuple(t.shape)} (batch sizes and spatial dimensions must match)")
    n_classes = x.shape[0 if x.ndim == 1 else 1]
    t = t.reshape(-1)
    valid = t != ignore_index
    all_valid = bool(valid.all())
    counted = t if all_valid else t[valid]
    if counted.size and (counted.min() < 0 or counted.max() >= n_classes):
        bad = counted.min() if counted.min() < 0 else counted.max()
        raise IndexError(f"{op}: target {bad} is out of bounds for {n_classes} classes "
                         f"(class indices must lie in 0..{n_classes - 1}, or equal ignore_index={ignore_index})")
    if not all_valid:
        t = np.where(valid, t, 0)
    w_t = np.ones(t.shape, x.dtype) if weight is None else weight[t]
    if not all_valid:
        w_t = w_t * valid
    return t, w_t, valid, all_valid, expected


def _row_factor(g, factor, reduction):
    """Per-row gradient factor r: the output gradient, divided by the total weight for 'mean'."""
    return g.reshape(-1) if reduction == "none" else _scaled(g, factor)


def _weighted_mean(loss, w_t):
    total_w = w_t.sum()
    if total_w == 0:  # empty batch, or every target ignored: 0/0, as in PyTorch
        return np.full((), np.nan, loss.dtype), 0.0
    return loss.sum() / total_w, 1.0 / total_w


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross-entropy of ``softmax(input)`` over the class axis (dim 1, or 0 for an unbatched (C,) input).

    ``target`` holds class indices (int64, shape (N,) or (N, d1, ...)) or class probabilities (float, the
    input's shape). Computed from log-softmax in one op; its gradient is ``softmax - target weights``.
    ``weight`` rescales each class, ``ignore_index`` drops targets, ``label_smoothing`` mixes the target
    with the uniform distribution.

    >>> import tidu as td
    >>> x = td.zeros(2, 4)
    >>> round(td.cross_entropy(x, td.tensor([1, 3])).item(), 4)   # log 4
    1.3863
    """
    op = "cross_entropy"
    _float_input(op, input)
    _check_reduction(op, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must lie in [0, 1], got {label_smoothing}")
    x = input.data
    if x.ndim == 0 or x.shape[0 if x.ndim == 1 else 1] == 0:
        raise ValueError(f"{op}: input of shape {tuple(x.shape)} has no class dimension "
                         "(expected (C,), (N, C) or (N, C, d1, ...) with C > 0)")
    target = _tensor(target)
    if target.data.shape == x.shape and target.data.dtype.kind != "f":
        raise TypeError(f"{op}: target has the input's shape {tuple(x.shape)} but dtype {target.data.dtype}; "
                        f"class probabilities must be floating (target.float()), class indices must have shape "
                        f"{_target_shape(x)}")
    x2, back = _rows(x)
    n_classes = x2.shape[1]
    w = _class_weight(op, weight, n_classes, x.dtype)
    shifted, e, s = _shifted_exps(x2)
    if target.data.dtype.kind == "f" and target.data.shape == x.shape:
        if ignore_index >= 0:
            raise ValueError(f"{op}: ignore_index={ignore_index} is not supported with class-probability targets")
        return _cross_entropy_probs(input, _float_target(input, target), w, reduction, label_smoothing,
                                    shifted - np.log(s), e, s, back)
    t, w_t, valid, all_valid, out_shape = _class_targets(op, x, target, w, ignore_index)
    rows = np.arange(t.size)
    eps = label_smoothing
    # -log p[target] = log sum exp - shifted[target]
    loss = w_t * (np.log(s[:, 0]) - shifted[rows, t])
    if eps:
        logp = shifted - np.log(s)
        smooth = -(logp.sum(axis=1) if w is None else logp @ w)
        if not all_valid:
            smooth = smooth * valid
        loss = (1 - eps) * loss + (eps / n_classes) * smooth
    if reduction == "mean":
        out, factor = _weighted_mean(loss, w_t)
    else:
        out, factor = _reduce(loss.reshape(out_shape), reduction)

    def backward(g):
        # dL_i/dx_ic = Q_i p_ic - q_ic, q = the target weights of row i and Q_i their sum
        r = _row_factor(g, factor, reduction)
        if eps == 0 and w is None and all_valid:  # the common case: p - one_hot
            grad = e * ((r[:, None] if np.ndim(r) else r) / s)  # p r, in one pass
            grad[rows, t] -= r
            return (back(grad),)
        p = e / s
        q_sum = (1 - eps) * w_t
        if eps:
            w_sum = n_classes if w is None else w.sum()
            q_sum = q_sum + (eps / n_classes) * (w_sum if all_valid else w_sum * valid.astype(q_sum.dtype))
        r_col = r[:, None] if np.ndim(r) else r
        grad = p * (q_sum * r)[:, None]
        grad[rows, t] -= (1 - eps) * w_t * r
        if eps:
            spread = (eps / n_classes) * (r_col * valid[:, None] if not all_valid else r_col)
            grad -= spread * (1 if w is None else w)
        return (back(grad),)
    return _result(out, (input,), backward)


def _cross_entropy_probs(input, target, w, reduction, eps, logp, e, s, back):
    t2, _ = _rows(target.data)
    n_classes = logp.shape[1]
    q = t2 if not eps else t2 * (1 - eps) + eps / n_classes
    if w is not None:
        q = q * w
    loss = -(logp * q).sum(axis=1)
    out, factor = _reduce(loss.reshape(_target_shape(input.data)), reduction)

    def backward(g):
        r = _row_factor(g, factor, reduction)
        r_col = r[:, None] if np.ndim(r) else r
        # d/dx = p sum(q) - q;  d/dtarget = -(1 - eps) w log p
        gx = back((e / s * q.sum(axis=1, keepdims=True) - q) * r_col) if input.requires_grad else None
        gt = None
        if target.requires_grad:
            gt = -(1 - eps) * logp * r_col
            gt = back(gt * w if w is not None else gt)
        return gx, gt
    return _result(out, (input, target), backward)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood: ``-weight[t] * input[i, t]`` for log-probabilities ``input`` (N, C, d1, ...)
    and class indices ``target`` (N, d1, ...). ``cross_entropy`` is ``nll_loss(log_softmax(x))``, fused."""
    op = "nll_loss"
    _float_input(op, input)
    _check_reduction(op, reduction)
    x = input.data
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension, got a 0-d tensor")
    target = _tensor(target)
    x2, back = _rows(x)
    w = _class_weight(op, weight, x2.shape[1], x.dtype)
    t, w_t, _, _, out_shape = _class_targets(op, x, target, w, ignore_index)
    rows = np.arange(t.size)
    loss = -w_t * x2[rows, t]
    if reduction == "mean":
        out, factor = _weighted_mean(loss, w_t)
    else:
        out, factor = _reduce(loss.reshape(out_shape), reduction)

    def backward(g):
        grad = np.zeros(x2.shape, x.dtype)
        grad[rows, t] = -w_t * _row_factor(g, factor, reduction)  # d/dx[i, t_i] = -w[t_i]
        return (back(grad),)
    return _result(out, (input,), backward)


def _elementwise_weight(op, name, weight, shape, dtype):
    """A weight that broadcasts to the loss's shape (without enlarging it), as an array or None."""
    if weight is None:
        return None
    w = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
    try:
        ok = np.broadcast_shapes(w.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{op}: {name} of shape {tuple(w.shape)} does not broadcast to the input's shape "
                         f"{tuple(shape)}")
    return w.astype(dtype, copy=False)


def _same_shape(op, x, t):
    if x.shape != t.shape:
        raise ValueError(f"{op}: target of shape {tuple(t.shape)} must have the input's shape {tuple(x.shape)}")


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """``-weight (t log x + (1 - t) log(1 - x))`` for probabilities ``x`` in [0, 1]; each log is clamped
    at -100 as in PyTorch, so a confident mistake costs 100, not inf. For raw scores use
    ``binary_cross_entropy_with_logits``: it is stabler."""
    op = "binary_cross_entropy"
    _float_input(op, input)
    _check_reduction(op, reduction)
    target = _float_target(input, target)
    x, t = input.data, target.data
    _same_shape(op, x, t)
    if x.size and not (x.min() >= 0 and x.max() <= 1):
        raise ValueError(f"{op}: input must hold probabilities in [0, 1], got values from {x.min()} to {x.max()}; "
                         "for raw scores (logits) use binary_cross_entropy_with_logits")
    w = _elementwise_weight(op, "weight", weight, x.shape, x.dtype)
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(x), -100)
        log_1mx = np.maximum(np.log1p(-x), -100)
    loss = (t - 1) * log_1mx - t * log_x
    if w is not None:
        loss = loss * w
    out, factor = _reduce(loss, reduction)

    def backward(g):
        r = _scaled(g, factor) if w is None else _scaled(g, factor) * w
        # d/dx = (x - t) / (x (1 - x)), the denominator kept above 1e-12; d/dt = log(1 - x) - log x
        gx = (x - t) / np.maximum(x * (1 - x), 1e-12) * r if input.requires_grad else None
        gt = (log_1mx - log_x) * r if target.requires_grad else None
        return gx, gt
    return _result(out, (input, target), backward)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy of ``sigmoid(input)``, in the stable form
    ``(1 - t) x + (1 + (pos_weight - 1) t) softplus(-x)``. ``pos_weight`` (one value per class, along the
    last dim) weighs the positive term; ``weight`` rescales each element.

    >>> import tidu as td
    >>> round(td.binary_cross_entropy_with_logits(td.tensor([0.0]), td.tensor([1.0])).item(), 4)  # log 2
    0.6931
    """
    op = "binary_cross_entropy_with_logits"
    _float_input(op, input)
    _check_reduction(op, reduction)
    target = _float_target(input, target)
    x, t = input.data, target.data
    _same_shape(op, x, t)
    w = _elementwise_weight(op, "weight", weight, x.shape, x.dtype)
    pw = _elementwise_weight(op, "pos_weight", pos_weight, x.shape, x.dtype)
    sp_neg = np.logaddexp(0, -x)  # softplus(-x) = -log sigmoid(x)
    lw = None if pw is None else 1 + (pw - 1) * t
    loss = (1 - t) * x + (sp_neg if lw is None else lw * sp_neg)
    if w is not None:
        loss = loss * w
    out, factor = _reduce(loss, reduction)

    def backward(g):
        r = _scaled(g, factor) if w is None else _scaled(g, factor) * w
        gx = gt = None
        if input.requires_grad:
            sig = 0.5 * np.tanh(0.5 * x) + 0.5
            # d/dx = sigmoid(x) - t, or (1 - t) - lw (1 - sigmoid(x)) with pos_weight
            gx = ((sig - t) if lw is None else (1 - t) - lw * (1 - sig)) * r
        if target.requires_grad:
            # d/dt = -x + (pos_weight - 1) softplus(-x)
            gt = (-x if pw is None else (pw - 1) * sp_neg - x) * r
        return gx, gt
    return _result(out, (input, target), backward)


def kl_div(input, target, reduction="mean", log_target=False):
    """Kullback–Leibler divergence ``target (log target - input)`` for log-probabilities ``input``
    (``target`` is probabilities, or log-probabilities with ``log_target=True``). As in PyTorch,
    ``'mean'`` divides by the number of elements; ``'batchmean'`` (the KL divergence proper) by the batch size.
    Where a target probability is 0, its term and its gradient are 0 (PyTorch's target gradient is nan there)."""
    op = "kl_div"
    _float_input(op, input)
    _check_reduction(op, reduction, _REDUCTIONS + ("batchmean",))
    target = _float_target(input, target)
    x, t = input.data, target.data
    _same_shape(op, x, t)
    if log_target:
        et = np.exp(t)
        loss = et * (t - x)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_t = np.log(t)
        positive = t > 0
        loss = np.where(positive, t * (np.where(positive, log_t, 0) - x), 0).astype(x.dtype, copy=False)
    if reduction == "batchmean":
        n = x.shape[0] if x.ndim else 1
        out, factor = (loss.sum() / n if n else np.full((), np.nan, x.dtype)), 1.0 / max(n, 1)
    else:
        out, factor = _reduce(loss, reduction)

    def backward(g):
        r = _scaled(g, factor)
        # d/dx = -target;  d/dtarget = log target + 1 - x (0 where target = 0), or e^t (t + 1 - x) for log targets
        gx = -(et if log_target else t) * r if input.requires_grad else None
        gt = None
        if target.requires_grad:
            gt = (et * (t + 1 - x) if log_target else np.where(positive, np.where(positive, log_t, 0) + 1 - x, 0)) * r
        return gx, gt
    return _result(out, (input, target), backward)
