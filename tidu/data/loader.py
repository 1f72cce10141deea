"""``DataLoader``: batches from a dataset, shuffled from a seeded generator, resumable mid-epoch.

Samplers yield indices, a ``BatchSampler`` groups them, and the loader fetches and collates each
batch — PyTorch's design, so a sampler written for one (e.g. a distributed sampler) plugs into the
other. Two things are added: a ``TensorDataset`` (or a ``Subset`` of one) is fetched with one fancy
index per array instead of a Python loop per sample, and ``state_dict()`` records the generator and
the epoch so a restored loader yields exactly the batches an uninterrupted one would have.

>>> import numpy as np
>>> from tidu.data import DataLoader, TensorDataset
>>> ds = TensorDataset(np.arange(10.0), np.arange(10))
>>> loader = DataLoader(ds, batch_size=4, shuffle=True, seed=0)
>>> len(loader), [len(xb) for xb, yb in loader]
(3, [4, 4, 2])
>>> state = loader.state_dict(); first = [yb.tolist() for _, yb in loader]
>>> loader.load_state_dict(state); [yb.tolist() for _, yb in loader] == first
True
"""
import collections.abc
import itertools
import queue
import threading

import numpy as np

from .. import backend
from ..tensor import Tensor
from .dataset import IterableDataset, Subset, TensorDataset

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler", "DataLoader",
           "default_collate"]


def _new_generator(generator=None, seed=None, who="DataLoader"):
    """A NumPy Generator: the one given, one seeded with ``seed``, or one seeded from tidu's global RNG
    (so ``td.manual_seed`` makes it reproducible)."""
    if generator is not None and seed is not None:
        raise ValueError(f"{who}: give either generator= or seed=, not both")
    if generator is not None:
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"{who}: generator must be a numpy.random.Generator, got {type(generator).__name__}")
        return generator
    if seed is not None:
        return np.random.default_rng(seed)
    return np.random.default_rng(int(backend.rng().integers(2**63)))


# --- samplers: each yields dataset indices; `_indices()` gives a whole epoch as one array ---

class Sampler:
    """Base class: define ``__iter__`` (indices) and ``__len__``."""

    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def _indices(self):
        return np.arange(len(self.data_source))

    def __iter__(self):
        return iter(self._indices().tolist())

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A new random permutation each epoch (or ``num_samples`` draws with replacement).

    Without ``generator`` it seeds its own from tidu's global RNG when created.

    >>> s = RandomSampler(range(5), generator=np.random.default_rng(0))
    >>> sorted(s), list(s) == list(s)   # each epoch a permutation, a new one each time
    ([0, 1, 2, 3, 4], False)
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples <= 0):
            raise ValueError(f"RandomSampler: num_samples must be a positive integer, got {num_samples!r}")
        if num_samples is not None and not replacement:
            raise ValueError("RandomSampler: num_samples needs replacement=True (a permutation has len(data) items)")
        self.generator = _new_generator(generator, who="RandomSampler")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def _indices(self):
        n = len(self.data_source)
        if self.replacement:
            return self.generator.integers(0, n, size=self.num_samples)
        return self.generator.permutation(n)

    def __iter__(self):
        return iter(self._indices().tolist())

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices, in a new random order each epoch."""

    def __init__(self, indices, generator=None):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.generator = _new_generator(generator, who="SubsetRandomSampler")

    def _indices(self):
        return self.indices[self.generator.permutation(len(self.indices))]

    def __iter__(self):
        return iter(self._indices().tolist())

    def __len__(self):
        return len(self.indices)


class BatchSampler(Sampler):
    """Groups a sampler's indices into batches (NumPy int64 arrays) of ``batch_size``.

    >>> [b.tolist() for b in BatchSampler(SequentialSampler(range(5)), 2, drop_last=False)]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(self, sampler, batch_size, drop_last):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"BatchSampler: batch_size must be a positive integer, got {batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), bool(drop_last)

    def __iter__(self):
        # Draw the epoch's order now (in the caller's thread), then cut it into views: no per-index loop.
        if hasattr(self.sampler, "_indices"):
            idx = np.asarray(self.sampler._indices(), dtype=np.int64)
            stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
            return iter([idx[i:i + self.batch_size] for i in range(0, stop, self.batch_size)])
        return self._group(iter(self.sampler))

    def _group(self, it):
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield np.asarray(batch, dtype=np.int64)

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# --- collate: a list of samples -> one batch ---

def _stack(arrays, what):
    xp = backend.array_module(*arrays[:1])
    try:
        return xp.stack(arrays)
    except ValueError:
        shapes = sorted({tuple(a.shape) for a in arrays})
        raise ValueError(f"default_collate: cannot stack {what} of different shapes {shapes[:4]} into one batch; "
                         "pad them to one shape or pass a collate_fn") from None


