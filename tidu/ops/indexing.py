"""Indexing: ``x[...]``, gather, index_select, masked_fill, one_hot, embedding lookup."""
import numpy as np

from ..tensor import Tensor, _result

__all__ = ["getitem", "gather", "index_select", "masked_fill", "one_hot", "embedding"]


def _array_index(index):
    """Turn Tensors inside an index into arrays, and check that array indices are integers or bools."""
    if isinstance(index, tuple):
        return tuple(_array_index(i) for i in index)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, list):
        index = np.asarray(index)
    if isinstance(index, np.ndarray) and index.dtype.kind not in "iub":
        raise IndexError(f"index: tensors used as indices must be integer or bool, got {index.dtype}")
    return index


def _is_basic(index):
    """Only ints, slices, None and Ellipsis: each element is picked at most once."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in items)


def getitem(a, index):
    x = a.data
    index = _array_index(index)
    try:
        out = x[index]
    except IndexError as e:
        raise IndexError(f"index: {e} (tensor of shape {tuple(x.shape)})") from None
    if _is_basic(index):
        def backward(g):
            gx = np.zeros(x.shape, dtype=g.dtype)
            gx[index] = g
            return (gx,)
    else:
        def backward(g):  # integer arrays may repeat an element: accumulate
            gx = np.zeros(x.shape, dtype=g.dtype)
            np.add.at(gx, index, g)
            return (gx,)
    return _result(out if isinstance(out, np.ndarray) else np.asarray(out), (a,), backward)


def _index_array(op, index):
    idx = index.data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor (int64), got {idx.dtype}")
    return idx


def gather(a, dim, index):
    x = a.data
    idx = _index_array("gather", index)
    if idx.ndim != x.ndim:
        raise ValueError(f"gather: index has {idx.ndim} dimensions but input has {x.ndim} "
                         f"(input {tuple(x.shape)}, index {tuple(idx.shape)})")
    axis = dim % x.ndim
    if idx.size and (idx.min() < -x.shape[axis] or idx.max() >= x.shape[axis]):
        raise IndexError(f"gather: index values must lie in [0, {x.shape[axis]}) along dim {dim}, "
                         f"got {idx.min()}..{idx.max()}")
    # take_along_axis broadcasts; PyTorch requires index.size(d) <= input.size(d) for d != dim
    sub = tuple(slice(0, n) if d != axis else slice(None) for d, n in enumerate(idx.shape))
    out = np.take_along_axis(x[sub], idx, axis=axis)

    def backward(g):  # scatter-add back to the gathered positions
        gx = np.zeros(x.shape, dtype=g.dtype)
        grid = list(np.indices(idx.shape, sparse=True))
        grid[axis] = idx
        np.add.at(gx, tuple(grid), g)
        return (gx,)
    return _result(out, (a,), backward)


def index_select(a, dim, index):
    x = a.data
    idx = _index_array("index_select", index)
    if idx.ndim > 1:
        raise ValueError(f"index_select: index must be 1-D, got shape {tuple(idx.shape)}")
    axis = dim % x.ndim
    if idx.size and (idx.min() < -x.shape[axis] or idx.max() >= x.shape[axis]):
        raise IndexError(f"index_select: index values must lie in [0, {x.shape[axis]}) for dim {dim}, "
                         f"got {idx.min()}..{idx.max()}")

    def backward(g):
        gx = np.zeros(x.shape, dtype=g.dtype)
        np.add.at(gx, (slice(None),) * axis + (idx,), g)
        return (gx,)
    return _result(np.take(x, idx, axis=axis), (a,), backward)


def masked_fill(a, mask, value):
    x = a.data
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be a bool tensor, got {m.dtype}")
    v = value.data if isinstance(value, Tensor) else value
    try:
        out = np.where(m, np.asarray(v, dtype=x.dtype), x)
    except ValueError:
        raise ValueError(f"masked_fill: mask of shape {tuple(m.shape)} does not broadcast to "
                         f"input of shape {tuple(x.shape)}") from None
    if out.shape != x.shape:
        raise ValueError(f"masked_fill: mask of shape {tuple(m.shape)} would enlarge input of shape {tuple(x.shape)}")
    from ..autograd import unbroadcast
    return _result(out, (a,), lambda g: (unbroadcast(np.where(m, 0, g), x.shape),))  # filled cells: no gradient


def one_hot(tensor, num_classes=-1):
    idx = _index_array("one_hot", tensor)
    if idx.size and idx.min() < 0:
        raise ValueError(f"one_hot: class values must be non-negative, got {idx.min()}")
    if num_classes < 0:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    elif idx.size and idx.max() >= num_classes:
        raise ValueError(f"one_hot: class value {idx.max()} is out of range for num_classes={num_classes}")
    out = np.zeros(idx.shape + (num_classes,), dtype=np.int64)
    np.put_along_axis(out, idx[..., None], 1, axis=-1)
    return Tensor(out)


def embedding(input, weight, padding_idx=None):
    """Rows of ``weight`` picked by integer ``input``; the gradient adds up per row."""
    idx = _index_array("embedding", input)
    w = weight.data
    n = w.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexError(f"embedding: index {bad} is out of range for a table of {n} rows "
                         f"(valid ids are 0..{n - 1})")
    out = w[idx]

    def backward(g):
        gw = np.zeros(w.shape, dtype=g.dtype)
        np.add.at(gw, idx.reshape(-1), g.reshape(-1, w.shape[1]))
        if padding_idx is not None:
            gw[padding_idx] = 0
        return (gw,)
    return _result(out, (weight,), backward)
