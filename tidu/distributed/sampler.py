"""``DistributedSampler``: each rank reads its own share of the dataset, a new shuffle every epoch.

PyTorch's semantics: the epoch's order (a permutation seeded with ``seed + epoch``, the same on every
rank) is padded by repeating its first indices until it divides evenly (or cut, with ``drop_last``),
and rank ``r`` takes every ``num_replicas``-th index starting at ``r``. Every rank therefore gets
``len(sampler)`` indices, the shards are disjoint (apart from the padding) and together cover the
dataset.

One difference, on purpose: PyTorch repeats the same order every epoch unless ``set_epoch(epoch)`` is
called before each one (a common silent mistake). Here an epoch without ``set_epoch`` uses the next
epoch number; calling ``set_epoch(e)`` as in PyTorch gives epoch ``e`` exactly.

>>> from tidu.distributed import DistributedSampler
>>> shards = [list(DistributedSampler(range(10), num_replicas=3, rank=r, seed=0)) for r in range(3)]
>>> [len(s) for s in shards], sorted(set(sum(shards, []))) == list(range(10))   # 10 padded to 12
([4, 4, 4], True)
>>> list(DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False))
[1, 4, 7, 0]
"""
import numbers

import numpy as np

from . import mpi

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """Indices of this rank's share of ``dataset`` for one epoch.

    Args:
        dataset: anything with ``len()``.
        num_replicas, rank: the number of ranks and this one (default: from the process group).
        shuffle: a new permutation every epoch, from ``seed + epoch`` (identical on every rank).
        seed: must be the same on every rank.
        drop_last: drop the tail that does not divide evenly instead of padding it.

    Use it as a DataLoader's ``sampler`` (the loader's ``batch_size`` is then per rank)::

        sampler = DistributedSampler(train_set)
        loader = DataLoader(train_set, batch_size=32, sampler=sampler)
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for xb, yb in loader: ...
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            group = mpi._group(None)  # refuses an mpiexec rank that has not joined the group
            num_replicas = mpi.get_world_size(group) if num_replicas is None else num_replicas
            rank = mpi.get_rank(group) if rank is None else rank
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, numbers.Integral) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive integer, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank!r}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"DistributedSampler: seed must be an integer, got {type(seed).__name__}")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            self.num_samples = (n - self.num_replicas) // self.num_replicas + 1  # ceil((n - R) / R)
        else:
            self.num_samples = -(-n // self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch = 0        # the epoch of the current (or last) pass
        self._next_epoch = 0  # the epoch the next pass uses

    def set_epoch(self, epoch):
        """Use ``epoch`` for the next pass (call it before each epoch, on every rank, as in PyTorch)."""
        self.epoch = self._next_epoch = int(epoch)

    def _indices(self):
        """This rank's indices for the next pass, as one int64 array (DataLoader's fast path)."""
        self.epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        if self.drop_last:
            order = order[:self.total_size]
        elif self.total_size > n and n > 0:
            order = np.resize(order, self.total_size)  # np.resize repeats the array from its start
        return order[self.rank:self.total_size:self.num_replicas].astype(np.int64, copy=False)

    def __iter__(self):
        return iter(self._indices().tolist())

    def __len__(self):
        return self.num_samples

    def state_dict(self):
        """The epoch counters (JSON-able), so a resumed DataLoader replays the same order."""
        return {"epoch": self.epoch, "next_epoch": self._next_epoch, "seed": self.seed}

    def load_state_dict(self, state):
        """Continue the saved order: its epoch counters and its seed (a resumed run replays the order it
        had, even when the new sampler was made with another seed)."""
        self.epoch, self._next_epoch = int(state["epoch"]), int(state["next_epoch"])
        self.seed = int(state.get("seed", self.seed))

    def __repr__(self):
        return (f"DistributedSampler(num_samples={self.num_samples}, num_replicas={self.num_replicas}, "
                f"rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last})")
