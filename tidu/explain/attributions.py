"""Attributions: how much each input feature moved the model's output for one class.

All methods take a model (any callable from a Tensor to a Tensor, usually an ``nn.Module`` in
``eval()`` mode), a batch of inputs (a Tensor or an array, batch first) and a ``target``: the class
index (an int, or one per sample), ``None`` for the predicted class (or for a model with one output),
or a function from the output Tensor to one score per sample. They return attributions shaped like
the inputs, as a Tensor when given a Tensor and as an array otherwise.

- ``saliency``: |∂f/∂x| (Simonyan et al., 2014).
- ``input_x_gradient``: x ∘ ∂f/∂x.
- ``integrated_gradients``: (x − x′) ∘ ∫₀¹ ∂f(x′ + α(x − x′))/∂x dα (Sundararajan et al., 2017), the
  integral by Gauss–Legendre quadrature (Captum's default) or a Riemann rule, every step of the path
  in one batched pass; returns the convergence delta Σ attributions − (f(x) − f(x′)) too.
- ``smooth_grad``: the gradient averaged over noisy copies of the input (Smilkov et al., 2017).
- ``occlusion``: f(x) − f(x with a window set to a baseline), averaged over the windows covering each
  feature (Zeiler & Fergus, 2014); needs no gradient, so it also works on token ids.

For text, the gradient methods take ``layer=``: attributions are then computed for that layer's output
(e.g. the embedding layer: sum them over the last axis for one score per token), as Captum's
``Layer*`` methods do.

>>> import tidu as td
>>> import tidu.nn as nn
>>> model = nn.Linear(3, 2)
>>> with td.no_grad():
...     _ = model.weight.copy_(td.tensor([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]]))
...     _ = model.bias.zero_()
>>> attr, delta = integrated_gradients(model, td.tensor([[1.0, 1.0, 1.0]]), target=0)
>>> attr, abs(float(delta[0])) < 1e-6          # a linear model: w ∘ (x − 0), exactly
(tensor([[ 1., -2.,  3.]]), True)
"""
import numbers

import numpy as np

from .. import backend
from ..autograd import enable_grad, grad, no_grad
from ..tensor import Tensor

__all__ = ["saliency", "input_x_gradient", "integrated_gradients", "smooth_grad", "occlusion", "METHODS"]

METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")
_MAX_BATCH = 1024  # examples per forward pass when internal_batch_size is not given


def _array(who, inputs):
    if isinstance(inputs, Tensor):
        return inputs.data
    a = np.asarray(inputs)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    if a.dtype == object:
        raise TypeError(f"{who}: inputs must be a Tensor or an array, got {type(inputs).__name__}")
    return a


def _like(inputs, a):
    return Tensor(np.ascontiguousarray(a)) if isinstance(inputs, Tensor) else a


def _scores(who, out, target):
    """One score per sample from the model's output: the target class's logit (or the output itself)."""
    if callable(target):
        s = target(out)
        if not isinstance(s, Tensor) or s.ndim != 1:
            raise ValueError(f"{who}: target(output) must return one score per sample (a 1-D Tensor), got "
                             f"{getattr(s, 'shape', type(s).__name__)}")
        return s
    if out.ndim == 1:
        return out
    if out.ndim != 2:
        raise ValueError(f"{who}: the model's output has shape {tuple(out.shape)}; give target= as a function "
                         "from the output to one score per sample")
    if out.shape[1] == 1 and target is None:
        return out[:, 0]
    idx = np.asarray(target)
    if idx.ndim == 0:
        idx = np.full(out.shape[0], int(idx))
    return out[np.arange(out.shape[0]), idx]


def _target(who, model, x, target, layer):
    """The target as given, or (None, several outputs) the class the model predicts for each sample."""
    if target is None or callable(target):
        if target is None:
            with no_grad():
                out = model(Tensor(x))
            if out.ndim == 2 and out.shape[1] > 1:
                return out.data.argmax(1)
        return target
    t = np.asarray(target)
    if t.dtype.kind not in "iu" or t.ndim > 1 or (t.ndim == 1 and len(t) != len(x)):
        raise ValueError(f"{who}: target must be a class index, one index per sample ({len(x)}), None or a "
                         f"function; got {target!r}")
    return t


