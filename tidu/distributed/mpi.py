"""The process group: MPI's world, its ranks, and the collectives tidu needs.

``init_process_group()`` joins the MPI world that ``mpiexec`` started (it imports ``mpi4py`` — the
``distributed`` extra — only then, so ``import tidu`` never does). Every collective takes NumPy arrays
or Tensors (changed in place, as in PyTorch) or, for the ``*_object`` forms, any picklable Python
object; each rank must call the same collectives in the same order.

Without ``init_process_group()`` — a plain ``python train.py`` — the group is a single process:
``get_rank()`` is 0, ``get_world_size()`` is 1 and the collectives return their input, so code written
for N processes runs unchanged on one.

>>> import numpy as np
>>> from tidu import distributed as dist
>>> dist.get_rank(), dist.get_world_size(), dist.is_main_process()
(0, 1, True)
>>> dist.all_reduce(np.array([1.0, 2.0]))            # one process: the sum is the array itself
array([1., 2.])
>>> dist.all_reduce_metrics({"loss": 0.5, "accuracy": 0.75}, weight=32)
{'loss': 0.5, 'accuracy': 0.75}
"""
import importlib.util
import os
import shutil
import sys
import traceback

import numpy as np

from ..tensor import Tensor

__all__ = ["ReduceOp", "ProcessGroup", "is_available", "is_launched", "init_process_group", "destroy_process_group",
           "is_initialized", "get_rank", "get_world_size", "get_local_rank", "is_main_process", "barrier",
           "broadcast", "all_reduce", "all_gather", "broadcast_object", "all_gather_object", "all_reduce_metrics",
           "abort", "mpiexec_path"]

# Environment variables a launcher sets: MPICH/Intel MPI (hydra), Open MPI, Slurm.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")
_INSTALL_HINT = ("tidu.distributed needs mpi4py and an MPI library: pip install 'tidu[distributed]' "
                 "(mpi4py and the mpich wheel)")


class ReduceOp:
    """The reductions of ``all_reduce`` (plain strings work too: ``"sum"``, ``"avg"``, …)."""
    SUM, AVG, MAX, MIN, PRODUCT = "sum", "avg", "max", "min", "product"


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} ({e})") from None
    return MPI


def is_available():
    """True when mpi4py is installed (checked without importing it, so MPI is not started)."""
    return importlib.util.find_spec("mpi4py") is not None


def is_launched():
    """True when this process was started by ``mpiexec`` (or srun) as one of several ranks.

    The Trainer uses it to join the group only when there is one to join:
    ``if dist.is_launched(): dist.init_process_group()``.
    """
    for var in _SIZE_VARS:
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            pass
    return False


def mpiexec_path():
    """The ``mpiexec`` that belongs to this Python (the mpich wheel puts it beside ``python``), or the one
    on PATH, or None."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


class ProcessGroup:
    """A set of ranks that run collectives together: a wrapper around an MPI communicator.

    ``comm`` is the group's own duplicate of the communicator it was made from, so tidu's messages never
    mix with those of other MPI code in the same program.
    """

    def __init__(self, comm):
        self.comm = comm.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        MPI = _mpi()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)  # the ranks on this machine
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()

    def __repr__(self):
        return f"ProcessGroup(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"


_default = None           # the default ProcessGroup once initialized
_previous_excepthook = None


def init_process_group(backend="mpi", *, comm=None, abort_on_exception=True):
    """Join the MPI world (started by ``mpiexec -n N python train.py``) and return the default group.

    Idempotent: a second call returns the same group. With ``abort_on_exception`` (default), an exception
    that escapes any rank prints its traceback, prefixed with the rank, and aborts the whole job
    (``MPI_Abort``): the other ranks would otherwise wait forever in their next collective.
    ``comm``: an mpi4py communicator to use instead of ``COMM_WORLD``.
    """
    global _default
    if backend not in ("mpi", None):
        raise ValueError(f"init_process_group: backend {backend!r} is not supported; tidu runs over MPI "
                         "(backend='mpi')")
    if _default is not None:
        return _default
    MPI = _mpi()
    _default = ProcessGroup(comm if comm is not None else MPI.COMM_WORLD)
    if abort_on_exception and _default.size > 1:
        _install_excepthook()
    return _default


def destroy_process_group():
    """Leave the group (MPI itself is finalized by mpi4py when the program exits)."""
    global _default, _previous_excepthook
    if _default is None:
        return
    _default.comm.Free()
    _default = None
    if _previous_excepthook is not None:
        sys.excepthook, _previous_excepthook = _previous_excepthook, None


def is_initialized():
    return _default is not None


def abort(code=1):
    """End every rank of the job now (``MPI_Abort``); what the excepthook calls."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        _mpi().COMM_WORLD.Abort(code)