def _cast(a):
    # float64 -> float32 once on entry (DESIGN.md); signed integers -> int64 (labels, indices).
    if a.dtype == np.float64:
        return a.astype(np.float32)
    if a.dtype.kind == "i" and a.dtype != np.int64:
        return a.astype(np.int64)
    return a


def default_collate(batch):
    """Stack a list of samples into a batch, recursing into tuples, lists and dicts.

    Tensors, arrays and numbers become Tensors with a leading batch dimension (float64 -> float32,
    ints -> int64); strings stay a list; a tuple stays a tuple (PyTorch returns a list).

    >>> b = default_collate([{"x": np.zeros(2), "y": 1}, {"x": np.ones(2), "y": 0}])
    >>> b["x"].shape, b["x"].dtype, b["y"]
    ((2, 2), dtype('float32'), tensor([1, 0]))
    """
    if not isinstance(batch, (list, tuple)) or not batch:
        raise ValueError(f"default_collate: expected a non-empty list of samples, got {type(batch).__name__}")
    elem = batch[0]
    if isinstance(elem, Tensor):
        return Tensor(_stack([b.data for b in batch], "tensors"))
    if isinstance(elem, (np.ndarray, np.generic)) and not isinstance(elem, (np.str_, np.bytes_)):
        return Tensor(_cast(_stack([np.asarray(b) for b in batch], "arrays")))
    if isinstance(elem, bool):
        return Tensor(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return Tensor(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return Tensor(np.array(batch, dtype=np.float32))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        keys = set(elem)
        for b in batch:
            if set(b) != keys:
                raise ValueError(f"default_collate: samples have different keys: {sorted(keys)} and {sorted(b)}")
        out = {k: default_collate([b[k] for b in batch]) for k in elem}
        return out if type(elem) is dict else type(elem)(out)
    if isinstance(elem, (tuple, list)):
        n = len(elem)
        if any(len(b) != n for b in batch):
            raise ValueError(f"default_collate: samples have different lengths {sorted({len(b) for b in batch})}")
        fields = [default_collate(list(samples)) for samples in zip(*batch)]
        if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
            return type(elem)(*fields)
        return tuple(fields) if isinstance(elem, tuple) else fields
    raise TypeError(f"default_collate: don't know how to batch samples of type {type(elem).__name__}; "
                    "return Tensors, arrays, numbers, or tuples/lists/dicts of them, or pass collate_fn")


def _batch_getter(dataset):
    """A function index-array -> collated batch when the dataset can fetch a batch at once, else None."""
    if isinstance(dataset, TensorDataset):
        return dataset.get_batch
    if isinstance(dataset, Subset):
        inner = _batch_getter(dataset.dataset)
        if inner is not None:
            indices = dataset.indices
            return lambda idx: inner(indices.take(idx))
        return None
    return getattr(dataset, "get_batch", None)


class _Raised:
    """An exception caught in the prefetch thread, carried to the consumer."""

    def __init__(self, exc):
        self.exc = exc


_DONE = object()


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a map-style ``Dataset`` (``len`` and ``[i]``) or an ``IterableDataset``.
        batch_size: samples per batch.
        shuffle: a new random order each epoch, drawn from ``generator`` (or one seeded with ``seed``,
            or else one seeded from tidu's global RNG when the loader is created, so ``td.manual_seed``
            before it makes the order reproducible).
        drop_last: drop the last, smaller batch.
        collate_fn: list of samples -> batch (default: :func:`default_collate`).
        prefetch: prepare up to this many batches ahead in a background thread; an exception there
            is re-raised in the loop that reads the batches.
        sampler / batch_sampler: PyTorch's; exclusive with ``shuffle`` (and, for ``batch_sampler``,
            with ``batch_size`` and ``drop_last``).

    With the default collate, a ``TensorDataset``, a ``Subset`` of one, or any dataset with a
    ``get_batch(index_array)`` method is read a whole batch at a time.

    ``state_dict()`` is a JSON-able dict with the epoch, the batches already read in it, and the
    generator's state at the start of that epoch; ``load_state_dict()`` restores it, and the next
    iteration yields exactly the batches the saved loader had still to yield.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None, generator=None,
                 seed=None, prefetch=0, sampler=None, batch_sampler=None):
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be a non-negative integer (batches), got {prefetch!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size, self.drop_last, self.shuffle = int(batch_size), bool(drop_last), bool(shuffle)
        self.collate_fn = collate_fn
        self.prefetch = int(prefetch)
        self._iterable = isinstance(dataset, IterableDataset)

        if self._iterable and (shuffle or sampler is not None or batch_sampler is not None):
            raise ValueError("DataLoader: shuffle, sampler and batch_sampler need a map-style dataset; "
                             "an IterableDataset decides its own order")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ValueError("DataLoader: batch_sampler is mutually exclusive with batch_size, shuffle, "
                             "sampler and drop_last")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler is mutually exclusive with shuffle")

        # The generator whose state decides the order: the one given (or seeded), a new one for
        # shuffle=True, else the one of a sampler that was passed in.
        self.generator = None
        if generator is not None or seed is not None or shuffle:
            self.generator = _new_generator(generator, seed)
        if not self._iterable and batch_sampler is None:
            if sampler is None:
                sampler = RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
            batch_sampler = BatchSampler(sampler, self.batch_size, self.drop_last)
        elif batch_sampler is not None:
            self.batch_size = None
        self.sampler, self.batch_sampler = sampler, batch_sampler
        if self.generator is None:
            for s in (sampler, getattr(batch_sampler, "sampler", None)):
                if isinstance(getattr(s, "generator", None), np.random.Generator):
                    self.generator = s.generator
                    break

        self._getter = _batch_getter(dataset) if collate_fn is None and not self._iterable else None
        self._collate = collate_fn or default_collate
        self._epoch = 0          # epochs finished (or abandoned)
        self._in_epoch = False   # an iteration is under way
        self._seen = 0           # batches handed out in the current epoch
        self._start = None       # generator/sampler state at the start of the current epoch
        self._resume = False     # set by load_state_dict: the next iteration continues a saved epoch

    def __len__(self):
        if self._iterable:
            if not hasattr(self.dataset, "__len__"):
                raise TypeError("len(DataLoader): its IterableDataset has no __len__")
            n = len(self.dataset)
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self.batch_sampler)

    # --- exact resume ---
    def _snapshot(self):
        state = {"rng_state": self.generator.bit_generator.state if self.generator is not None else None}
        sampler = self.sampler if self.sampler is not None else self.batch_sampler
        if hasattr(sampler, "state_dict"):
            state["sampler"] = sampler.state_dict()
        return state

    def _restore(self, snap):
        if snap.get("rng_state") is not None:
            if self.generator is None:
                raise ValueError("DataLoader.load_state_dict: the state has a generator state but this loader "
                                 "draws no random numbers (was it saved from a loader with shuffle=True?)")
            kind, saved = type(self.generator.bit_generator).__name__, snap["rng_state"].get("bit_generator")
            if saved != kind:
                raise ValueError(f"DataLoader.load_state_dict: the saved generator is {saved}, this loader's is {kind}")
            self.generator.bit_generator.state = snap["rng_state"]
        if "sampler" in snap:
            (self.sampler if self.sampler is not None else self.batch_sampler).load_state_dict(snap["sampler"])

    def state_dict(self):
        """``{"epoch", "batches_seen", "rng_state", ...}``: JSON-able; restores the exact position."""
        snap = self._start if self._in_epoch else self._snapshot()
        return {"epoch": self._epoch, "batches_seen": self._seen if self._in_epoch else 0, **snap}

    def load_state_dict(self, state):
        for key in ("epoch", "batches_seen", "rng_state"):
            if key not in state:
                raise ValueError(f"DataLoader.load_state_dict: the state has no {key!r} (keys: {sorted(state)})")
        self._restore(state)
        self._epoch, self._seen = int(state["epoch"]), int(state["batches_seen"])
        self._in_epoch = False
        self._resume = True

    @property
    def epoch(self):
        """Epochs completed (an iteration abandoned part-way counts as one)."""
        return self._epoch

    # --- iteration ---
    def __iter__(self):
        if self._in_epoch and not self._resume:  # the previous iteration was abandoned part-way
            self._epoch += 1
        skip = self._seen if self._resume else 0
        self._resume = False
        self._start = self._snapshot()
        self._in_epoch, self._seen = True, skip
        batches = self._batches(skip)
        if self.prefetch:
            batches = self._prefetched(batches)
        return self._count(batches)

    def _count(self, batches):
        for batch in batches:
            self._seen += 1
            yield batch
        self._epoch += 1
        self._in_epoch, self._seen = False, 0

    def _batches(self, skip):
        """Yield collated batches, skipping the first ``skip`` (without fetching them, when possible)."""
        if self._iterable:
            for samples in itertools.islice(self._sample_groups(), skip, None):
                yield self._collate(samples)
            return
        index_batches = itertools.islice(iter(self.batch_sampler), skip, None)
        if self._getter is not None:
            for idx in index_batches:
                yield self._getter(np.asarray(idx, dtype=np.int64))
        else:
            dataset, collate = self.dataset, self._collate
            for idx in index_batches:
                yield collate([dataset[int(i)] for i in idx])

    def _sample_groups(self):
        it = iter(self.dataset)
        while True:
            samples = list(itertools.islice(it, self.batch_size))
            if not samples or (self.drop_last and len(samples) < self.batch_size):
                return
            yield samples

    def _prefetched(self, batches):
        q = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item):
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    pass
            return False

        def work():
            try:
                for batch in batches:
                    if not put(batch):
                        return
                put(_DONE)
            except BaseException as e:  # re-raised where the batches are read
                put(_Raised(e))

        thread = threading.Thread(target=work, name="tidu-DataLoader-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, _Raised):
                    raise item.exc
                yield item
        finally:
            stop.set()
            thread.join(timeout=1.0)

