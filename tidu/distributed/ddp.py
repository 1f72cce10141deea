"""``DistributedDataParallel``: the same model on every rank, gradients averaged over the ranks.

Each rank runs forward and backward on its own share of the batch; DDP makes every gradient the
average over all ranks before ``optimizer.step()``, so every rank takes the same step and the
parameters stay identical (rank 0's are broadcast once, when DDP is created).

How the averaging overlaps with backward (PyTorch's design). The gradients live in a few flat
buffers, the *buckets* (``bucket_cap_mb`` each, the first one small so that communication starts
early), filled in reverse parameter order — roughly the order in which backward finishes them.
tidu delivers a parameter's gradient once per backward, summed over all its uses, right after its
last use; a post-accumulate hook on every parameter then moves ``.grad`` into its slot of the
bucket (``.grad`` becomes a view of the slot, so later backward passes add into the bucket with no
copy). When all of a bucket's parameters have arrived, and every bucket before it has been launched,
a non-blocking ``MPI_Iallreduce`` of the whole bucket starts while backward goes on: every rank
launches the same buckets in the same order. At the end of backward (``autograd.queue_callback``)
DDP fills the slots of the parameters that got no gradient with zeros (or with what their ``.grad``
held), launches the remaining buckets, waits, and scales by 1 / world_size. How much of a reduction
really runs during backward depends on the MPI: MPICH and Open MPI move a large message only inside
MPI calls, and DDP makes one (a ``Testall``) at every gradient arrival; a progress thread
(``MPIR_CVAR_ASYNC_PROGRESS=1`` for MPICH) does more where a core is free for it.

Rules, as in PyTorch:

- every backward after a forward of DDP (outside ``no_sync()``) is averaged, on every rank: all ranks
  run the same number of forward and backward passes (``DistributedSampler`` pads the shards so that
  they have equal length);
- a parameter that gets no gradient on some ranks is averaged with zeros there; one that gets none on
  any rank keeps ``.grad`` None (PyTorch's ``find_unused_parameters`` is always on);
- gradients that a loss term outside forward adds (a weight penalty) are averaged too: exact when the
  term is the same on every rank, as a penalty on the weights is;
- hooks (``register_hook``) see the local gradient; a post-accumulate hook registered after DDP sees
  ``.grad`` while it is being reduced: register it before wrapping the model.

With one process (no ``init_process_group``, or a world of 1) DDP is a plain wrapper: no hooks, no copies.
``no_sync()`` skips the averaging for gradient accumulation; ``broadcast_buffers`` copies rank 0's
buffers (BatchNorm's running statistics) to every rank before each training forward.

>>> import tidu as td, tidu.nn as nn
>>> from tidu.distributed import DistributedDataParallel as DDP
>>> ddp = DDP(nn.Linear(3, 2))          # one process: a plain wrapper
>>> ddp(td.ones(4, 3)).shape, list(ddp.state_dict())
((4, 2), ['module.weight', 'module.bias'])
"""
import contextlib
import time
import weakref

import numpy as np

from .. import autograd
from ..nn.module import Module
from ..tensor import Tensor
from . import mpi

__all__ = ["DistributedDataParallel"]

_MIB = 1 << 20


