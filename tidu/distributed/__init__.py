"""Data-parallel training over MPI: the same model on N processes, each on its share of the data.

Run a script on N processes of one machine with ``mpiexec -n N python train.py`` (several machines:
``mpiexec -f hostfile -n N python train.py``). In the script, four changes turn a loop into a
data-parallel one — PyTorch's names::

    import tidu.distributed as dist
    dist.init_process_group()                                # join the MPI world
    model = dist.DistributedDataParallel(model)              # same start, averaged gradients
    sampler = dist.DistributedSampler(train_set)             # each rank its own share
    loader = td.data.DataLoader(train_set, batch_size=32, sampler=sampler)   # 32 per rank
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for xb, yb in loader: ...                            # the usual step
        logs = dist.all_reduce_metrics({"loss": loss}, weight=n_seen)
        if dist.is_main_process(): print(logs)              # only rank 0 logs and saves

With ``tidu.train.Trainer`` none of this is written by hand: the same script that calls ``trainer.fit``
trains on N processes under ``mpiexec -n N`` (``tidu.distributed.training``: the Trainer joins the group,
wraps the model, shards the data, merges the metrics, and only rank 0 writes).

mpi4py (the ``distributed`` extra) is imported by ``init_process_group`` only: ``import tidu`` and
this package do not need it, and without it every function here acts on a group of one process.

>>> import tidu.distributed as dist
>>> dist.is_initialized(), dist.get_world_size(), dist.is_main_process()
(False, 1, True)
"""
from .batchnorm import SyncBatchNorm, sync_batch_norm
from .ddp import DistributedDataParallel
from .mpi import (ProcessGroup, ReduceOp, abort, all_gather, all_gather_object, all_reduce, all_reduce_metrics,
                  barrier, broadcast, broadcast_object, destroy_process_group, get_local_rank, get_rank,
                  get_world_size, init_process_group, is_available, is_initialized, is_launched, is_main_process,
                  mpiexec_path)
from .sampler import DistributedSampler

__all__ = ["init_process_group", "destroy_process_group", "is_available", "is_initialized", "is_launched",
           "get_rank", "get_world_size", "get_local_rank", "is_main_process", "barrier", "broadcast", "all_reduce",
           "all_gather", "broadcast_object", "all_gather_object", "all_reduce_metrics", "abort", "ReduceOp",
           "ProcessGroup", "DistributedSampler", "DistributedDataParallel", "SyncBatchNorm", "sync_batch_norm",
           "distribute_loader", "mpiexec_path"]


def distribute_loader(loader, shuffle=None, seed=None, drop_last=False):
    """A DataLoader like ``loader`` that reads only this rank's share: the same dataset, batch size
    (per rank), collate function and prefetch, with a ``DistributedSampler``.

    ``shuffle`` defaults to the loader's own; ``seed`` defaults to one drawn from the loader's generator
    (so a loader made with ``seed=`` gives the same order in every run), rank 0's being used by all.
    With one process the loader is returned unchanged. Each pass over the new loader is a new epoch of
    the sampler (``loader.sampler.set_epoch(e)`` sets it explicitly).
    """
    from ..data import DataLoader
    if get_world_size() == 1:
        return loader
    if loader.batch_size is None or loader._iterable:
        raise ValueError("distribute_loader: the loader must read a map-style dataset with batch_size "
                         "(not a batch_sampler or an IterableDataset); give it a DistributedSampler yourself")
    if seed is None:  # drawn on every rank (their generators stay in step), rank 0's kept
        seed = broadcast_object(0 if loader.generator is None else int(loader.generator.integers(2**31)))
    sampler = DistributedSampler(loader.dataset, shuffle=loader.shuffle if shuffle is None else shuffle, seed=seed,
                                 drop_last=drop_last)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, drop_last=loader.drop_last,
                      collate_fn=loader.collate_fn, prefetch=loader.prefetch, sampler=sampler)
