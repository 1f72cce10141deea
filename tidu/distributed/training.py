"""What ``tidu.train.Trainer`` does differently when it runs as one of N ranks (``mpiexec -n N``).

The Trainer makes a ``TrainerGroup`` when ``is_launched()``: it joins the process group, turns BatchNorm
layers into ``SyncBatchNorm`` and wraps the model in ``DistributedDataParallel`` (the Trainer keeps the
plain model for checkpoints, evaluation and prediction, so a checkpoint is the same as one process
writes). It gives each rank its share of the training data (``distribute_loader``) and of the
evaluation data (without padding, so no sample counts twice), and merges the ranks' running loss and
metrics exactly — counts and sums add, a confusion matrix adds, the scores of ROC AUC and of function
metrics are gathered — so every rank logs what one process would, and callbacks that watch them
(early stopping, LR on plateau, best checkpoint) decide the same on every rank.
"""
import sys

import numpy as np

from . import mpi
from .batchnorm import SyncBatchNorm
from .ddp import DistributedDataParallel
from .sampler import DistributedSampler

__all__ = ["TrainerGroup", "merge_metric_states"]


def merge_metric_states(metric, states):
    """One state of ``metric`` (a ``tidu.train.metrics.Metric``) from the states of several ranks, in rank
    order. Exact for tidu's metrics; a metric of your own is merged by adding its numbers and arrays (the
    rule for sums and counts) unless its class defines ``merge_states(states)``."""
    from ..train import metrics as M
    if hasattr(type(metric), "merge_states"):
        return type(metric).merge_states(states)
    if isinstance(metric, M._Regression):  # Chan et al.: counts, means and squared deviations combine exactly
        parts = [s for s in states if s["n"]]
        if not parts:
            return states[0]
        n = sum(s["n"] for s in parts)
        mean = sum(s["n"] * np.asarray(s["mean"]) for s in parts) / n
        m2 = sum(np.asarray(s["m2"]) + s["n"] * np.square(np.asarray(s["mean"]) - mean) for s in parts)
        return {"n": n, "sq": sum(np.asarray(s["sq"]) for s in parts),
                "abs": sum(np.asarray(s["abs"]) for s in parts), "mean": mean, "m2": m2}
    gather = isinstance(metric, (M.ROCAUC, M.FunctionMetric))  # these keep every sample's values
    out = {}
    for key in states[0]:
        values = [s[key] for s in states if s[key] is not None]
        if not values:
            out[key] = None
        elif gather:
            out[key] = np.concatenate([np.asarray(v) for v in values])
        elif isinstance(values[0], np.ndarray):  # a confusion matrix may have grown further on one rank
            shape = tuple(max(s) for s in zip(*(v.shape for v in values)))
            out[key] = sum(np.pad(v, [(0, a - b) for a, b in zip(shape, v.shape)]) for v in values)
        else:
            out[key] = sum(values)
    return out


class TrainerGroup:
    """The ranks of one Trainer: ``model`` (the plain model, BatchNorm made SyncBatchNorm), ``ddp`` (it
    wrapped in DistributedDataParallel), ``rank``, ``size``, ``main`` (rank 0: it logs and writes)."""

    def __init__(self, model):
        group = mpi.init_process_group()
        self.rank, self.size, self.main = group.rank, group.size, group.rank == 0
        if isinstance(model, DistributedDataParallel):  # wrapped already by the user
            self.ddp, self.model = model, model.module
        else:  # wrapped now, so that every rank starts from rank 0's weights, even to evaluate
            self.model = SyncBatchNorm.convert_sync_batchnorm(model)
            self.ddp = DistributedDataParallel(self.model)

    def train_loader(self, loader):
        """This rank's share of a DataLoader of a map-style dataset; other loaders as they are (one with a
        DistributedSampler, or an iterable you have sharded yourself)."""
        from ..data import DataLoader
        if (not isinstance(loader, DataLoader) or isinstance(loader.sampler, DistributedSampler)
                or loader.batch_size is None or loader._iterable):
            return loader
        from . import distribute_loader
        return distribute_loader(loader)

    def eval_loader(self, loader):
        """``(loader, sharded)``: rank r reads samples r, r + N, … of a map-style DataLoader (each sample
        once); anything else is read whole on every rank."""
        from ..data import DataLoader
        if not isinstance(loader, DataLoader) or loader.batch_size is None or loader._iterable:
            return loader, False
        shard = range(self.rank, len(loader.dataset), self.size)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn,
                          prefetch=loader.prefetch, sampler=shard), True

    def merge(self, state, copy=False):
        """Make an epoch's running state (``loss``, ``metrics``, ``cm`` of the Trainer) that of all ranks;
        returns it (changed in place, or a new one with ``copy``)."""
        from ..train.metrics import ConfusionMatrix
        cm = state["cm"] or None
        every = mpi.all_gather_object({"loss": state["loss"].state_dict(),
                                       "metrics": [m.state_dict() for m in state["metrics"]],
                                       "cm": None if cm is None else cm.state_dict()})
        if copy:
            state = {"loss": state["loss"].clone(), "metrics": [m.clone() for m in state["metrics"]],
                     "cm": cm and cm.clone()}
            cm = state["cm"]
        state["loss"].load_state_dict(merge_metric_states(state["loss"], [e["loss"] for e in every]))
        for j, m in enumerate(state["metrics"]):
            m.load_state_dict(merge_metric_states(m, [e["metrics"][j] for e in every]))
        cms = [e["cm"] for e in every if e["cm"] is not None]
        if cms:
            state["cm"] = cm or ConfusionMatrix()
            state["cm"].load_state_dict(merge_metric_states(state["cm"], cms))
        return state

    def average(self, arrays):
        """The average over the ranks of each array (new arrays)."""
        return [mpi.all_reduce(np.array(a, copy=True), "avg") for a in arrays]

    def any(self, flag):
        """True on every rank when ``flag`` is true on any."""
        return bool(mpi.all_reduce(np.array([float(bool(flag))]), "max")[0])

    def barrier(self):
        mpi.barrier()

    def fail(self, error):
        """End every rank now, showing ``error``: the others would wait forever in their next collective."""
        mpi._excepthook(type(error), error, error.__traceback__)
        sys.exit(1)  # not reached: MPI_Abort ends the process
