"""Convolution lowered to matrix multiplies: conv1d, conv2d, conv_transpose1d, conv_transpose2d.

The layout at the API is PyTorch's (N, C, H, W); inside, images are NHWC so that one im2col row
(kh, kw, C) is a run of whole channel vectors and the product with the weight is a single GEMM:

    cols[(n, ho, wo), (i, j, c)] = x_padded[n, ho*sh + i*dh, wo*sw + j*dw, c]     (strided view, one copy)
    out[(n, ho, wo), o]           = cols @ weight[(i, j, c), o]

The output is returned as an (N, C, H, W) *view* of the NHWC result, so the next elementwise op,
pool or convolution reads it in NHWC order with no transpose copy. The backward reads the lowering
the other way: grad_weight = colsᵀ @ g, with the patches kept from the forward when the weight needs
a gradient (copying them again took ~1 ms of W3's ~40 ms step; keeping them costs kh*kw times the
input's memory), and the input gradient
is col2im(g @ weightᵀ), computed one kernel tap at a time (one GEMM and one whole-image add per tap:
kh*kw calls, no loop over pixels, and no (N*Ho*Wo, kh*kw*C) gradient matrix in memory). With several
BLAS threads allowed, the batch is split over Python threads instead (see ``backend.run_parallel``). A 1-D
convolution is a 2-D one of height 1; conv_transpose2d is conv2d's input gradient used as a forward,
and its backward is a forward conv. Groups are a batch dimension of the matrix multiplies.
"""
import numpy as np

from ..autograd import is_grad_enabled
from ..backend import array_module, parallel_parts, run_parallel
from ..tensor import _result

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]


def _tuple(op, name, v, n):
    """Normalize an int or a sequence to an n-tuple of non-negative ints."""
    t = (int(v),) * n if isinstance(v, (int, np.integer)) else tuple(int(e) for e in v)
    if len(t) != n:
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


def _check_args(op, stride, dilation, groups):
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"{op}: stride and dilation must be positive, got stride {stride} and dilation {dilation}")
    if int(groups) < 1:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups}")


