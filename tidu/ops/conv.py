"""Convolution lowered to matrix multiplies: conv1d, conv2d, conv_transpose2d.

The layout at the API is PyTorch's (N, C, H, W); inside, images are NHWC so that one im2col row
(kh, kw, C) is a run of whole channel vectors and the product with the weight is a single GEMM:

    cols[(n, ho, wo), (i, j, c)] = x_padded[n, ho*sh + i*dh, wo*sw + j*dw, c]     (strided view, one copy)
    out[(n, ho, wo), o]           = cols @ weight[(i, j, c), o]

The output is returned as an (N, C, H, W) *view* of the NHWC result, so the next elementwise op,
pool or convolution reads it in NHWC order with no transpose copy. The backward is the same lowering
read the other way: grad_weight = colsᵀ @ g, grad_cols = g @ weightᵀ, and col2im adds grad_cols back
into the image one kernel tap at a time (kh*kw whole-image adds; no loop over pixels).
conv_transpose2d is exactly that backward used as a forward, and its backward is a forward conv.
Groups are a batch dimension of the matrix multiplies.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

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
    buf = np.empty((n, pt + h + pb, pl + w + pr, c), dtype=x.dtype)
    buf[:, :pt] = 0  # zero only the border: the interior is overwritten next
    buf[:, pt + h:] = 0
    buf[:, pt:pt + h, :pl] = 0
    buf[:, pt:pt + h, pl + w:] = 0
    buf[:, pt:pt + h, pl:pl + w] = t
    return buf


def _im2col(xp, kernel, stride, dilation, out_hw, groups):
    """Patches of the NHWC image ``xp`` as a (G, N*Ho*Wo, kh*kw*Cg) matrix (one strided copy)."""
    n, _, _, c = xp.shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    s0, s1, s2, s3 = xp.strides
    g, cg = groups, c // groups
    win = as_strided(xp, (n, ho, wo, kh, kw, g, cg), (s0, s1 * sh, s2 * sw, s1 * dh, s2 * dw, s3 * cg, s3),
                     writeable=False)
    cols = np.empty((g, n, ho, wo, kh, kw, cg), dtype=xp.dtype)
    np.copyto(cols, win.transpose(5, 0, 1, 2, 3, 4, 6))
    return cols.reshape(g, n * ho * wo, kh * kw * cg)


def _col2im(cols, image_shape, kernel, stride, dilation, out_hw):
    """The adjoint of _im2col: add the (G, N*Ho*Wo, kh*kw*Cg) patch matrix back into an NHWC image of
    ``image_shape`` (N, Hp, Wp, C), one kernel tap at a time."""
    n, hp, wp, c = image_shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    g = cols.shape[0]
    patches = cols.reshape(g, n, ho, wo, kh, kw, c // g).transpose(1, 2, 3, 4, 5, 0, 6)
    img = np.zeros((n, hp, wp, g, c // g), dtype=cols.dtype)
    disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1  # taps never hit the same pixel
    for i in range(kh):
        for j in range(kw):
            dst = img[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            if disjoint:
                dst[...] = patches[:, :, :, i, j]
            else:
                dst += patches[:, :, :, i, j]
    return img.reshape(n, hp, wp, c)


def _weight_matrix(w, groups):
    """(O, Cg, kh, kw) → (G, kh*kw*Cg, Og): rows ordered like an im2col row."""
    o, cg, kh, kw = w.shape
    return np.ascontiguousarray(
        w.reshape(groups, o // groups, cg, kh, kw).transpose(0, 3, 4, 2, 1)).reshape(groups, kh * kw * cg, o // groups)


def _gemm(a, b):
    """(G, M, K) @ (G, K, P) → (M, G, P): group-major operands, pixel-major result."""
    if a.shape[0] == 1:
        return (a[0] @ b[0])[:, None, :]
    out = np.empty((a.shape[1], a.shape[0], b.shape[2]), dtype=np.result_type(a, b))
    np.matmul(a, b, out=out.transpose(1, 0, 2))
    return out


def _group_major(m, groups):
    """(M, C) pixel-major rows → (G, M, C/G)."""
    return m.reshape(m.shape[0], groups, -1).transpose(1, 0, 2)


def _conv2d_arrays(x, w, b, stride, pad, dilation, groups, need_x, need_w):
    """Forward of a validated 2-D convolution on arrays. Returns the (N, O, Ho, Wo) output (a view of
    an NHWC array) and ``backward(g) -> (grad_x, grad_w)``."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    hp, wp = h + pad[0] + pad[1], wd + pad[2] + pad[3]
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    k, out_hw = (kh, kw), (ho, wo)
    cols = _im2col(_nhwc_padded(x, pad), k, stride, dilation, out_hw, groups)
    wm = _weight_matrix(w, groups)
    out = _gemm(cols, wm).reshape(n, ho, wo, o)
    if b is not None:
        out += b
    if not need_w:
        cols = None  # keep the patch matrix only when the weight gradient needs it

    def backward(g):
        gm = _group_major(np.ascontiguousarray(g.transpose(0, 2, 3, 1)).reshape(n * ho * wo, o), groups)
        gx = gw = None
        if need_w:  # dW = colsᵀ g
            gw = np.matmul(cols.transpose(0, 2, 1), gm)
            gw = gw.reshape(groups, kh, kw, cg, o // groups).transpose(0, 4, 3, 1, 2).reshape(o, cg, kh, kw)
        if need_x:  # dcols = g Wᵀ, then the adjoint of im2col; crop the padding away
            gcols = np.matmul(gm, wm.transpose(0, 2, 1))
            gxp = _col2im(gcols, (n, hp, wp, c), k, stride, dilation, out_hw)
            gx = gxp[:, pad[0]:pad[0] + h, pad[2]:pad[2] + wd].transpose(0, 3, 1, 2)
        return gx, gw
    return out.transpose(0, 3, 1, 2), backward


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
    out, grads = _conv2d_arrays(x, w, None if bias is None else bias.data, stride, pad, dilation, groups,
                                input.requires_grad, weight.requires_grad)
    if nd == 1:
        out = out[:, :, 0, :]
    if unbatched:
        out = out[0]

    def backward(g):
        if unbatched:
            g = g[None]
        if nd == 1:
            g = g[:, :, None, :]
        gx, gw = grads(g)
        gb = g.sum(axis=(0, 2, 3)) if bias is not None and bias.requires_grad else None  # d out / d b = 1
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
    k, in_hw = (kh, kw), (h, wd)
    # wm[g, c, (i, j, o)]: the weight as a matrix from input channels to the output patch of a pixel
    wm = np.ascontiguousarray(w.reshape(groups, cin // groups, og, kh, kw).transpose(0, 1, 3, 4, 2)) \
        .reshape(groups, cin // groups, kh * kw * og)
    xm = _group_major(np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(n * h * wd, c), groups)
    full = _col2im(np.matmul(xm, wm), (n, hb, wb, o), k, stride, dilation, in_hw)
    out = np.ascontiguousarray(full[:, pads[0]:pads[0] + ho, pads[1]:pads[1] + wo])
    if bias is not None:
        out += bias.data
    out = out.transpose(0, 3, 1, 2)
    need_x, need_w = input.requires_grad, weight.requires_grad
    if not need_w:
        xm = None

    def backward(g):
        if unbatched:
            g = g[None]
        if nd == 1:
            g = g[:, :, None, :]
        gb = g.sum(axis=(0, 2, 3)) if bias is not None and bias.requires_grad else None
        gpad = (pads[0], hb - pads[0] - ho, pads[1], wb - pads[1] - wo)
        # the output gradient seen through the forward's patches: a forward convolution
        gcols = _im2col(_nhwc_padded(g, gpad), k, stride, dilation, in_hw, groups)
        gx = gw = None
        if need_x:
            gx = _gemm(gcols, wm.transpose(0, 2, 1)).reshape(n, h, wd, c).transpose(0, 3, 1, 2)
            gx = gx[:, :, 0, :] if nd == 1 else gx
            gx = gx[0] if unbatched else gx
        if need_w:
            gw = np.matmul(xm.transpose(0, 2, 1), gcols).reshape(groups, cin // groups, kh, kw, og)
            gw = gw.transpose(0, 1, 4, 2, 3).reshape(cin, og, kh, kw)
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