class DistributedDataParallel(Module):
    """Wrap ``module`` so that its gradients are averaged over the ranks of the process group.

    Args:
        module: the model (the same architecture on every rank; rank 0's weights win).
        bucket_cap_mb: the size of a gradient bucket in MiB (one ``Iallreduce`` each).
        broadcast_buffers: copy rank 0's buffers to every rank before each training forward.
        process_group: default: the one ``init_process_group()`` made.
        device_ids, output_device, find_unused_parameters: accepted so that PyTorch code runs; they change
            nothing (unused parameters are always found).

    ``ddp.module`` is the wrapped model (save ``ddp.module.state_dict()`` to get keys without the
    ``module.`` prefix); ``ddp.stats`` holds the communication counters (``reset_stats()`` clears them);
    ``ddp.require_backward_grad_sync = False`` does what ``no_sync()`` does, until set back.
    """

    def __init__(self, module, bucket_cap_mb=25, broadcast_buffers=True, process_group=None, *, device_ids=None,
                 output_device=None, find_unused_parameters=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an nn.Module, got {type(module).__name__}")
        if not (isinstance(bucket_cap_mb, (int, float)) and bucket_cap_mb > 0):
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive number, got {bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.bucket_cap_mb = bucket_cap_mb
        self.process_group = mpi._group(process_group)
        self.world_size = mpi.get_world_size(self.process_group)
        self.require_backward_grad_sync = True
        self._armed = self._in_backward = False
        self.reset_stats()
        if self.world_size == 1:
            return
        self._mpi = mpi._mpi()
        self._comm = self.process_group.comm.Dup()  # gradients travel apart from every other collective
        self._check_same_model()
        for t in list(module.parameters()) + list(module.buffers()):
            mpi.broadcast(t, 0, self.process_group)
        self._params = [p for p in module.parameters() if p.requires_grad]
        self._build_buckets(bucket_cap_mb)
        for i, p in enumerate(self._params):
            p.register_post_accumulate_grad_hook(self._make_hook(i))

    def _check_same_model(self):
        mine = [(n, tuple(t.shape), str(t.dtype)) for n, t in
                list(self.module.named_parameters()) + list(self.module.named_buffers())]
        for r, theirs in enumerate(self._comm.allgather(mine)):
            if theirs != mine:
                diff = next((f"{a} vs {b}" for a, b in zip(mine, theirs) if a != b),
                            f"{len(mine)} vs {len(theirs)} parameters and buffers")
                raise ValueError(f"DistributedDataParallel: rank {r} has a different model than rank "
                                 f"{mpi.get_rank(self.process_group)} (first difference: {diff}); "
                                 "build the same model on every rank")

    def _build_buckets(self, cap_mb):
        """Group the parameters, in reverse order, into flat buffers per dtype of about ``cap_mb`` MiB
        (the first one at most 1 MiB); every parameter gets its gradient slot (a view)."""
        params, cap = self._params, int(cap_mb * _MIB)
        groups, open_, size = [], {}, {}
        for i in reversed(range(len(params))):
            dt = params[i].dtype
            open_.setdefault(dt, []).append(i)
            size[dt] = size.get(dt, 0) + params[i].data.nbytes
            if size[dt] >= (cap if groups else min(cap, _MIB)):
                groups.append(open_.pop(dt))
                size[dt] = 0
        groups += [g for g in open_.values() if g]
        n = len(params)
        self._buckets, self._bucket_of, self._views = [], [0] * n, [None] * n
        for b, idx in enumerate(groups):
            flags = n if b == len(groups) - 1 else 0  # the last one carries a "has a gradient" flag per parameter
            buffer = np.zeros(sum(params[i].data.size for i in idx) + flags, dtype=params[idx[0]].dtype)
            offset = 0
            for i in idx:
                self._views[i] = buffer[offset:offset + params[i].data.size].reshape(params[i].shape)
                self._bucket_of[i] = b
                offset += params[i].data.size
            self._buckets.append((idx, buffer))
        self._flags = self._buckets[-1][1][-n:] if n else None

    def reset_stats(self):
        """Zero ``stats``: ``steps`` reduced, ``bytes`` sent through allreduce per rank, ``comm_s`` seconds
        inside MPI calls for gradients, ``wait_s`` the part spent waiting after backward had finished."""
        self.stats = {"steps": 0, "bytes": 0, "comm_s": 0.0, "wait_s": 0.0}

    def forward(self, *args, **kwargs):
        if self.world_size > 1:
            if self.broadcast_buffers and self.training:
                for b in self.module.buffers():
                    mpi.broadcast(b, 0, self.process_group)
            if autograd.is_grad_enabled():  # this forward decides whether the backward that follows is averaged
                self._armed, self._in_backward = self.require_backward_grad_sync, False
        return self.module(*args, **kwargs)

    # --- backward: the hook, the launches in bucket order, the end ---
    def _make_hook(self, i):
        ref = weakref.ref(self)  # a DDP that is gone leaves hooks that do nothing

        def hook(p):
            ddp = ref()
            if ddp is not None and ddp._armed:
                ddp._arrived(i, p)
        return hook

    def _slot(self, i, p):
        """Make ``p.grad`` (not None) a view of its slot in the bucket."""
        if p.grad.data is not self._views[i]:
            np.copyto(self._views[i], p.grad.data)
            p.grad = Tensor(self._views[i])

    def _arrived(self, i, p):
        if not self._in_backward:  # the first gradient of this backward
            self._in_backward, self._next, self._requests = True, 0, []
            self._left = [len(idx) for idx, _ in self._buckets]
            self._done = [False] * len(self._params)
            autograd.queue_callback(self._finish)
        self._slot(i, p)
        self._done[i] = True
        b = self._bucket_of[i]
        self._left[b] -= 1
        if self._left[b] == 0:
            self._launch(everything=False)
        elif self._requests:
            t0 = time.perf_counter()
            self._mpi.Request.Testall(self._requests)  # lets MPI progress the reductions in flight
            self.stats["comm_s"] += time.perf_counter() - t0

    def _launch(self, everything):
        """Start the reductions of the complete buckets (all of them: ``everything``), in bucket order."""
        while self._next < len(self._buckets) and (everything or self._left[self._next] == 0):
            _, buffer = self._buckets[self._next]
            if self._next == len(self._buckets) - 1:  # every slot is settled by now
                self._flags[...] = [p.grad is not None for p in self._params]
            t0 = time.perf_counter()
            self._requests.append(self._comm.Iallreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM))
            self.stats["comm_s"] += time.perf_counter() - t0
            self.stats["bytes"] += buffer.nbytes
            self._next += 1

    def _finish(self):
        """After backward: settle the slots of parameters that got no gradient, launch the rest, wait, average."""
        self._in_backward = False
        for i, p in enumerate(self._params):
            if not self._done[i]:
                if p.grad is None:
                    self._views[i][...] = 0
                else:  # gradients accumulated before (no_sync, or no zero_grad): they take part
                    self._slot(i, p)
        self._launch(everything=True)
        t0 = time.perf_counter()
        self._mpi.Request.Waitall(self._requests)
        dt = time.perf_counter() - t0
        self.stats["comm_s"] += dt
        self.stats["wait_s"] += dt
        self.stats["steps"] += 1
        for _, buffer in self._buckets:
            buffer *= buffer.dtype.type(1.0 / self.world_size)
        for i, p in enumerate(self._params):
            if not self._done[i]:  # a parameter that no rank gave a gradient keeps none (PyTorch's behaviour)
                p.grad = Tensor(self._views[i]) if self._flags[i] > 0 else None

    @contextlib.contextmanager
    def no_sync(self):
        """Forwards inside this block are not averaged: their gradients accumulate locally, and the first
        forward + backward after it averages everything accumulated (gradient accumulation)."""
        prev, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = prev

    def extra_repr(self):
        return f"world_size={self.world_size}, bucket_cap_mb={self.bucket_cap_mb}"
