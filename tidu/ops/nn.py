"""Neural-network ops with fused, numerically stable backward: softmax, log_softmax, dropout, layer_norm.

NumPy cannot fuse, so every elementwise pass reads and writes whole arrays; these kernels keep the passes
few and the data they touch small. Row sums and means are matrix-vector products with a vector of ones
(or 1/D), done by BLAS in one read; rows go in blocks of about _BLOCK elements, so that a block's later
passes find it in cache; and the rows are split over the BLAS threads (``backend.run_parallel``), since
numpy's elementwise passes use one core each.
"""
import math

import numpy as np

from .. import backend
from ..tensor import _result

__all__ = ["softmax", "log_softmax", "dropout", "layer_norm"]

_BLOCK = 1 << 17            # elements per row block
_MIN_PARALLEL = 1 << 17     # fewer elements than this run in the calling thread alone


def _over_rows(fn, n, d):
    """``fn(start, end)`` over [0, n) rows of D elements, split over the BLAS threads when worth it."""
    if n * d < _MIN_PARALLEL:
        return [fn(0, n)]
    return backend.run_parallel(lambda p: fn(*p), backend.parallel_parts(n))


def _rows_of(x):
    """``x`` as a C-contiguous (rows, D) array over its last axis."""
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


# --- softmax and log_softmax ------------------------------------------------------------------------
# Over the last axis, each row is shifted by the maximum of its block of rows (one fast reduction and a
# scalar to subtract, instead of a reduction and a broadcast per row). A row whose own maximum lies far
# below its block's (its exps sum under _SM_TINY, so they would lose precision) and a row that is not
# finite are redone with their own maximum. Other axes, and small arrays, take the plain forms.
_SM_TINY = 2.0 ** -30
_SM_SMALL = 1 << 15   # fewer elements than this take the plain forms: fewer NumPy calls


