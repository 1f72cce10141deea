"""Datasets: what a ``DataLoader`` reads from (PyTorch's ``torch.utils.data`` names).

A map-style dataset answers ``len(ds)`` and ``ds[i]``; an ``IterableDataset`` yields samples.
``TensorDataset`` also answers ``ds.get_batch(indices)`` with the whole batch from one fancy index
per array, which is the fast path the loader takes for tabular data.

>>> import numpy as np
>>> ds = TensorDataset(np.arange(6.0).reshape(3, 2), np.array([0, 1, 0]))
>>> len(ds), ds[1]
(3, (tensor([2., 3.]), tensor(1)))
>>> x, y = ds.get_batch(np.array([2, 0])); x.dtype, y.dtype   # float64 -> float32, ints -> int64
(dtype('float32'), dtype('int64'))
"""
import bisect

import numpy as np

from .. import backend
from ..tensor import Tensor, as_array

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "to_array"]


def to_array(data):
    """One array per input, cast once on entry (DESIGN.md): float64 -> float32, signed ints -> int64.

    Tensors keep their dtype (the user chose it); pandas objects and lists go through NumPy.
    """
    if isinstance(data, Tensor):
        return data.data
    if hasattr(data, "to_numpy") and not isinstance(data, np.ndarray):  # pandas Series / DataFrame
        data = data.to_numpy()
    if isinstance(data, np.ndarray) or backend.array_module(data) is not np:
        if data.dtype == np.float64:
            return data.astype(np.float32)
        if data.dtype.kind == "i" and data.dtype != np.int64:
            return data.astype(np.int64)
        if data.dtype == object:
            raise TypeError("TensorDataset: cannot use an array of Python objects (mixed or text values); "
                            "encode it to numbers first (e.g. with tidu.data.TabularPreprocessor)")
        return data
    return as_array(data)


class Dataset:
    """A map-style dataset: subclasses define ``__getitem__(index)`` and ``__len__()``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A dataset read as a stream: subclasses define ``__iter__()`` (and ``__len__`` if known).

    >>> class Squares(IterableDataset):
    ...     def __iter__(self):
    ...         return iter([float(i * i) for i in range(4)])
    >>> list(Squares())
    [0.0, 1.0, 4.0, 9.0]
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __add__(self, other):
        raise TypeError("IterableDataset does not support '+'; chain the iterators yourself")


class TensorDataset(Dataset):
    """Samples are rows of equally long arrays: ``ds[i] == (a[i], b[i], ...)``.

    Accepts Tensors, NumPy arrays, lists and pandas objects; NumPy float64 becomes float32 and
    signed integers int64, once, here.

    >>> TensorDataset(np.zeros((3, 2)), np.zeros(4))
    Traceback (most recent call last):
    ...
    ValueError: TensorDataset: all inputs need the same first dimension (number of samples); got sizes [3, 4]
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor or array")
        arrays = [to_array(t) for t in tensors]
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"TensorDataset: input {i} is a scalar; each input needs a first (sample) dimension")
        sizes = [a.shape[0] for a in arrays]
        if len(set(sizes)) != 1:
            raise ValueError("TensorDataset: all inputs need the same first dimension (number of samples); "
                             f"got sizes {sizes}")
        self.arrays = arrays

    @property
    def tensors(self):
        return tuple(Tensor(a) for a in self.arrays)

    def __len__(self):
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        return tuple(Tensor(np.asarray(a[index]) if a.ndim == 1 else a[index]) for a in self.arrays)

    def get_batch(self, indices):
        """The collated batch for an integer index array: one ``take`` per input, no Python loop."""
        return tuple(Tensor(a.take(indices, axis=0)) for a in self.arrays)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset) if hasattr(dataset, "__len__") else None
        if n is not None and len(self.indices) and (self.indices.max() >= n or self.indices.min() < -n):
            raise IndexError(f"Subset: indices must lie in [-{n}, {n}) for a dataset of {n} samples; "
                             f"got min {self.indices.min()}, max {self.indices.max()}")

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]


class ConcatDataset(Dataset):
    """Several map-style datasets one after another.

    >>> ds = ConcatDataset([TensorDataset(np.zeros(2)), TensorDataset(np.ones(3))])
    >>> len(ds), ds[3]
    (5, (tensor(1.),))
    """

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: the list of datasets is empty")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset: cannot concatenate an IterableDataset (it has no random access)")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"ConcatDataset: index {index} is out of range for {n} samples")
        index = index + n if index < 0 else index
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]
