"""Shape ops: the data is a view where NumPy allows; the gradient is the inverse movement."""
import numpy as np

from ..tensor import Tensor, _result

__all__ = ["reshape", "view", "flatten", "transpose", "permute", "swapaxes", "squeeze", "unsqueeze",
           "expand", "expand_as", "broadcast_to", "cat", "concatenate", "stack", "split", "chunk", "pad",
           "contiguous", "repeat", "flip", "t"]


def _sizes(args):
    """Accept f(2, 3) and f((2, 3)) alike."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def _dim(op, d, ndim):
    if not -ndim <= d < ndim:
        raise IndexError(f"{op}: dim {d} is out of range for {ndim} dimensions (expected {-ndim} to {ndim - 1})")
    return d % ndim


def reshape(a, *shape):
    shape = _sizes(shape)
    x = a.data
    try:
        out = x.reshape(shape)
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} ({x.size} elements) "
                         f"into {shape}") from None
    return _result(out, (a,), lambda g: (g.reshape(x.shape),))


view = reshape


def flatten(a, start_dim=0, end_dim=-1):
    shape = a.data.shape
    if not shape:
        return reshape(a, 1)
    s, e = _dim("flatten", start_dim, len(shape)), _dim("flatten", end_dim, len(shape))
    n = 1
    for d in shape[s:e + 1]:
        n *= d
    return reshape(a, shape[:s] + (n,) + shape[e + 1:])


def transpose(a, dim0, dim1):
    nd = a.data.ndim
    d0, d1 = _dim("transpose", dim0, nd), _dim("transpose", dim1, nd)
    return _result(np.swapaxes(a.data, d0, d1), (a,), lambda g: (np.swapaxes(g, d0, d1),))


swapaxes = transpose


def t(a):
    if a.data.ndim > 2:
        raise ValueError(f"t: expects a tensor of at most 2 dimensions, got shape {tuple(a.shape)}; use transpose")
    return a if a.data.ndim < 2 else transpose(a, 0, 1)


def permute(a, *dims):
    dims = _sizes(dims)
    nd = a.data.ndim
    if sorted(d % nd for d in dims) != list(range(nd)) or len(dims) != nd:
        raise ValueError(f"permute: dims {dims} are not a permutation of the {nd} dimensions of shape {tuple(a.shape)}")
    inverse = np.argsort([d % nd for d in dims])
    return _result(np.transpose(a.data, dims), (a,), lambda g: (np.transpose(g, inverse),))


def squeeze(a, dim=None):
    x = a.data
    if dim is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        axes = tuple(d for d in (_dim("squeeze", d, max(x.ndim, 1)) for d in dims) if x.ndim and x.shape[d] == 1)
    return _result(x.squeeze(axes) if axes else x, (a,), lambda g: (g.reshape(x.shape),))


def unsqueeze(a, dim):
    x = a.data
    d = _dim("unsqueeze", dim, x.ndim + 1)
    return _result(np.expand_dims(x, d), (a,), lambda g: (g.reshape(x.shape),))


def expand(a, *sizes):
    sizes = _sizes(sizes)
    x = a.data
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {tuple(x.shape)} to fewer dimensions {sizes}")
    target = tuple(x.shape[i - lead] if (n == -1 and i >= lead) else n for i, n in enumerate(sizes))
    return broadcast_to(a, target, op="expand")


def broadcast_to(a, shape, op="broadcast_to"):
    from ..autograd import unbroadcast
    x = a.data
    shape = tuple(shape)
    try:
        out = np.broadcast_to(x, shape)
    except ValueError:
        raise ValueError(f"{op}: shape {tuple(x.shape)} cannot be expanded to {shape} "
                         "(only size-1 dimensions expand)") from None
    return _result(out, (a,), lambda g: (unbroadcast(g, x.shape),))


def expand_as(a, other):
    return broadcast_to(a, other.shape, op="expand_as")


def contiguous(a):
    return a


def cat(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    arrays = [t.data for t in tensors]
    nd = arrays[0].ndim
    d = _dim("cat", dim, nd)
    for i, x in enumerate(arrays):
        if x.ndim != nd or x.shape[:d] + x.shape[d + 1:] != arrays[0].shape[:d] + arrays[0].shape[d + 1:]:
            raise ValueError(f"cat: tensor {i} has shape {tuple(x.shape)}, but tensor 0 has shape "
                             f"{tuple(arrays[0].shape)}; all dimensions except dim {d} must match")
    bounds = np.cumsum([x.shape[d] for x in arrays])[:-1]
    return _result(np.concatenate(arrays, axis=d), tuple(tensors),
                   lambda g: tuple(np.split(g, bounds, axis=d)))


concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    shapes = {t.data.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    d = _dim("stack", dim, tensors[0].data.ndim + 1)
    out = np.stack([t.data for t in tensors], axis=d)
    return _result(out, tuple(tensors), lambda g: tuple(np.moveaxis(g, d, 0)))


def split(a, split_size_or_sections, dim=0):
    """Pieces of size ``split_size`` (the last may be smaller), or of the listed sizes."""
    x = a.data
    d = _dim("split", dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} sum to {sum(sizes)}, but dim {d} has size {n}")
    pieces, start = [], 0
    for size in sizes:
        index = (slice(None),) * d + (slice(start, start + size),)
        pieces.append(a[index])
        start += size
    return tuple(pieces)


def chunk(a, chunks, dim=0):
    n = a.data.shape[_dim("chunk", dim, a.data.ndim)]
    size = -(-n // chunks)
    return split(a, max(size, 1), dim)


def pad(a, pad, mode="constant", value=0.0):
    """PyTorch's pad: ``pad`` lists (before, after) pairs starting from the LAST dimension."""
    x = a.data
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: pad {tuple(pad)} must have an even length of at most 2 × {x.ndim}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if any(lo < 0 or hi < 0 for lo, hi in widths):
        raise ValueError(f"pad: negative padding {tuple(pad)} is not supported")
    modes = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    if mode not in modes:
        raise ValueError(f"pad: mode must be one of {sorted(modes)}, got {mode!r}")
    kwargs = {"constant_values": value} if mode == "constant" else {}
    out = np.pad(x, widths, mode=modes[mode], **kwargs)
    if mode == "constant":
        inner = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return _result(out, (a,), lambda g: (g[inner],))  # padding carries no gradient

    def backward(g):  # reflect / replicate / circular: accumulate each padded cell onto its source
        index = np.arange(x.size).reshape(x.shape)
        src = np.pad(index, widths, mode=modes[mode])
        gx = np.zeros(x.size, dtype=g.dtype)
        np.add.at(gx, src.ravel(), g.ravel())
        return (gx.reshape(x.shape),)
    return _result(out, (a,), backward)


def repeat(a, *sizes):
    sizes = _sizes(sizes)
    x = a.data
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: {len(sizes)} repeat counts for a tensor of {x.ndim} dimensions")
    xs = x.reshape((1,) * (len(sizes) - x.ndim) + x.shape)
    out = np.tile(xs, sizes)

    def backward(g):  # sum the copies: view each dim as (repeats, size) and add over repeats
        split_shape = []
        for r, n in zip(sizes, xs.shape):
            split_shape += [r, n]
        return (g.reshape(split_shape).sum(axis=tuple(range(0, 2 * len(sizes), 2))).reshape(x.shape),)
    return _result(out, (a,), backward)


def flip(a, dims):
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return _result(np.flip(a.data, dims), (a,), lambda g: (np.flip(g, dims),))