def _exp_rows(x2, out, sums, shifted=None):
    """exp(x - m) into ``out``, with m the maximum of each block of rows (x - m into ``shifted`` too, if
    given), and each row's sum into ``sums``. Returns the rows that need their own maximum."""
    n, d = x2.shape
    ones = np.ones(d, x2.dtype)
    rows = max(1, _BLOCK // d)

    def part(lo, hi):
        for s in range(lo, hi, rows):
            e = min(hi, s + rows)
            xb, ob = x2[s:e], out[s:e]
            tb = ob if shifted is None else shifted[s:e]
            np.subtract(xb, xb.max(), out=tb)
            np.exp(tb, out=ob)
            np.matmul(ob, ones, out=sums[s:e])
    _over_rows(part, n, d)
    return np.flatnonzero(~(sums >= _SM_TINY))


def _shifted_exps(x2):
    """x - m, exp(x - m) and the rows' sums of exps as an (M, 1) column, for the rows of ``x2`` (what
    cross_entropy needs): m is the maximum of a block of rows, or a row's own where that lies far below."""
    if x2.size < _SM_SMALL:
        shifted = x2 - x2.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return shifted, e, e.sum(axis=1, keepdims=True)
    shifted, e = np.empty_like(x2), np.empty_like(x2)
    s = np.empty(len(x2), x2.dtype)
    redo = _exp_rows(x2, e, s, shifted=shifted)
    if redo.size:
        xr = x2[redo]
        shifted[redo] = xr = xr - xr.max(axis=1, keepdims=True)
        e[redo] = er = np.exp(xr)
        s[redo] = er.sum(axis=1)
    return shifted, e, s[:, None]


def _softmax_array(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _log_softmax_array(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _rows_kernel(x, dim):
    """Whether softmax over ``dim`` takes the rows kernel: the last axis of a large enough array."""
    return x.ndim > 0 and x.size >= _SM_SMALL and dim in (-1, x.ndim - 1) and x.dtype.kind == "f"


def softmax(a, dim=-1):
    """exp(x) / sum(exp(x)) over ``dim``, stable for any magnitude of x.

    >>> import tidu as td
    >>> td.softmax(td.tensor([[0.0, 1000.0, 1000.0]]), -1).numpy()
    array([[0. , 0.5, 0.5]], dtype=float32)
    """
    x = a.data
    if x.size == 0:  # nothing to normalize (and NumPy's max has no identity)
        return _result(np.exp(x), (a,), lambda g: (g,))
    if not _rows_kernel(x, dim):
        y = _softmax_array(x, dim)
        # dx = y (g - sum(g y))
        return _result(y, (a,), lambda g: (y * (g - (g * y).sum(axis=dim, keepdims=True)),))
    x2 = _rows_of(x)
    n, d = x2.shape
    y = np.empty(x.shape, x2.dtype)
    y2 = y.reshape(n, d)
    sums = np.empty(n, x2.dtype)
    redo = _exp_rows(x2, y2, sums)
    np.maximum(sums, _SM_TINY, out=sums)              # (the rows redone may have summed to 0)
    np.reciprocal(sums, out=sums)
    _over_rows(lambda lo, hi: np.multiply(y2[lo:hi], sums[lo:hi, None], out=y2[lo:hi]), n, d)
    if redo.size:
        y2[redo] = _softmax_array(x2[redo], -1)

    def backward(g):
        g2 = _rows_of(g)
        gx = np.empty(y.shape, y.dtype)
        gx2 = gx.reshape(n, d)
        ones = np.ones(d, y.dtype)
        rows = max(1, _BLOCK // d)

        def part(lo, hi):                             # dx = g y - y sum(g y)
            gy = np.empty((min(rows, hi - lo), d), y.dtype)
            for s in range(lo, hi, rows):
                e = min(hi, s + rows)
                yb, xb, gyb = y2[s:e], gx2[s:e], gy[:e - s]
                np.multiply(g2[s:e], yb, out=gyb)
                np.multiply(yb, (gyb @ ones)[:, None], out=xb)
                np.subtract(gyb, xb, out=xb)
        _over_rows(part, n, d)
        return (gx,)
    return _result(y, (a,), backward)


def log_softmax(a, dim=-1):
    """x - log(sum(exp(x))) over ``dim``, computed stably in one op.

    >>> import tidu as td
    >>> td.log_softmax(td.tensor([[0.0, 0.0]]), -1).numpy().round(4)
    array([[-0.6931, -0.6931]], dtype=float32)
    """
    x = a.data
    if x.size == 0:
        return _result(np.exp(x), (a,), lambda g: (g,))
    if not _rows_kernel(x, dim):
        out = _log_softmax_array(x, dim)
        # dx = g - softmax sum(g)
        return _result(out, (a,), lambda g: (g - np.exp(out) * g.sum(axis=dim, keepdims=True),))
    x2 = _rows_of(x)
    n, d = x2.shape
    out = np.empty(x.shape, x2.dtype)
    out2 = out.reshape(n, d)
    e = np.empty_like(x2)                             # kept for backward: softmax = e / sum(e)
    sums = np.empty(n, x2.dtype)
    redo = _exp_rows(x2, e, sums, shifted=out2)
    lse = np.log(np.maximum(sums, _SM_TINY))
    _over_rows(lambda lo, hi: np.subtract(out2[lo:hi], lse[lo:hi, None], out=out2[lo:hi]), n, d)
    if redo.size:
        out2[redo] = _log_softmax_array(x2[redo], -1)
        e[redo] = np.exp(out2[redo])
        sums[redo] = 1

    def backward(g):
        g2 = _rows_of(g)
        gx = np.empty(out.shape, out.dtype)
        gx2 = gx.reshape(n, d)
        ones = np.ones(d, g2.dtype)
        rows = max(1, _BLOCK // d)

        def part(lo, hi):                             # dx = g - softmax sum(g)
            for s in range(lo, hi, rows):
                t = slice(s, min(hi, s + rows))
                c = g2[t] @ ones
                c /= sums[t]
                np.multiply(e[t], c[:, None], out=gx2[t])
                np.subtract(g2[t], gx2[t], out=gx2[t])
        _over_rows(part, n, d)
        return (gx,)
    return _result(out, (a,), backward)


def dropout(a, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (inverted dropout)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return a
    x = a.data
    if p == 1.0:
        mask = np.zeros_like(x)
    else:
        mask = (backend.rng().random(x.shape, dtype=np.float32) >= p).astype(x.dtype)
        mask *= 1.0 / (1.0 - p)
    return _result(x * mask, (a,), lambda g: (g * mask,))


# --- layer_norm -------------------------------------------------------------------------------------
# Arrays up to _LN_SMALL elements take whole-array passes (fewest NumPy calls). Larger ones go by blocks:
# - forward takes mean and mean square from x in one read, then makes each output row as one combination
#   of three rows, rstd (x w) - rstd mean w + b: a batched matrix product over the rows does that in one
#   pass, where broadcasting the per-row values would take two slow passes and two more for w and b;
# - E[x²] - mean² is exact enough while |mean| / std stays under _LN_FAR; the rows beyond it
#   (x = 1e4 + noise) are redone from centred values, with a second pass of the mean;
# - weight and bias are tiled over k rows, so numpy's inner loop runs over k·D elements, not D;
# - backward recomputes x - mean (one pass in cache) rather than keeping x̂, as PyTorch does: it saves
#   writing and re-reading a whole array, and the memory.
_LN_TILE = 1 << 12    # elements per tile of weight or bias (k rows of D)
_LN_FAR = 4           # |mean| / std beyond which a row is normalized from its centred values
_LN_SMALL = 1 << 16   # up to this many elements, whole-array passes cost fewer calls than blocks


def _ln_rows(d):
    """Rows per block (a multiple of k) and k, the rows per tile of weight and bias."""
    rows = max(1, _BLOCK // d)
    k = max(1, min(rows, _LN_TILE // d))
    return max(k, rows - rows % k), k


def _tile(v, k):
    if v is None:
        return None
    t = np.empty((k, v.size), v.dtype)
    t[...] = v
    return t


def _rowwise(ufunc, a, tile, out):
    """``ufunc(a, v, out=out)`` for an (r, D) block and the (D,) vector v tiled in ``tile`` (k, D)."""
    r, d = a.shape
    k = tile.shape[0]
    q = r - r % k
    if q:
        ufunc(a[:q].reshape(-1, k, d), tile, out=out[:q].reshape(-1, k, d))
    if q < r:
        ufunc(a[q:], tile[0], out=out[q:])


def _centred(xb, mb, u, out=None):
    """x - mean, then minus the mean of that: the rounding error of a large mean, removed."""
    xc = np.subtract(xb, mb[:, None], out=out)
    xc -= (xc @ u)[:, None]
    return xc


def _layer_norm_forward(x, w, b, eps, out):
    """Normalize the rows of the C-contiguous (N, D) array ``x`` into ``out``, then scale by ``w`` and
    shift by ``b`` (either may be None). Returns mean and 1/std per row, and the rows redone centred."""
    n, d = x.shape
    if n * d <= _LN_SMALL:
        return _layer_norm_forward_plain(x, w, b, eps, out)
    dt = x.dtype
    rows, k = _ln_rows(d)
    u = np.full(d, 1 / d, dt)
    wt = _tile(w, k)
    mean, rstd = np.empty(n, dt), np.empty(n, dt)

    def part(lo, hi):
        m = min(rows, hi - lo)
        stack = np.empty((3, m, d), dt)                # the rows combined: x w, w, b
        stack[1] = 1 if w is None else w
        stack[2] = 0 if b is None else b
        rows3 = stack.transpose(1, 0, 2)
        coef = np.empty((m, 1, 3), dt)                 # rstd, -rstd mean, 1
        coef[:, 0, 2] = 1
        for s in range(lo, hi, rows):
            e = min(hi, s + rows)
            xb, mb, rb, xw, ck = x[s:e], mean[s:e], rstd[s:e], stack[0, :e - s], coef[:e - s, 0]
            np.matmul(xb, u, out=mb)
            np.multiply(xb, xb, out=xw)
            np.matmul(xw, u, out=rb)                   # E[x²]
            np.multiply(mb, mb, out=ck[:, 0])
            rb -= ck[:, 0]
            np.maximum(rb, 0, out=rb)
            rb += eps
            np.sqrt(rb, out=rb)
            np.reciprocal(rb, out=rb)
            ck[:, 0] = rb
            np.multiply(mb, rb, out=ck[:, 1])
            np.negative(ck[:, 1], out=ck[:, 1])
            if wt is not None:
                _rowwise(np.multiply, xb, wt, xw)
            else:
                np.copyto(xw, xb)
            np.matmul(coef[:e - s], rows3[:e - s], out=out[s:e, None])
    _over_rows(part, n, d)
    far = np.flatnonzero(~(np.abs(mean) * rstd <= _LN_FAR))
    if far.size:
        xc = _centred(x[far], mean[far], u)
        rstd[far] = r = 1 / np.sqrt((xc * xc) @ u + eps)
        xc *= r[:, None]
        out[far] = (xc if w is None else xc * w) + (0 if b is None else b)
    return mean, rstd, far


def _layer_norm_backward(g, x, mean, rstd, far, w, gx, need_w, need_b):
    """Gradients of layer_norm from the (N, D) output gradient ``g``: the input's into ``gx`` (unless None),
    and those of weight and bias (returned when asked for). With x̂ = (x - mean) rstd and ĝ = g w:
    dx = rstd (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)),  dw = Σ g x̂,  db = Σ g  (the sums over rows).

    Row by row, dx = rstd ĝ - rstd³ mean(ĝ (x - mean)) (x - mean) - rstd mean(ĝ): one batched matrix
    product of the (1, 3) coefficients with the rows ĝ, x - mean and 1, as in forward."""
    n, d = g.shape
    if n * d <= _LN_SMALL:
        return _layer_norm_backward_plain(g, x, mean, rstd, far, w, gx, need_w, need_b)
    dt = g.dtype
    rows, k = _ln_rows(d)
    need_x = gx is not None
    wt = _tile(w, k) if need_x else None
    wd = np.full(d, 1 / d, dt) if w is None else w * dt.type(1 / d)  # ĝ's row mean: g @ wd
    u = np.full(d, 1 / d, dt)
    far_rows = None
    if far.size:
        far_rows = np.zeros(n, bool)
        far_rows[far] = True

    def part(lo, hi):
        m = min(rows, hi - lo)
        ones = np.ones(m, dt)
        stack = np.empty((3, m, d), dt)
        stack[2] = 1
        gh, xc = stack[0], stack[1]
        rows3 = stack.transpose(1, 0, 2)
        coef = np.empty((m, 1, 3), dt)
        c = np.empty((2, m), dt)
        gw = np.zeros(d, dt) if need_w else None
        gb = np.zeros(d, dt) if need_b else None
        for s in range(lo, hi, rows):
            e = min(hi, s + rows)
            r = e - s
            gk, rb, ck = g[s:e], rstd[s:e], c[:, :r]
            if need_b:
                gb += ones[:r] @ gk
            if not (need_x or need_w):
                continue
            if far_rows is not None and far_rows[s:e].any():
                xk = _centred(x[s:e], mean[s:e], u, out=xc[:r])
            else:
                xk = np.subtract(x[s:e], mean[s:e, None], out=xc[:r])
            pk = np.multiply(gk, xk, out=gh[:r])      # g (x - mean), until ĝ takes its place
            if need_w:
                gw += rb @ pk                         # Σ g x̂
            if not need_x:
                continue
            np.matmul(pk, wd, out=ck[0])              # mean(ĝ x̂) / rstd
            np.matmul(gk, wd, out=ck[1])              # mean(ĝ)
            ck *= rb
            ck[0] *= rb
            ck[0] *= rb
            np.negative(ck.T, out=coef[:r, 0, 1:])
            coef[:r, 0, 0] = rb
            if wt is not None:
                _rowwise(np.multiply, gk, wt, gh[:r])  # ĝ
            else:
                np.copyto(gh[:r], gk)
            np.matmul(coef[:r], rows3[:r], out=gx[s:e, None])
        return gw, gb
    parts = _over_rows(part, n, d)
    return (sum(p[0] for p in parts) if need_w else None), (sum(p[1] for p in parts) if need_b else None)


def _layer_norm_forward_plain(x, w, b, eps, out):
    """``_layer_norm_forward`` in whole-array passes: fewer NumPy calls, for arrays too small for more."""
    u = np.full(x.shape[1], 1 / x.shape[1], x.dtype)
    mean = x @ u
    xc = np.subtract(x, mean[:, None], out=out)
    rstd = (xc * xc) @ u
    rstd += eps
    np.reciprocal(np.sqrt(rstd, out=rstd), out=rstd)
    far = np.flatnonzero(~(np.abs(mean) * rstd <= _LN_FAR))
    if far.size:
        xc[far] = xf = _centred(x[far], mean[far], u)
        rstd[far] = 1 / np.sqrt((xf * xf) @ u + eps)
    xc *= rstd[:, None]
    if w is not None:
        xc *= w
    if b is not None:
        xc += b
    return mean, rstd, far


def _layer_norm_backward_plain(g, x, mean, rstd, far, w, gx, need_w, need_b):
    """``_layer_norm_backward`` in whole-array passes, for small arrays."""
    n, d = g.shape
    u = np.full(d, 1 / d, g.dtype)
    xc = x - mean[:, None]
    if far.size:
        xc[far] = _centred(x[far], mean[far], u)
    gb = np.ones(n, g.dtype) @ g if need_b else None
    p = g * xc
    gw = rstd @ p if need_w else None
    if gx is not None:
        wd = u if w is None else w * g.dtype.type(1 / d)
        c0 = p @ wd                                     # mean(ĝ x̂) / rstd
        c0 *= rstd * rstd * rstd
        c1 = g @ wd                                     # mean(ĝ)
        c1 *= rstd
        np.multiply(g, rstd[:, None], out=gx)
        if w is not None:
            gx *= w
        xc *= c0[:, None]
        gx -= xc
        gx -= c1[:, None]
    return gw, gb


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the trailing ``normalized_shape`` dims, then scale and shift (one fused op).

    >>> import tidu as td
    >>> td.layer_norm(td.tensor([[1.0, 2.0, 3.0]]), 3).numpy().round(4)
    array([[-1.2247,  0.    ,  1.2247]], dtype=float32)
    """
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    x = input.data
    k = len(normalized_shape)
    if x.shape[x.ndim - k:] != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {tuple(x.shape)} does not end with "
                         f"normalized_shape {normalized_shape}")
    parents = (input,) + tuple(p for p in (weight, bias) if p is not None)
    w = None if weight is None else weight.data.reshape(-1)
    b = None if bias is None else bias.data.reshape(-1)
    dt = np.result_type(x, *(a for a in (w, b) if a is not None))
    if dt.kind != "f":
        raise TypeError(f"layer_norm: input, weight and bias must be floating point, got {dt}")
    d = math.prod(normalized_shape)
    x2 = np.ascontiguousarray(x, dtype=dt).reshape(-1, d)
    w = None if w is None else np.ascontiguousarray(w, dtype=dt)
    b = None if b is None else np.ascontiguousarray(b, dtype=dt)
    out = np.empty(x.shape, dt)
    if out.size == 0:  # nothing to normalize: empty gradients, or zero ones for weight and bias
        return _result(out, parents, lambda g: tuple(np.zeros_like(p.data) for p in parents))
    mean, rstd, far = _layer_norm_forward(x2, w, b, eps, out.reshape(-1, d))

    def backward(g):
        need_w = weight is not None and weight.requires_grad
        need_b = bias is not None and bias.requires_grad
        gx = np.empty(x.shape, dt) if input.requires_grad else None  # filled through a 2-D view
        gw, gb = _layer_norm_backward(np.ascontiguousarray(g, dtype=dt).reshape(-1, d), x2, mean, rstd, far, w,
                                      None if gx is None else gx.reshape(-1, d), need_w, need_b)
        grads = (gx,)
        if weight is not None:
            grads += (gw.reshape(weight.data.shape).astype(weight.data.dtype, copy=False) if need_w else None,)
        if bias is not None:
            grads += (gb.reshape(bias.data.shape).astype(bias.data.dtype, copy=False) if need_b else None,)
        return grads
    return _result(out, parents, backward)