def _repeat_target(target, k):
    if target is None or callable(target) or np.ndim(target) == 0:
        return target
    return np.tile(np.asarray(target), k)


class _Replace:
    """Within ``with``: ``layer``'s output is replaced by ``value`` (so gradients are taken at it)."""

    def __init__(self, layer, value=None):
        self.layer, self.value, self.seen = layer, value, None

    def __enter__(self):
        def hook(module, args, out):
            self.seen = out
            return self.value
        self.handle = self.layer.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _layer_output(model, x, layer):
    with no_grad(), _Replace(layer) as r:
        model(Tensor(x))
    if r.seen is None:
        raise ValueError(f"layer= {type(layer).__name__} was not called by the model's forward")
    return r.seen.data


def _gradient(who, model, x, value, target, layer):
    """∂ score / ∂ value, for a batch: ``value`` is the input itself, or ``layer``'s output for input ``x``.
    Returns (gradient, scores)."""
    leaf = Tensor(np.ascontiguousarray(value)).requires_grad_(True)
    with enable_grad():
        if layer is None:
            out = model(leaf)
        else:
            with _Replace(layer, leaf):
                out = model(Tensor(x))
        s = _scores(who, out, target)
        (g,) = grad(s.sum(), leaf, allow_unused=True)  # samples are independent: ∂Σs/∂x_n = ∂s_n/∂x_n
    g = np.zeros_like(leaf.data) if g is None else g.data
    return g, s.data


def _check_gradient_input(who, x, layer):
    if layer is None and x.dtype.kind != "f":
        raise TypeError(f"{who}: gradients need floating inputs, got {x.dtype}; for token ids pass layer= "
                        "(e.g. the embedding layer) to attribute to its output, or use occlusion")