def _excepthook(kind, value, tb):
    rank, size = get_rank(), get_world_size()
    try:
        sys.stderr.write(f"[tidu.distributed] rank {rank} of {size} failed; aborting the whole job:\n")
        traceback.print_exception(kind, value, tb)
    finally:
        abort(1)


def _install_excepthook():
    global _previous_excepthook
    if sys.excepthook is not _excepthook:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook


def _group(group):
    g = group if group is not None else _default
    if g is None and is_launched():
        raise RuntimeError("tidu.distributed: this process was started by mpiexec as one of several ranks, but "
                           "the process group is not initialized; call tidu.distributed.init_process_group() "
                           "first (on every rank)")
    return g


def get_rank(group=None):
    """This process's rank in the group (0 when not initialized)."""
    g = group if group is not None else _default
    return 0 if g is None else g.rank


def get_world_size(group=None):
    """The number of processes in the group (1 when not initialized)."""
    g = group if group is not None else _default
    return 1 if g is None else g.size


def get_local_rank(group=None):
    """The rank among the processes on this machine (picks a GPU: ``device=f"cuda:{local_rank}"``)."""
    g = group if group is not None else _default
    return 0 if g is None else g.local_rank


def is_main_process(group=None):
    """True on rank 0: the one that logs, draws and writes checkpoints."""
    return get_rank(group) == 0


def barrier(group=None):
    """Wait until every rank has reached this call."""
    g = _group(group)
    if g is not None and g.size > 1:
        g.comm.Barrier()


def _buffer(x, op):
    """The contiguous array behind ``x`` (an ndarray or Tensor), and a function that writes results back."""
    a = x.data if isinstance(x, Tensor) else x
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: expected a NumPy array or a Tensor, got {type(x).__name__}"
                        + (" (GPU arrays: move to the CPU first)" if hasattr(a, "__cuda_array_interface__") else ""))
    if a.flags.c_contiguous and a.flags.writeable:
        return a, lambda buf: None
    buf = np.ascontiguousarray(a)

    def write_back(b):
        a[...] = b
    return buf, write_back


def broadcast(tensor, src=0, group=None):
    """Copy ``tensor`` (an array or Tensor, in place) from rank ``src`` to every rank; returns it."""
    g = _group(group)
    if g is None or g.size == 1:
        return tensor
    buf, write_back = _buffer(tensor, "broadcast")
    g.comm.Bcast(buf, root=src)
    write_back(buf)
    return tensor


