"""Pooling: max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d (PyTorch's signatures and output sizes).

A pooling window is kh*kw kernel taps; tap (i, j) of every window at once is the strided view
``x[..., i*dh::sh, j*dw::sw]`` of the (padded) input. So a pool is kh*kw whole-tensor ``np.maximum``
or ``+`` calls over views: for the common 2×2 stride-2 max-pool that is three ``np.maximum`` calls, 11×
faster than a reshape + max (measured), and the output keeps the memory order of the input (NHWC
from a tidu convolution). The backward routes the gradient through the same views. A
max-pool, like a convolution, splits the batch over threads when several are allowed (``backend.run_parallel``).
"""
import numpy as np

from ..backend import array_module, run_parallel
from ..tensor import Tensor, _result
from .conv import _split

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d"]


def _tuple(op, name, v, n):
    t = (int(v),) * n if isinstance(v, (int, np.integer)) else tuple(int(e) for e in v)
    if len(t) != n:
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


def _out_len(op, size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length; with ceil_mode the last window must start inside the input
    or its left padding."""
    span = d * (k - 1) + 1
    num = size + 2 * p - span
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    if out < 1:
        raise ValueError(f"{op}: the window (kernel {k}, dilation {d}) is larger than the padded input "
                         f"(size {size} + 2 * padding {p}); output size would be {out}")
    return out


def _setup(op, input, kernel_size, stride, padding, dilation, ceil_mode, nd):
    """Validate and normalize the arguments; returns the 4-D array and the window geometry."""
    x = input.data
    if x.ndim not in (nd + 1, nd + 2):
        layout = "(N, C, H, W) or (C, H, W)" if nd == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"{op}: expected a {nd + 2}-D input {layout}, got shape {tuple(x.shape)}")
    k = _tuple(op, "kernel_size", kernel_size, nd)
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _tuple(op, "stride", stride, nd)
    p = _tuple(op, "padding", padding, nd)
    d = _tuple(op, "dilation", dilation, nd)
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{op}: kernel_size {k}, stride {s} and dilation {d} must be positive and padding {p} "
                         "non-negative")
    if any(pi > ki // 2 for ki, pi in zip(k, p)):  # PyTorch's rule (the kernel size, dilation aside)
        raise ValueError(f"{op}: padding {p} should be at most half of the kernel size {k}")
    x4 = x.reshape((1,) * (nd + 2 - x.ndim) + x.shape)  # unbatched → batch of one
    if nd == 1:
        x4 = x4[:, :, None, :]
        k, s, p, d = (1,) + k, (1,) + s, (0,) + p, (1,) + d
    h, w = x4.shape[2:]
    out_hw = (_out_len(op, h, k[0], s[0], p[0], d[0], ceil_mode), _out_len(op, w, k[1], s[1], p[1], d[1], ceil_mode))
    return x4, k, s, p, d, out_hw


def _like(x, shape, value):
    """A new (N, C, H', W') array filled with ``value`` (left uninitialized for None) in the memory
    order of ``x``: channels-last when x is (a tidu convolution's output), so that later elementwise
    ops see matching layouts."""
    xp = array_module(x)
    nhwc = x.strides[1] < x.strides[3]
    if nhwc:
        n, c, h, w = shape
        shape = (n, h, w, c)
    a = xp.empty(shape, dtype=x.dtype) if value is None else xp.full(shape, value, dtype=x.dtype)
    return a.transpose(0, 3, 1, 2) if nhwc else a


def _padded(x, p, k, s, d, out_hw, value):
    """Pad (N, C, H, W) by ``p`` on the left/top, and on the right/bottom as far as the last window
    reaches (ceil_mode windows may overhang); ``x`` itself when no padding is needed."""
    n, c, h, w = x.shape
    need_h = (out_hw[0] - 1) * s[0] + d[0] * (k[0] - 1) + 1
    need_w = (out_hw[1] - 1) * s[1] + d[1] * (k[1] - 1) + 1
    hp, wp = max(need_h, h + p[0]), max(need_w, w + p[1])
    if p == (0, 0) and hp == h and wp == w:
        return x
    buf = _like(x, (n, c, hp, wp), value)
    buf[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    return buf


def _taps(k, s, d, out_hw):
    """The (index, slice-tuple) of each kernel tap: its view of every window at once."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = k, s, d, out_hw
    return [(i * kw + j, (Ellipsis, slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
                          slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)))
            for i in range(kh) for j in range(kw)]


def _in_layout_of(g, out):
    """``g`` reshaped to ``out``'s shape and in its memory order (one copy when the orders differ: the
    gradient from a flatten is NCHW while the pooled activations of a convolution are NHWC)."""
    g = g.reshape(out.shape)
    if _order(g) == _order(out):
        return g
    moved = array_module(out).empty_like(out)
    moved[...] = g
    return moved


def _order(a):
    """The axes of ``a`` from the largest stride to the smallest (ignoring axes of length 1)."""
    return sorted((i for i in range(a.ndim) if a.shape[i] > 1), key=lambda i: -a.strides[i])


def _finish(out, x, input, nd):
    """Undo the 4-D lifting of _setup on an output array."""
    if nd == 1:
        out = out[:, :, 0, :]
    return out.reshape(out.shape[1:]) if input.ndim == nd + 1 else out


def _max_pool(op, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd):
    x4, k, s, p, d, out_hw = _setup(op, input, kernel_size, stride, padding, dilation, ceil_mode, nd)
    xpad = _padded(x4, p, k, s, d, out_hw, -np.inf)
    taps = _taps(k, s, d, out_hw)
    n, c = x4.shape[:2]
    out = _like(xpad, (n, c) + out_hw, None)
    parts = _split(n, xpad.nbytes, array_module(xpad))  # the batch over threads, as a convolution does

    def forward(part):
        xs, o = xpad[part[0]:part[1]], out[part[0]:part[1]]
        if len(taps) == 1:
            o[...] = xs[taps[0][1]]
            return
        np.maximum(xs[taps[0][1]], xs[taps[1][1]], out=o)
        for _, view in taps[2:]:
            np.maximum(o, xs[view], out=o)  # NaN propagates, as in PyTorch
    run_parallel(forward, parts)

    def backward(g):
        # Each window's gradient goes to its first maximum: tap by tap, where the tap holds the maximum
        # and no earlier tap of its window did (``taken``, a boolean mask: cheaper than float passes).
        g = _in_layout_of(g, out)
        disjoint = all(si >= di * (ki - 1) + 1 for si, ki, di in zip(s, k, d))
        # windows that tile the input exactly write every pixel once: no zero fill needed
        tiled = disjoint and d == (1, 1) and s == k and xpad.shape[2:] == (out_hw[0] * k[0], out_hw[1] * k[1])
        gxp = _like(xpad, xpad.shape, None)

        def backward_part(part):
            xs, o, gs, gx = (a[part[0]:part[1]] for a in (xpad, out, g, gxp))
            if not tiled:
                gx[...] = 0
            taken = None
            for t, view in taps:
                hit = xs[view] == o
                if taken is not None:
                    np.greater(hit, taken, out=hit)  # hit and not taken
                if disjoint:  # each input pixel is in one window at most: write, don't add
                    np.multiply(gs, hit, out=gx[view])
                else:
                    gx[view] += gs * hit
                if t < len(taps) - 1:
                    taken = hit if taken is None else np.logical_or(taken, hit, out=taken)
        run_parallel(backward_part, parts)
        gx = gxp[:, :, p[0]:p[0] + x4.shape[2], p[1]:p[1] + x4.shape[3]]
        return (_finish(gx, x4, input, nd),)

    result = _result(_finish(out, x4, input, nd), (input,), backward)
    if not return_indices:
        return result
    # the first tap (in window order) that holds the maximum, as PyTorch picks, as a flat index
    # into each input plane (h*W + w, or l)
    idx = array_module(out).zeros(out.shape, dtype=np.int64)
    for t, view in reversed(taps[1:]):
        np.copyto(idx, t, where=xpad[view] == out)
    (kh, kw), (ho, wo) = k, out_hw
    xpm = array_module(idx)
    rows = xpm.arange(ho)[:, None] * s[0] - p[0] + (idx // kw) * d[0]
    cols = xpm.arange(wo)[None, :] * s[1] - p[1] + (idx % kw) * d[1]
    return result, Tensor(_finish((rows * x4.shape[3] + cols).astype(np.int64), x4, input, nd))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over kH×kW windows of an (N, C, H, W) input (padding counts as -inf); ``stride`` defaults to
    the kernel size. With ``return_indices`` also the flat index (h*W + w) of each maximum.

    >>> import tidu as td
    >>> td.max_pool2d(td.arange(16.0).reshape(1, 1, 4, 4), 2)
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    """
    return _max_pool("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows of length kL of an (N, C, L) input."""
    return _max_pool("max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1)


def _window_counts(size, k, s, p, out):
    """Per output position along one axis: the window length clipped to the padded input (PyTorch's
    count_include_pad divisor) and the number of real (unpadded) elements in it."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    with_pad = end - start
    real = np.minimum(end, size) - np.maximum(start, 0)
    return with_pad, real


def _avg_pool(op, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nd):
    x4, k, s, p, d, out_hw = _setup(op, input, kernel_size, stride, padding, 1, ceil_mode, nd)
    xpad = _padded(x4, p, k, s, d, out_hw, 0)
    taps = _taps(k, s, d, out_hw)
    if divisor_override:
        div = float(divisor_override)
    else:
        (ph, rh), (pw, rw) = (_window_counts(x4.shape[2], k[0], s[0], p[0], out_hw[0]),
                              _window_counts(x4.shape[3], k[1], s[1], p[1], out_hw[1]))
        div = array_module(x4).asarray((np.outer(ph, pw) if count_include_pad else np.outer(rh, rw)).astype(x4.dtype))
    out = xpad[taps[0][1]] + xpad[taps[1][1]] if len(taps) > 1 else xpad[taps[0][1]].copy()
    for _, view in taps[2:]:
        out += xpad[view]
    out /= div

    def backward(g):
        gd = _in_layout_of(g, out) / div  # every element of a window gets g / divisor
        gxp = _like(xpad, xpad.shape, 0)
        disjoint = all(si >= ki for si, ki in zip(s, k))
        for _, view in taps:
            if disjoint:
                gxp[view] = gd
            else:
                gxp[view] += gd
        gx = gxp[:, :, p[0]:p[0] + x4.shape[2], p[1]:p[1] + x4.shape[3]]
        return (_finish(gx, x4, input, nd),)
    return _result(_finish(out, x4, input, nd), (input,), backward)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over kH×kW windows of an (N, C, H, W) input; ``count_include_pad`` counts zero padding in
    the divisor (PyTorch's default).

    >>> import tidu as td
    >>> td.avg_pool2d(td.arange(16.0).reshape(1, 1, 4, 4), 2)
    tensor([[[[ 2.5,  4.5],
              [10.5, 12.5]]]])
    """
    return _avg_pool("avg_pool2d", input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, 2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over windows of length kL of an (N, C, L) input."""
    return _avg_pool("avg_pool1d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1)


def _adaptive_matrix(size, out, dtype):
    """(out, size) averaging matrix of PyTorch's adaptive windows [floor(i*size/out), ceil((i+1)*size/out))."""
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    j = np.arange(size)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _adaptive_avg_pool(op, input, output_size, nd):
    x = input.data
    if x.ndim not in (nd + 1, nd + 2):
        layout = "(N, C, H, W) or (C, H, W)" if nd == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"{op}: expected a {nd + 2}-D input {layout}, got shape {tuple(x.shape)}")
    sizes = x.shape[-nd:]
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size,) * nd
    if len(output_size) != nd:
        raise ValueError(f"{op}: output_size must be an int or a tuple of {nd}, got {output_size!r}")
    output_size = tuple(sz if o is None else int(o) for o, sz in zip(output_size, sizes))
    if min(output_size) < 1 or min(sizes) < 1:
        raise ValueError(f"{op}: output_size {output_size} and input size {sizes} must be positive")
    # separable: out = A_h @ x @ A_wᵀ, with A the (out, in) averaging matrices; dx = A_hᵀ g A_w
    mats = [array_module(x).asarray(_adaptive_matrix(sz, o, x.dtype)) for sz, o in zip(sizes, output_size)]
    out = x @ mats[-1].T
    if nd == 2:
        out = mats[0] @ out

    def backward(g):
        gx = g @ mats[-1]
        if nd == 2:
            gx = mats[0].T @ gx
        return (gx,)
    return _result(out, (input,), backward)


def adaptive_avg_pool2d(input, output_size):
    """Average over the adaptive windows that split H and W into ``output_size`` (an int, a pair, or
    None to keep a size), as PyTorch's.

    >>> import tidu as td
    >>> td.adaptive_avg_pool2d(td.ones(2, 3, 5, 7), 1).shape
    (2, 3, 1, 1)
    """
    return _adaptive_avg_pool("adaptive_avg_pool2d", input, output_size, 2)


def adaptive_avg_pool1d(input, output_size):
    """Average over the adaptive windows that split L into ``output_size``."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", input, output_size, 1)