def _same_padding(op, kernel, stride, dilation):
    """PyTorch's padding='same': total d*(k-1) per axis, the odd element on the bottom/right."""
    if any(s != 1 for s in stride):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions (stride {stride}); "
                         "use an explicit padding")
    pads = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def _padding(op, padding, kernel, stride, dilation):
    """Padding as (before, after) per spatial axis, flattened: (top, bottom, left, right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * len(kernel))
        if padding == "same":
            return _same_padding(op, kernel, stride, dilation)
        raise ValueError(f"{op}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    p = _tuple(op, "padding", padding, len(kernel))
    if min(p) < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {p}")
    return tuple(e for q in p for e in (q, q))


def _nhwc_padded(x, pad):
    """An (N, C, H, W) array as an (N, Hp, Wp, C) array, zero-padded; a view when there is no padding."""
    t = x.transpose(0, 2, 3, 1)
    pt, pb, pl, pr = pad
    if not (pt or pb or pl or pr):
        return t
    n, h, w, c = t.shape
    buf = array_module(x).empty((n, pt + h + pb, pl + w + pr, c), dtype=x.dtype)
    buf[:, :pt] = 0  # zero only the border: the interior is overwritten next
    buf[:, pt + h:] = 0
    buf[:, pt:pt + h, :pl] = 0
    buf[:, pt:pt + h, pl + w:] = 0
    buf[:, pt:pt + h, pl:pl + w] = t
    return buf


# im2col works on chunks of images whose patch matrix stays in the CPU cache between its copy and
# its GEMM: the forward runs 1.2x faster than on the whole batch at once (measured).
_CHUNK_BYTES = 1 << 20


def _chunks(part, image_bytes):
    """(start, end) ranges of about _CHUNK_BYTES of patches over the images ``part`` = (start, end)
    (or ``range(part)`` for an int)."""
    lo, hi = (0, part) if isinstance(part, (int, np.integer)) else part
    step = max(1, _CHUNK_BYTES // max(1, image_bytes))
    return [(s, min(hi, s + step)) for s in range(lo, hi, step)]


# --- the batch split over threads ---
# NumPy releases the GIL in its copies, ufuncs and BLAS calls, so several Python threads can work on
# different images at once, each with a single-threaded BLAS. Unlike a multithreaded BLAS alone,
# that also spreads the im2col copies, the col2im additions and the pooling over the cores. As many
# threads as numpy's BLAS may use (threadpoolctl's view: ``threadpool_limits(1)`` means one); none
# without threadpoolctl, and none for small batches, where starting threads costs more than it saves.
MIN_PARALLEL_BYTES = 1 << 21


def _split(n, work_bytes, xp=np):
    """The batch [0, n) as one (start, end) range per thread; one range for small work (or on a GPU)."""
    return parallel_parts(n, work_bytes >= MIN_PARALLEL_BYTES, xp)


def _im2col(img, kernel, stride, dilation, out_hw, groups, buf=None):
    """Patches of the NHWC image ``img`` as a (G, N*Ho*Wo, kh*kw*Cg) matrix (one strided copy),
    written into ``buf`` when it has the right shape."""
    xp = array_module(img)
    n, _, _, c = img.shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    g, cg = groups, c // groups
    shape = (g, n, ho, wo, kh, kw, cg)
    cols = buf if buf is not None and buf.shape == shape else xp.empty(shape, dtype=img.dtype)
    if cg > 1:  # one copy through a 7-D strided view of the windows
        s0, s1, s2, s3 = img.strides
        win = xp.lib.stride_tricks.as_strided(
            img, (n, ho, wo, kh, kw, g, cg), (s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3 * cg, s3))
        xp.copyto(cols, win.transpose(5, 0, 1, 2, 3, 4, 6))
    else:  # one channel per group (grayscale, depthwise): tap by tap, so that each copy runs along
        for i in range(kh):  # image rows rather than over single elements (3x faster, measured)
            for j in range(kw):
                src = img[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
                cols[:, :, :, :, i, j] = src.reshape(n, ho, wo, g, cg).transpose(3, 0, 1, 2, 4)
    return cols


def _col2im(gm, wtaps, img, stride, dilation, out_hw):
    """The adjoint of im2col fused with the product by the weight: for every tap (i, j),
    ``img[n, ho*sh + i*dh, wo*sw + j*dw] += gm[(n, ho, wo)] @ wtaps[i, j]``.

    gm is (G, N*Ho*Wo, P), wtaps (kh, kw, G, P, Cg), img the C-contiguous NHWC (N, Hp, Wp, G*Cg) array
    to add into. One GEMM per tap into a reused buffer, then one whole-image add: no (N*Ho*Wo, kh*kw*Cg)
    patch matrix is materialized.
    """
    assert img.flags.c_contiguous  # the group split below must be a view, not a copy
    n, hp, wp, c = img.shape
    kh, kw, g, _, cg = wtaps.shape
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out_hw
    img = img.reshape(n, hp, wp, g, cg)
    buf = array_module(gm).empty((g, n * ho * wo, cg), dtype=img.dtype)
    tap = buf.reshape(g, n, ho, wo, cg).transpose(1, 2, 3, 0, 4)
    for i in range(kh):
        for j in range(kw):
            np.matmul(gm, wtaps[i, j], out=buf)
            img[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw] += tap


def _gemm(a, b, out):
    """(G, M, K) @ (G, K, P) into ``out`` (M, G*P): group-major operands, pixel-major result."""
    if a.shape[0] == 1:
        np.matmul(a[0], b[0], out=out)
    else:
        np.matmul(a, b, out=out.reshape(a.shape[1], a.shape[0], b.shape[2]).transpose(1, 0, 2))
    return out


def _group_major(m, groups):
    """(M, C) pixel-major rows → (G, M, C/G)."""
    return m.reshape(m.shape[0], groups, m.shape[1] // groups).transpose(1, 0, 2)


def _nhwc_rows(g):
    """An (N, C, H, W) gradient as the (N*H*W, C) matrix of its NHWC order (free when it already is)."""
    t = array_module(g).ascontiguousarray(g.transpose(0, 2, 3, 1))
    return t.reshape(-1, t.shape[3])


def _bias_grad(rows):
    return array_module(rows).ones(rows.shape[0], dtype=rows.dtype) @ rows  # column sums through BLAS: 10x sum(axis=0)


def _conv2d_arrays(x, w, b, stride, pad, dilation, groups, need):
    """Forward of a validated 2-D convolution on arrays. Returns the (N, O, Ho, Wo) output (a view of
    an NHWC array) and ``backward(g) -> (grad_x, grad_w, grad_b)``; ``need`` says which to compute."""
    xp = array_module(x)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    hp, wp = h + pad[0] + pad[1], wd + pad[2] + pad[3]
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    k, hw = (kh, kw), ho * wo
    img = _nhwc_padded(x, pad)
    image_bytes = hw * kh * kw * c * x.itemsize  # of one image's patch matrix
    parts = _split(n, n * image_bytes, xp)
    # the weight as a (G, kh*kw*Cg, Og) matrix, rows ordered like an im2col row
    w5 = w.reshape(groups, o // groups, cg, kh, kw)
    wm = xp.ascontiguousarray(w5.transpose(0, 3, 4, 2, 1)).reshape(groups, kh * kw * cg, o // groups)
    out = xp.empty((n * hw, o), dtype=np.result_type(x.dtype, w.dtype))
    need_x, need_w, need_b = need
    # The weight gradient reads the patches again: keep them (kh*kw times the input, written chunk by
    # chunk anyway) rather than copy them a second time in the backward.
    cols_all = xp.empty((groups, n, ho, wo, kh, kw, cg), dtype=x.dtype) if need_w else None

    def forward(part):
        cols = None
        for s, e in _chunks(part, image_bytes):
            buf = cols if cols_all is None else cols_all[:, s:e]
            cols = _im2col(img[s:e], k, stride, dilation, (ho, wo), groups, buf)
            _gemm(cols.reshape(groups, (e - s) * hw, -1), wm, out[s * hw:e * hw])
            if b is not None:
                out[s * hw:e * hw] += b  # while the chunk is in cache
    run_parallel(forward, parts)
    img = None

    def backward(g):
        rows = _nhwc_rows(g)
        gxp = xp.zeros((n, hp, wp, c), dtype=g.dtype) if need_x else None
        wtaps = xp.ascontiguousarray(w5.transpose(3, 4, 0, 1, 2)) if need_x else None  # (kh, kw, G, Og, Cg)

        def backward_part(part):
            gw = xp.zeros_like(wm) if need_w else None
            for s, e in _chunks(part, image_bytes):
                gm = _group_major(rows[s * hw:e * hw], groups)
                if need_w:  # dW = colsᵀ g
                    gw += np.matmul(cols_all[:, s:e].reshape(groups, (e - s) * hw, -1).transpose(0, 2, 1), gm)
                if need_x:  # dx = col2im(g Wᵀ)
                    _col2im(gm, wtaps, gxp[s:e], stride, dilation, (ho, wo))
            return gw
        gws = run_parallel(backward_part, _split(n, n * image_bytes, xp))
        gw = None
        if need_w:
            gw = gws[0] if len(gws) == 1 else sum(gws[1:], gws[0])
            gw = gw.reshape(groups, kh, kw, cg, o // groups).transpose(0, 4, 3, 1, 2).reshape(o, cg, kh, kw)
        gx = None if gxp is None else gxp[:, pad[0]:pad[0] + h, pad[2]:pad[2] + wd].transpose(0, 3, 1, 2)
        return gx, gw, _bias_grad(rows) if need_b else None
    return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), backward


def _conv(op, input, weight, bias, stride, padding, dilation, groups, nd):
    x, w = input.data, weight.data
    if w.ndim != nd + 2:
        raise ValueError(f"{op}: expected a {nd + 2}-D weight (out_channels, in_channels/groups, "
                         f"{'kH, kW' if nd == 2 else 'kL'}), got shape {tuple(w.shape)}")
    unbatched = x.ndim == nd + 1
    if x.ndim not in (nd + 1, nd + 2):
        layout = "(N, C, H, W) or (C, H, W)" if nd == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"{op}: expected a {nd + 2}-D input {layout}, got shape {tuple(x.shape)}")
    if unbatched:
        x = x[None]
    groups = int(groups)
    kernel = w.shape[2:]
    stride = _tuple(op, "stride", stride, nd)
    dilation = _tuple(op, "dilation", dilation, nd)
    _check_args(op, stride, dilation, groups)
    pad = _padding(op, padding, kernel, stride, dilation)
    c, o = x.shape[1], w.shape[0]
    if c != w.shape[1] * groups:
        raise ValueError(f"{op}: expected input with {w.shape[1] * groups} channels (weight {tuple(w.shape)}, "
                         f"groups={groups}), got input of shape {tuple(input.shape)}")
    if o % groups:
        raise ValueError(f"{op}: out_channels {o} (weight {tuple(w.shape)}) is not divisible by groups={groups}")
    padded = tuple(s + pad[2 * i] + pad[2 * i + 1] for i, s in enumerate(x.shape[2:]))
    effective = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(e > p for e, p in zip(effective, padded)):
        raise ValueError(f"{op}: kernel of size {effective} (dilation included) is larger than the padded input "
                         f"{padded} (input of shape {tuple(input.shape)}, padding {pad})")
    if bias is not None and tuple(bias.shape) != (o,):
        raise ValueError(f"{op}: bias of shape {tuple(bias.shape)} does not match out_channels {o}")
    if nd == 1:  # a 1-D convolution is a 2-D one over images of height 1
        x, w = x[:, :, None, :], w[:, :, None, :]
        stride, dilation, pad = (1,) + stride, (1,) + dilation, (0, 0) + pad
    # what the backward will compute (nothing under no_grad: then no patches are kept either)
    need = tuple(is_grad_enabled() and t is not None and t.requires_grad for t in (input, weight, bias))
    out, grads = _conv2d_arrays(x, w, None if bias is None else bias.data, stride, pad, dilation, groups, need)
    if nd == 1:
        out = out[:, :, 0, :]
    if unbatched:
        out = out[0]

    def backward(g):
        if unbatched:
            g = g[None]
        if nd == 1:
            g = g[:, :, None, :]
        gx, gw, gb = grads(g)
        if nd == 1:
            gx = None if gx is None else gx[:, :, 0, :]
            gw = None if gw is None else gw[:, :, 0, :]
        if unbatched and gx is not None:
            gx = gx[0]
        return (gx, gw) + ((gb,) if bias is not None else ())
    return _result(out, (input, weight) + ((bias,) if bias is not None else ()), backward)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in PyTorch) of an (N, C, H, W) input with an
    (out_channels, C/groups, kH, kW) weight; ``padding`` is an int, a pair, ``"same"`` or ``"valid"``.

    >>> import tidu as td
    >>> x = td.ones(1, 1, 4, 4)
    >>> td.conv2d(x, td.ones(1, 1, 3, 3), padding=1)[0, 0]
    tensor([[4., 6., 6., 4.],
            [6., 9., 9., 6.],
            [6., 9., 9., 6.],
            [4., 6., 6., 4.]])
    """
    return _conv("conv2d", input, weight, bias, stride, padding, dilation, groups, 2)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of an (N, C, L) input with an (out_channels, C/groups, kL) weight.

    >>> import tidu as td
    >>> td.conv1d(td.tensor([[[1.0, 2.0, 3.0, 4.0]]]), td.tensor([[[1.0, -1.0]]]))
    tensor([[[-1., -1., -1.]]])
    """
    return _conv("conv1d", input, weight, bias, stride, padding, dilation, groups, 1)


def _conv_transpose(op, input, weight, bias, stride, padding, output_padding, groups, dilation, nd):
    x, w = input.data, weight.data
    if w.ndim != nd + 2:
        raise ValueError(f"{op}: expected a {nd + 2}-D weight (in_channels, out_channels/groups, "
                         f"{'kH, kW' if nd == 2 else 'kL'}), got shape {tuple(w.shape)}")
    if x.ndim not in (nd + 1, nd + 2):
        layout = "(N, C, H, W) or (C, H, W)" if nd == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"{op}: expected a {nd + 2}-D input {layout}, got shape {tuple(x.shape)}")
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    groups = int(groups)
    stride = _tuple(op, "stride", stride, nd)
    dilation = _tuple(op, "dilation", dilation, nd)
    _check_args(op, stride, dilation, groups)
    pads = _tuple(op, "padding", padding, nd)
    opad = _tuple(op, "output_padding", output_padding, nd)
    if min(pads) < 0 or min(opad) < 0:
        raise ValueError(f"{op}: padding {pads} and output_padding {opad} must be non-negative")
    if any(op_ >= max(s, d) for op_, s, d in zip(opad, stride, dilation)):
        raise ValueError(f"{op}: output_padding {opad} must be smaller than either stride {stride} or "
                         f"dilation {dilation}")
    if nd == 1:
        x, w = x[:, :, None, :], w[:, :, None, :]
        stride, dilation, pads, opad = (1,) + stride, (1,) + dilation, (0,) + pads, (0,) + opad
    n, c, h, wd = x.shape
    cin, og, kh, kw = w.shape
    o = og * groups
    if c != cin:
        raise ValueError(f"{op}: expected input with {cin} channels (weight {tuple(weight.shape)}), "
                         f"got input of shape {tuple(input.shape)}")
    if cin % groups:
        raise ValueError(f"{op}: in_channels {cin} is not divisible by groups={groups}")
    if bias is not None and tuple(bias.shape) != (o,):
        raise ValueError(f"{op}: bias of shape {tuple(bias.shape)} does not match out_channels {o}")
    (sh, sw), (dh, dw) = stride, dilation
    # The full (uncropped) output, then the crop [p, p + size) with output_padding extra at the end.
    hf, wf = (h - 1) * sh + dh * (kh - 1) + 1, (wd - 1) * sw + dw * (kw - 1) + 1
    ho, wo = hf - 2 * pads[0] + opad[0], wf - 2 * pads[1] + opad[1]
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: output size ({ho}, {wo}) is too small for input of shape {tuple(input.shape)} "
                         f"with padding {pads}")
    hb, wb = max(hf, pads[0] + ho), max(wf, pads[1] + wo)
    k, in_hw, hw = (kh, kw), (h, wd), h * wd
    xp = array_module(x)
    w5 = w.reshape(groups, cin // groups, og, kh, kw)
    xrows = _nhwc_rows(x)
    chunks = _chunks(n, hw * kh * kw * o * x.itemsize)
    # scatter each input pixel's patch x @ W into the full output, tap by tap, then crop the padding
    wtaps = xp.ascontiguousarray(w5.transpose(3, 4, 0, 1, 2))  # (kh, kw, G, Cg, Og)
    full = xp.zeros((n, hb, wb, o), dtype=np.result_type(x.dtype, w.dtype))
    for s, e in chunks:
        _col2im(_group_major(xrows[s * hw:e * hw], groups), wtaps, full[s:e], stride, dilation, in_hw)
    out = xp.ascontiguousarray(full[:, pads[0]:pads[0] + ho, pads[1]:pads[1] + wo])
    if bias is not None:
        out += bias.data
    out = out.transpose(0, 3, 1, 2)
    need_x, need_w, need_b = input.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad
    if not need_w:
        xrows = None

    def backward(g):
        if unbatched:
            g = g[None]
        if nd == 1:
            g = g[:, :, None, :]
        gb = _bias_grad(_nhwc_rows(g)) if need_b else None
        # the output gradient read through the forward's patches: a forward convolution of g
        gimg = _nhwc_padded(g, (pads[0], hb - pads[0] - ho, pads[1], wb - pads[1] - wo))
        gx = xp.empty((n * hw, c), dtype=g.dtype) if need_x else None
        gw = xp.zeros((groups, cin // groups, kh * kw * og), dtype=g.dtype) if need_w else None
        wm = xp.ascontiguousarray(w5.transpose(0, 3, 4, 2, 1)).reshape(groups, kh * kw * og, cin // groups)
        gcols = None
        for s, e in chunks:
            gcols = _im2col(gimg[s:e], k, stride, dilation, in_hw, groups, gcols)
            gc = gcols.reshape(groups, (e - s) * hw, -1)  # (G, pixels, kh*kw*Og)
            if need_x:  # dx = gcols Wᵀ
                _gemm(gc, wm, gx[s * hw:e * hw])
            if need_w:  # dW = xᵀ gcols
                gw += np.matmul(_group_major(xrows[s * hw:e * hw], groups).transpose(0, 2, 1), gc)
        if need_x:
            gx = gx.reshape(n, h, wd, c).transpose(0, 3, 1, 2)
            gx = gx[:, :, 0, :] if nd == 1 else gx
            gx = gx[0] if unbatched else gx
        if need_w:
            gw = gw.reshape(groups, cin // groups, kh, kw, og).transpose(0, 1, 4, 2, 3).reshape(cin, og, kh, kw)
            gw = gw[:, :, 0, :] if nd == 1 else gw
        return (gx, gw) + ((gb,) if bias is not None else ())
    if nd == 1:
        out = out[:, :, 0, :]
    if unbatched:
        out = out[0]
    return _result(out, (input, weight) + ((bias,) if bias is not None else ()), backward)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The transposed 2-D convolution (the gradient of conv2d with respect to its input), with an
    (in_channels, out_channels/groups, kH, kW) weight, as PyTorch's.

    >>> import tidu as td
    >>> td.conv_transpose2d(td.ones(1, 1, 2, 2), td.ones(1, 1, 2, 2), stride=2).shape
    (1, 1, 4, 4)
    """
    return _conv_transpose("conv_transpose2d", input, weight, bias, stride, padding, output_padding, groups,
                           dilation, 2)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The transposed 1-D convolution, with an (in_channels, out_channels/groups, kL) weight."""
    return _conv_transpose("conv_transpose1d", input, weight, bias, stride, padding, output_padding, groups,
                           dilation, 1)