_OPS = {"sum": "SUM", "avg": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN", "product": "PROD", "prod": "PROD"}


def all_reduce(tensor, op=ReduceOp.SUM, group=None):
    """Reduce ``tensor`` (an array or Tensor) over all ranks, in place, with ``op`` ("sum", "avg", "max",
    "min", "product"); every rank gets the result, which is also returned."""
    key = str(op).lower()
    if key not in _OPS:
        raise ValueError(f"all_reduce: unknown op {op!r}; expected one of sum, avg, max, min, product")
    g = _group(group)
    if g is None or g.size == 1:
        return tensor
    buf, write_back = _buffer(tensor, "all_reduce")
    if key in ("avg", "mean") and buf.dtype.kind not in "fc":
        raise TypeError(f"all_reduce: op 'avg' needs a floating array, got {buf.dtype}; use 'sum' and divide")
    g.comm.Allreduce(_mpi().IN_PLACE, buf, op=getattr(_mpi(), _OPS[key]))
    if key in ("avg", "mean"):
        buf *= buf.dtype.type(1.0 / g.size)
    write_back(buf)
    return tensor


def all_gather(tensor_list, tensor=None, group=None):
    """Every rank's ``tensor``, in rank order.

    PyTorch's form ``all_gather(tensor_list, tensor)`` fills ``tensor_list`` (in place, or appends when
    it is empty); ``all_gather(tensor)`` returns a new list. The arrays must have one shape and dtype.
    """
    if tensor is None:
        tensor, tensor_list = tensor_list, None
    a = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
    g = _group(group)
    if g is None or g.size == 1:
        parts = [a.copy()]
    else:
        a = np.ascontiguousarray(a)
        out = np.empty((g.size,) + a.shape, dtype=a.dtype)
        g.comm.Allgather(a, out)
        parts = list(out)
    wrap = (lambda p: Tensor(p)) if isinstance(tensor, Tensor) else (lambda p: p)
    if tensor_list is None:
        return [wrap(p) for p in parts]
    if len(tensor_list) == 0:
        tensor_list.extend(wrap(p) for p in parts)
    elif len(tensor_list) != len(parts):
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} entries for a group of {len(parts)} ranks")
    else:
        for dst, p in zip(tensor_list, parts):
            (dst.data if isinstance(dst, Tensor) else dst)[...] = p
    return tensor_list


def broadcast_object(obj, src=0, group=None):
    """Rank ``src``'s ``obj`` (any picklable object), returned on every rank."""
    g = _group(group)
    return obj if g is None or g.size == 1 else g.comm.bcast(obj, root=src)


def all_gather_object(obj, group=None):
    """Every rank's ``obj``, as a list in rank order."""
    g = _group(group)
    return [obj] if g is None or g.size == 1 else g.comm.allgather(obj)


def _number(v, key):
    if isinstance(v, Tensor):
        v = v.data
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"all_reduce_metrics: metric {key!r} must be a number or a one-element tensor, "
                        f"got {type(v).__name__}") from None


def all_reduce_metrics(metrics, weight=None, op="mean", group=None):
    """Combine a dict of per-rank metrics into the same dict of floats on every rank.

    ``op="mean"`` (default) averages, weighted by ``weight`` (e.g. the number of samples this rank saw,
    so an epoch's accuracy is the accuracy over all samples); ``"sum"``, ``"max"``, ``"min"`` reduce
    as named. All ranks must pass the same keys.
    """
    if op not in ("mean", "sum", "max", "min"):
        raise ValueError(f"all_reduce_metrics: unknown op {op!r}; expected mean, sum, max or min")
    keys = list(metrics)
    values = np.array([_number(metrics[k], k) for k in keys], dtype=np.float64)
    g = _group(group)
    if g is None or g.size == 1:
        return dict(zip(keys, values.tolist()))
    every = g.comm.allgather(keys)
    if any(k != keys for k in every):
        shown = "; ".join(f"rank {r}: {k}" for r, k in enumerate(every))
        raise ValueError(f"all_reduce_metrics: the ranks passed different metric names ({shown})")
    if op == "mean":
        w = 1.0 if weight is None else _number(weight, "weight")
        buf = np.append(values * w, w)
        all_reduce(buf, "sum", g)
        if buf[-1] == 0:
            raise ValueError("all_reduce_metrics: the weights sum to 0 over the ranks")
        values = buf[:-1] / buf[-1]
    else:
        all_reduce(values, op, g)
    return dict(zip(keys, values.tolist()))
