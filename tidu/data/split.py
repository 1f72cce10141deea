"""Splitting a dataset: at random (``random_split``), or keeping class proportions (``stratified_split``).

>>> import numpy as np
>>> labels = np.array([0] * 80 + [1] * 20)
>>> train, val, test = stratified_split(labels, fractions=(0.8, 0.1, 0.1), seed=0)
>>> [len(i) for i in (train, val, test)], [int(labels[i].sum()) for i in (train, val, test)]
([80, 10, 10], [16, 2, 2])
"""
import numpy as np

from .. import backend
from ..tensor import Tensor
from .dataset import Dataset, Subset, TensorDataset

__all__ = ["random_split", "stratified_split", "split_sizes"]


def split_sizes(n, lengths_or_fractions, who="random_split"):
    """Lengths that sum to ``n``: given as they are, or from fractions summing to 1 (the remainder
    of flooring goes one by one to the first splits, as PyTorch does)."""
    parts = list(lengths_or_fractions)
    if not parts:
        raise ValueError(f"{who}: give at least one length or fraction")
    if any(isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or p < 0 for p in parts):
        raise ValueError(f"{who}: lengths and fractions must be non-negative numbers, got {parts}")
    if all(isinstance(p, (int, np.integer)) for p in parts) and sum(parts) != 1:
        if sum(parts) != n:
            raise ValueError(f"{who}: lengths {parts} sum to {sum(parts)}, but the dataset has {n} samples")
        return [int(p) for p in parts]
    if abs(sum(parts) - 1.0) > 1e-6:
        raise ValueError(f"{who}: fractions {parts} must sum to 1 (they sum to {sum(parts):.6g}); "
                         f"or give lengths summing to the dataset size {n}")
    sizes = [int(np.floor(n * f)) for f in parts]
    for i in range(n - sum(sizes)):
        sizes[i % len(sizes)] += 1
    return sizes


def _generator(generator, who):
    if generator is None:
        return backend.rng()
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"{who}: generator must be a numpy.random.Generator or an int seed, "
                        f"got {type(generator).__name__}")
    return generator


def random_split(dataset, lengths_or_fractions, generator=None):
    """Split into non-overlapping random ``Subset``s of the given lengths (or fractions).

    ``generator`` is a NumPy Generator or an int seed; by default tidu's global RNG (``td.manual_seed``).

    >>> ds = TensorDataset(np.arange(10.0))
    >>> a, b = random_split(ds, [0.7, 0.3], generator=0); len(a), len(b)
    (7, 3)
    """
    sizes = split_sizes(len(dataset), lengths_or_fractions)
    perm = _generator(generator, "random_split").permutation(len(dataset))
    bounds = np.cumsum([0] + sizes)
    return [Subset(dataset, perm[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _labels_of(dataset):
    """The class label of every sample: the last item of each sample (the last tensor of a TensorDataset)."""
    if isinstance(dataset, TensorDataset):
        return np.asarray(dataset.arrays[-1])
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, TensorDataset):
        return np.asarray(dataset.dataset.arrays[-1]).take(dataset.indices, axis=0)
    labels = []
    for i in range(len(dataset)):
        sample = dataset[i]
        label = sample[-1] if isinstance(sample, (tuple, list)) else sample
        labels.append(np.asarray(label).item())
    return np.asarray(labels)


def stratified_split(data, fractions=(0.8, 0.1, 0.1), seed=0):
    """Split so that every class keeps (to within one sample) its proportion in every part.

    ``data`` is an array of class labels — then index arrays come back, each sorted — or a dataset
    whose samples end with the label — then ``Subset``s come back. The part sizes are those of
    :func:`random_split` exactly.

    How: the count of class c in part k is n_c * f_k rounded down or up (a controlled rounding:
    the rounded counts still add up to each class size and to each part size), and each class's
    shuffled members are dealt out in those counts.
    """
    is_dataset = isinstance(data, Dataset)
    labels = _labels_of(data) if is_dataset else np.asarray(data.data if isinstance(data, Tensor) else data)
    if labels.ndim != 1:
        raise ValueError(f"stratified_split: labels must be one-dimensional (one class per sample), "
                         f"got shape {labels.shape}")
    n = len(labels)
    if n == 0:
        raise ValueError("stratified_split: there are no samples to split")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise ValueError("stratified_split: labels contain NaN; every sample needs a class")
    sizes = split_sizes(n, fractions, who="stratified_split")
    rng = np.random.default_rng(seed)

    classes, inverse = np.unique(labels, return_inverse=True)
    class_sizes = np.bincount(inverse)
    counts = _rounded_counts(class_sizes, np.asarray(fractions, dtype=np.float64) / sum(fractions), sizes)
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(class_sizes)[:-1])
    parts = [[] for _ in sizes]
    for c, members in enumerate(by_class):
        members = rng.permutation(members)
        for k, chunk in enumerate(np.split(members, np.cumsum(counts[c])[:-1])):
            parts[k].append(chunk)
    indices = [np.sort(np.concatenate(p)) for p in parts]
    return [Subset(data, i) for i in indices] if is_dataset else indices


def _rounded_counts(class_sizes, fractions, part_sizes):
    """Integer counts[c, k], each n_c * f_k rounded down or up, rows summing to the class sizes and
    columns to the part sizes: floor everything, then hand the missing units out row by row to the
    parts that still miss the most (Gale and Ryser's greedy, which finds such a table when one exists)."""
    ideal = class_sizes[:, None] * fractions[None, :]
    counts = np.floor(ideal).astype(np.int64)
    row_left = class_sizes - counts.sum(axis=1)
    col_left = np.asarray(part_sizes) - counts.sum(axis=0)
    for c in np.argsort(-row_left, kind="stable"):
        # Parts that miss the most first; among equals, the one this class is furthest below.
        order = np.lexsort((-(ideal[c] - counts[c]), -col_left))[:row_left[c]]
        counts[c, order] += 1
        col_left[order] -= 1
    if (col_left != 0).any():  # cannot happen for floor-or-ceil part sizes; be loud if it does
        raise RuntimeError(f"stratified_split: could not balance classes {class_sizes} over parts {part_sizes}")
    return counts
