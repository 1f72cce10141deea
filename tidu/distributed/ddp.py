"""``DistributedDataParallel``: the same model on every rank, gradients averaged over the ranks.

Each rank runs forward and backward on its own share of the batch; DDP makes the gradients the
average over all ranks before ``optimizer.step()``, so every rank takes the same step and the
parameters stay identical (they are broadcast from rank 0 once, when DDP is created).

How the averaging overlaps with backward. The gradients live in a few large flat buffers, the
*buckets* (``bucket_cap_mb`` each, the first one small so that communication starts early), filled
in reverse parameter order — roughly the order in which backward produces them. A hook on every
parameter (``Tensor.register_hook``) adds the arriving gradient into its slot of the bucket; when all
of a bucket's gradients have arrived, a non-blocking ``MPI_Iallreduce`` of the whole bucket starts
while backward goes on with the layers below. When the last gradient arrives, DDP waits for the
reductions, scales by 1 / world_size and points every ``.grad`` at its slot: backward returns with
averaged gradients and no copy was made. How much of a reduction really runs during backward depends
on the MPI: MPICH and Open MPI move a large message only inside MPI calls, and DDP makes one (a
``Testall``) at every gradient arrival; a progress thread (``MPIR_CVAR_ASYNC_PROGRESS=1`` for MPICH)
does more where a core is free for it.

How DDP knows that a parameter's gradient is complete: tidu delivers one gradient per *use* of a
parameter in the graph (a weight used twice gets two), so after each forward DDP walks the graph
from the outputs, counts the uses, and marks those graph nodes so that their deliveries are told
apart from any others. Parameters that the forward did not use are reduced too (their slot holds
zeros, or what they had accumulated) — PyTorch's ``find_unused_parameters`` is always on. Rules, as
in PyTorch:

- call ``backward`` once per forward, on a loss that depends on every output of the forward (when it
  does not, the next forward raises, naming the parameters whose gradient never came);
- only the gradients that flow through the outputs of ``forward`` are averaged. A loss term computed
  from the parameters outside it (``loss + 1e-4 * sum((p ** 2).sum() for p in ddp.parameters())``)
  is added on each rank as it is: exact when the term is the same on every rank, as a penalty on the
  weights is; a data-dependent term (an auxiliary loss kept on the module) must be returned by forward;
- hooks registered on parameters run before DDP's, on the local gradient;
- every rank runs the same number of steps (``DistributedSampler`` pads the shards to equal length);
- ``backward(retain_graph=True)`` a second time, or a backward through ``ddp.module`` called directly,
  is not averaged (its gradients are added locally).

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

import numpy as np

from .. import autograd
from ..nn.module import Module
from ..tensor import Tensor
from . import mpi

__all__ = ["DistributedDataParallel"]

_MIB = 1 << 20


def _tensors(obj):
    """The Tensors in a forward's output (a Tensor, or tuples, lists and dicts of them)."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    return []