def _chunks(total, per_example, internal_batch_size):
    """Split ``total`` repetitions of a batch into chunks of at most ``internal_batch_size`` examples."""
    size = internal_batch_size or _MAX_BATCH
    k = max(1, size // max(per_example, 1))
    return [(i, min(i + k, total)) for i in range(0, total, k)]


def saliency(model, inputs, target=None, abs=True, layer=None):
    """|∂ score / ∂ input| (or the signed gradient with ``abs=False``).

    >>> import tidu as td
    >>> saliency(lambda x: (x * x).sum(1), td.tensor([[1.0, -3.0]]))
    tensor([[2., 6.]])
    """
    who = "saliency"
    x = _array(who, inputs)
    _check_gradient_input(who, x, layer)
    target = _target(who, model, x, target, layer)
    value = x if layer is None else _layer_output(model, x, layer)
    g, _ = _gradient(who, model, x, value, target, layer)
    return _like(inputs, np.abs(g) if abs else g)


def input_x_gradient(model, inputs, target=None, layer=None):
    """input ∘ ∂ score / ∂ input (with ``layer``, that layer's output ∘ the gradient at it).

    >>> import tidu as td
    >>> input_x_gradient(lambda x: (x * x).sum(1), td.tensor([[1.0, -3.0]]))
    tensor([[ 2., 18.]])
    """
    who = "input_x_gradient"
    x = _array(who, inputs)
    _check_gradient_input(who, x, layer)
    target = _target(who, model, x, target, layer)
    value = x if layer is None else _layer_output(model, x, layer)
    g, _ = _gradient(who, model, x, value, target, layer)
    return _like(inputs, value * g)


def _quadrature(who, method, steps):
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
        raise ValueError(f"{who}: steps must be an integer of at least 2, got {steps!r}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    if method not in METHODS:
        raise ValueError(f"{who}: method must be one of {METHODS}, got {method!r}")
    weights = np.full(steps, 1.0 / steps)
    rule = method.split("_")[1]
    if rule == "trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return np.linspace(0, 1, steps), weights
    lo, hi = {"left": (0, 1 - 1 / steps), "right": (1 / steps, 1), "middle": (0.5 / steps, 1 - 0.5 / steps)}[rule]
    return np.linspace(lo, hi, steps), weights


def integrated_gradients(model, inputs, target=None, baseline=None, steps=50, method="gausslegendre",
                         internal_batch_size=None, layer=None):
    """Integrated gradients from ``baseline`` (zeros by default; a number or an array that broadcasts to
    the inputs) to the inputs. Returns ``(attributions, delta)``: delta[n] = Σ attributions[n] −
    (f(x_n) − f(baseline_n)), the quadrature's error, which shrinks as ``steps`` grows.

    The ``steps`` points of the path go through the model together, ``internal_batch_size`` examples
    (default 1024) per forward pass. ``method`` is ``"gausslegendre"`` (Captum's default) or one of
    ``"riemann_trapezoid"``, ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``. With ``layer``,
    the path runs through that layer's output (the baseline is then in that space).

    >>> import tidu as td
    >>> attr, delta = integrated_gradients(lambda x: (x * x).sum(1), td.tensor([[1.0, -3.0]]), steps=8)
    >>> attr, delta                          # f = x₁² + x₂² from 0: exactly x², no error
    (tensor([[1., 9.]]), tensor([0.]))
    """
    who = "integrated_gradients"
    x = _array(who, inputs)
    _check_gradient_input(who, x, layer)
    target = _target(who, model, x, target, layer)
    end = x if layer is None else _layer_output(model, x, layer)
    try:
        start = np.broadcast_to(np.zeros((), end.dtype) if baseline is None else _array(who, baseline), end.shape)
    except ValueError:
        raise ValueError(f"{who}: baseline of shape {np.shape(baseline)} does not broadcast to the "
                         f"{'inputs' if layer is None else 'layer output'} of shape {end.shape}") from None
    start = start.astype(end.dtype, copy=False)
    alphas, weights = _quadrature(who, method, steps)
    n = len(x)
    diff = end - start
    total = np.zeros(end.shape, dtype=np.float64)
    for lo, hi in _chunks(steps, n, internal_batch_size):
        a = alphas[lo:hi].astype(end.dtype).reshape((-1, 1) + (1,) * end.ndim)
        path = (start[None] + a * diff[None]).reshape((-1,) + end.shape[1:])  # step-major: k copies of the batch
        xs = None if layer is None else np.concatenate([x] * (hi - lo))
        g, _ = _gradient(who, model, xs, path, _repeat_target(target, hi - lo), layer)
        total += np.tensordot(weights[lo:hi], g.reshape((hi - lo,) + end.shape), axes=1)
    attributions = (diff * total).astype(end.dtype)
    # the convergence delta: f at both ends, in one pass
    both = np.concatenate([end, start])
    with no_grad():
        if layer is None:
            out = model(Tensor(both))
        else:
            with _Replace(layer, Tensor(both)):
                out = model(Tensor(np.concatenate([x, x])))
        s = _scores(who, out, _repeat_target(target, 2)).data
    delta = attributions.reshape(n, -1).sum(1, dtype=np.float64) - (s[:n].astype(np.float64) - s[n:])
    return _like(inputs, attributions), _like(inputs, delta.astype(end.dtype))


def smooth_grad(model, inputs, target=None, noise_level=0.15, samples=25, abs=True, stdev=None,
                internal_batch_size=None, seed=None):
    """SmoothGrad: the mean over ``samples`` noisy copies x + N(0, σ²) of |∂ score / ∂ x| (of the signed
    gradient with ``abs=False``). σ is ``noise_level`` times each sample's range max(x) − min(x), as in
    the paper, unless ``stdev`` gives it directly. The noise comes from tidu's generator (``td.manual_seed``)
    or from ``seed``.

    >>> import tidu as td
    >>> smooth_grad(lambda x: (3 * x).sum(1), td.tensor([[1.0, 2.0]]), samples=4)   # a linear model: constant
    tensor([[3., 3.]])
    """
    who = "smooth_grad"
    x = _array(who, inputs)
    _check_gradient_input(who, x, None)
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
        raise ValueError(f"{who}: samples must be a positive integer, got {samples!r}")
    target = _target(who, model, x, target, None)
    n = len(x)
    if stdev is None:
        flat = x.reshape(n, -1)
        stdev = noise_level * (flat.max(1) - flat.min(1)) if flat.shape[1] else np.zeros(n)
    sigma = np.broadcast_to(np.asarray(stdev, dtype=x.dtype), (n,)).reshape((n,) + (1,) * (x.ndim - 1))
    rng = np.random.default_rng(seed) if seed is not None else backend.rng()
    total = np.zeros(x.shape, dtype=np.float64)
    for lo, hi in _chunks(samples, n, internal_batch_size):
        k = hi - lo
        noisy = (x[None] + rng.standard_normal((k,) + x.shape).astype(x.dtype) * sigma[None]).reshape(
            (k * n,) + x.shape[1:])
        g, _ = _gradient(who, model, None, noisy, _repeat_target(target, k), None)
        g = g.reshape((k,) + x.shape)
        total += (np.abs(g) if abs else g).sum(0)
    return _like(inputs, (total / samples).astype(x.dtype))


def _window(who, name, v, shape):
    """An int or tuple for the trailing dimensions, expanded to cover all of ``shape`` (the leading
    dimensions fully)."""
    t = (int(v),) if isinstance(v, numbers.Integral) else tuple(int(e) for e in v)
    if len(t) > len(shape) or min(t, default=1) < 1:
        raise ValueError(f"{who}: {name} {v!r} must be positive and have at most {len(shape)} dimensions "
                         f"(the sample shape is {shape})")
    return tuple(shape[:len(shape) - len(t)]) + t


def occlusion(model, inputs, target=None, window=8, stride=None, baseline=0.0, internal_batch_size=None):
    """Occlusion: slide a ``window`` over each sample (an int or tuple for the trailing dimensions, e.g.
    ``(8, 8)`` over all channels of an (N, C, H, W) image, or ``1`` over tokens), set it to ``baseline``,
    and give every feature the mean drop f(x) − f(occluded) over the windows that cover it. ``stride``
    defaults to the window (no overlap); windows at the end are cut at the border, as in Captum.

    >>> import tidu as td
    >>> occlusion(lambda x: (x * x).sum(1), td.tensor([[1.0, -3.0, 2.0]]), window=1, target=None)
    tensor([[1., 9., 4.]])
    """
    who = "occlusion"
    x = _array(who, inputs)
    n, shape = len(x), x.shape[1:]
    win = _window(who, "window", window, shape)
    step = _window(who, "stride", win if stride is None else stride, shape)
    if any(w > s for w, s in zip(win, shape)):
        raise ValueError(f"{who}: window {win} is larger than the sample shape {shape}")
    target = _target(who, model, x, target, None)
    counts = [int(np.ceil((s - w) / st)) + 1 for s, w, st in zip(shape, win, step)]
    starts = np.stack(np.meshgrid(*[np.arange(c) * st for c, st in zip(counts, step)], indexing="ij"),
                      -1).reshape(-1, len(shape))
    base = np.broadcast_to(np.asarray(baseline, dtype=x.dtype), shape)
    with no_grad():
        s0 = _scores(who, model(Tensor(x)), target).data.astype(np.float64)
    total = np.zeros(x.shape, dtype=np.float64)
    covered = np.zeros(shape, dtype=np.float64)
    for lo, hi in _chunks(len(starts), n, internal_batch_size):
        batch = np.repeat(x[None], hi - lo, axis=0)  # (k, N, *shape)
        regions = [tuple(slice(a, a + w) for a, w in zip(st, win)) for st in starts[lo:hi]]
        for j, r in enumerate(regions):
            batch[(j, slice(None)) + r] = base[r]
        with no_grad():
            out = model(Tensor(batch.reshape((-1,) + shape)))
            s = _scores(who, out, _repeat_target(target, hi - lo)).data.reshape(hi - lo, n)
        for j, r in enumerate(regions):
            total[(slice(None),) + r] += (s0 - s[j]).reshape((n,) + (1,) * len(shape))
            covered[r] += 1
    return _like(inputs, (total / np.maximum(covered, 1)).astype(x.dtype if x.dtype.kind == "f" else np.float32))