class _Bucket:
    __slots__ = ("params", "buffer", "pending")

    def __init__(self, params, buffer):
        self.params, self.buffer, self.pending = params, buffer, 0


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
    ``module.`` prefix); ``ddp.stats`` holds the communication counters (``reset_stats()`` clears them).
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
        self._require_sync = True
        self._armed = False
        self.reset_stats()
        if self.world_size == 1:
            return
        self._mpi = mpi._mpi()
        self._comm = self.process_group.comm.Dup()  # gradients travel apart from every other collective
        self._check_same_model()
        self._sync_states(list(module.parameters()) + list(module.buffers()))
        self._params = [p for p in module.parameters() if p.requires_grad]
        self._names = {id(p): n for n, p in module.named_parameters()}
        self._index = {id(p): i for i, p in enumerate(self._params)}
        self._build_buckets(bucket_cap_mb)
        self._sink = Tensor(np.zeros(1))       # stands in for .grad while a gradient is being reduced
        self._zero = Tensor(np.zeros(()))      # what the hook hands back: _deliver then adds nothing
        self._grad_hooks = [p.register_hook(self._make_hook(i)) for i, p in enumerate(self._params)]

    # --- set-up ---
    def _check_same_model(self):
        mine = [(n, tuple(t.shape), str(t.dtype)) for n, t in
                list(self.module.named_parameters()) + list(self.module.named_buffers())]
        every = self._comm.allgather(mine)
        for r, theirs in enumerate(every):
            if theirs != mine:
                diff = next((f"{a} vs {b}" for a, b in zip(mine, theirs) if a != b),
                            f"{len(mine)} vs {len(theirs)} parameters and buffers")
                raise ValueError(f"DistributedDataParallel: rank {r} has a different model than rank "
                                 f"{mpi.get_rank(self.process_group)} (first difference: {diff}); "
                                 "build the same model on every rank")

    def _sync_states(self, tensors):
        for t in tensors:
            mpi.broadcast(t, 0, self.process_group)

    def _build_buckets(self, cap_mb):
        """Group the parameters, in reverse order, into flat buffers per dtype of about ``cap_mb`` MiB
        (the first one at most 1 MiB); every parameter gets its gradient slot (a view)."""
        cap, first_cap = int(cap_mb * _MIB), min(int(cap_mb * _MIB), _MIB)
        groups, open_, size = [], {}, {}
        for i in reversed(range(len(self._params))):
            dt = self._params[i].dtype
            open_.setdefault(dt, []).append(i)
            size[dt] = size.get(dt, 0) + self._params[i].data.nbytes
            if size[dt] >= (first_cap if not groups else cap):
                groups.append(open_.pop(dt))
                size[dt] = 0
        groups += [g for g in open_.values() if g]
        self._buckets, self._bucket_of, self._views = [], [None] * len(self._params), [None] * len(self._params)
        n = len(self._params)
        for b, idx in enumerate(groups):
            last = b == len(groups) - 1
            dt = self._params[idx[0]].dtype
            total = sum(self._params[i].data.size for i in idx)
            buffer = np.zeros(total + (n if last else 0), dtype=dt)  # the last one carries "has a gradient" flags
            offset = 0
            for i in idx:
                p = self._params[i]
                self._views[i] = buffer[offset:offset + p.data.size].reshape(p.shape)
                self._bucket_of[i] = b
                offset += p.data.size
            self._buckets.append(_Bucket(idx, buffer))
        self._flags = self._buckets[-1].buffer[-n:] if self._buckets else None

    def _make_hook(self, i):
        def hook(grad):
            return self._arrived(i, grad.data) if self._armed else None
        return hook

    def reset_stats(self):
        """Zero ``stats``: ``steps`` reduced, ``bytes`` sent through allreduce per rank, ``comm_s`` seconds
        inside MPI calls for gradients, ``wait_s`` the part spent waiting after backward had finished."""
        self.stats = {"steps": 0, "bytes": 0, "comm_s": 0.0, "wait_s": 0.0}

    # --- forward: sync buffers, run the module, count and mark the uses of every parameter ---
    def forward(self, *args, **kwargs):
        if self.world_size == 1:
            return self.module(*args, **kwargs)
        if self._armed and any(self._state):
            self._armed = False
            missing = [self._names.get(id(self._params[i]), f"#{i}") for i, (c, e) in
                       enumerate(zip(self._count, self._expected)) if c < e]
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not give a gradient to every parameter the "
                f"forward used (missing: {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}), so the "
                "gradients were not averaged across ranks. Make the loss depend on every output of the forward, "
                "and call backward once per forward")
        self._armed = False
        if self.broadcast_buffers and self.training:
            self._sync_states(list(self.module.buffers()))
        out = self.module(*args, **kwargs)
        if self._require_sync and autograd.is_grad_enabled():
            self._arm(_tensors(out))
        return out

    def _arm(self, outputs):
        """Count every parameter's uses in the graph of ``outputs`` and mark the nodes that use one."""
        n, index = len(self._params), self._index
        expected, credit = [0] * n, [0] * n
        for t in outputs:  # an output that is a parameter itself: one use, by the loss
            j = index.get(id(t))
            if j is not None:
                expected[j] += 1
                credit[j] += 1
        stack = [t for t in outputs if t._backward is not None]
        seen = {id(t) for t in stack}
        while stack:
            node = stack.pop()
            uses = []
            for p in node._parents:
                if p._backward is None:
                    j = index.get(id(p)) if p.requires_grad else None
                    uses.append(j)
                    if j is not None:
                        expected[j] += 1
                else:
                    uses.append(None)
                    if id(p) not in seen:
                        seen.add(id(p))
                        stack.append(p)
            if any(j is not None for j in uses):
                node._backward = self._marked(node._backward, uses)
        if not any(expected):
            return
        for b in self._buckets:
            b.pending = sum(1 for i in b.params if expected[i])
        for i, p in enumerate(self._params):  # hooks added after DDP's run before it, on local gradients
            hooks = p._hooks
            if hooks[-1] is not self._grad_hooks[i]:
                hooks.remove(self._grad_hooks[i])
                hooks.append(self._grad_hooks[i])
        self._expected, self._count, self._credit = expected, [0] * n, credit
        self._state = [0] * n   # 0: untouched in this backward, 1: slot holds data, 2: slot empty
        self._extra = {}        # gradients from outside the forward's graph: added locally at the end
        self._next, self._requests = 0, []
        self._armed = True

    def _marked(self, backward, uses):
        """``backward`` of a node that uses parameters: its gradients for them are the forward's own."""
        def marked(g):
            grads = backward(g)
            if self._armed:
                for j, pg in zip(uses, grads):
                    if j is not None:
                        if pg is not None:
                            self._credit[j] += 1  # the delivery that follows is one of the counted uses
                        else:                    # this use gives no gradient: expect one less
                            self._expected[j] -= 1
                            self._completed(j)
            return grads
        return marked

    # --- backward: the hook, the launches, the final wait ---
    def _open(self, i):
        """First touch of parameter i in this backward: its slot takes over what .grad held."""
        p, cur = self._params[i], self._params[i].grad
        if cur is None or cur is self._sink:
            self._state[i] = 2
        else:  # gradients accumulated before (no_sync, or no zero_grad): keep them
            if cur.data is not self._views[i]:
                np.copyto(self._views[i], cur.data)
            self._state[i] = 1
        p.grad = self._sink  # _deliver adds the hook's zero to it: the slot is never touched in flight

    def _arrived(self, i, g):
        if self._state[i] == 0:
            self._open(i)
        if not self._credit[i]:  # not through the forward's outputs: kept local
            self._extra[i] = g.copy() if i not in self._extra else self._extra[i] + g
            return self._zero
        self._credit[i] -= 1
        view = self._views[i]
        if self._state[i] == 2:
            np.copyto(view, g)
            self._state[i] = 1
        else:
            view += g
        self._count[i] += 1
        if self._count[i] == self._expected[i]:
            self._completed(i)
        elif self._requests:
            t0 = time.perf_counter()
            self._mpi.Request.Testall(self._requests)  # lets MPI progress the reductions in flight
            self.stats["comm_s"] += time.perf_counter() - t0
        return self._zero

    def _completed(self, i):
        if self._count[i] == self._expected[i]:
            bucket = self._buckets[self._bucket_of[i]]
            bucket.pending -= 1
            if bucket.pending == 0:
                self._launch_ready()

    def _launch_ready(self):
        """Start the reduction of every complete bucket, in bucket order (the same on every rank)."""
        buckets = self._buckets
        while self._next < len(buckets) and buckets[self._next].pending == 0:
            b = buckets[self._next]
            for i in b.params:
                if self._state[i] == 0:
                    self._open(i)
                if self._state[i] == 2:  # no gradient here for it: zeros
                    self._views[i][...] = 0
            if self._next == len(buckets) - 1:  # every slot is settled: flag the ones holding a gradient
                self._flags[...] = [s == 1 for s in self._state]
            t0 = time.perf_counter()
            self._requests.append(self._comm.Iallreduce(self._mpi.IN_PLACE, b.buffer, op=self._mpi.SUM))
            self.stats["comm_s"] += time.perf_counter() - t0
            self.stats["bytes"] += b.buffer.nbytes
            self._next += 1
        if self._next == len(buckets):
            self._finish()

    def _finish(self):
        t0 = time.perf_counter()
        self._mpi.Request.Waitall(self._requests)
        dt = time.perf_counter() - t0
        self.stats["comm_s"] += dt
        self.stats["wait_s"] += dt
        self.stats["steps"] += 1
        self._armed, self._requests = False, []
        for b in self._buckets:
            b.buffer *= b.buffer.dtype.type(1.0 / self.world_size)
        for i, p in enumerate(self._params):
            # a parameter that no rank gave a gradient keeps none (PyTorch's behaviour)
            p.grad = Tensor(self._views[i]) if self._flags[i] > 0 else None
        for i, g in self._extra.items():
            p = self._params[i]
            if p.grad is None:
                np.copyto(self._views[i], g)
                p.grad = Tensor(self._views[i])
            else:
                p.grad.data += g

    @contextlib.contextmanager
    def no_sync(self):
        """Forwards inside this block are not averaged: their gradients accumulate locally, and the first
        forward + backward after it averages everything accumulated (gradient accumulation)."""
        prev, self._require_sync = self._require_sync, False
        try:
            yield
        finally:
            self._require_sync = prev

    def extra_repr(self):
        return f"world_size={self.world_size}, bucket_cap_mb={self.bucket_cap_mb}"
