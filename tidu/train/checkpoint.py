"""Training checkpoints that lose nothing: one safetensors file from which a run continues exactly.

A checkpoint holds the model's ``state_dict`` (its tensors named ``model.<key>``, so PyTorch's
``safetensors`` reads them), the optimizer's and the scheduler's state, tidu's random generator, the
data loaders' position (shuffle generator, epoch, batches read), the epoch and step counters, the
history, the callbacks' state (patience spent, best value), the fitted preprocessing and the config.
Everything that is not a tensor travels as JSON in the file's metadata; nothing is pickled. The file
is written to a temporary name and renamed (``td.save``), so a crash never leaves half a checkpoint
where a good one was.

Loading refuses, with a ``tidu.io.CheckpointError`` naming the file, a truncated or corrupted file,
a file that is not a training checkpoint, and one that does not fit: the key and both shapes for a
weight of another shape, the keys for missing or unexpected weights.

>>> import os, tempfile, tidu as td, tidu.nn as nn
>>> from tidu.train import checkpoint
>>> model = nn.Linear(3, 2)
>>> path = os.path.join(tempfile.mkdtemp(), "last.safetensors")
>>> checkpoint.save_checkpoint(path, model, epoch=4, config={"lr": 0.1})
>>> state = checkpoint.load_checkpoint(path); state["epoch"], state["config"]
(4, {'lr': 0.1})
>>> checkpoint.load_weights(path, nn.Linear(3, 5))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tidu.io.safetensors.CheckpointError: ...: 'weight' has shape (2, 3) in the checkpoint but (5, 3) in the model
"""
import os

import numpy as np

from .. import backend
from ..io import CheckpointError
from ..io import load as _load
from ..io import save as _save

__all__ = ["save_checkpoint", "load_checkpoint", "restore", "load_weights", "check_model_state", "FORMAT",
           "VERSION", "CheckpointError"]

FORMAT = "tidu.train.checkpoint"
VERSION = 1


def _state_of(obj):
    return None if obj is None else obj.state_dict()


def _loader_state(loader):
    state = {"state": loader.state_dict()}
    try:
        state["batches"] = len(loader)
    except TypeError:
        pass
    return state


def save_checkpoint(path, model, optimizer=None, scheduler=None, loaders=None, epoch=0, global_step=0, history=None,
                    callbacks=None, preprocessor=None, config=None, extra=None):
    """Write a training checkpoint to ``path`` (atomically).

    ``loaders``: a dict name -> DataLoader (those with ``state_dict``); ``history``: a ``History`` or
    a dict; ``callbacks``: a dict name -> state; ``preprocessor``: an object with ``state_dict()`` or
    its state; ``config``: a JSON-able dict; ``extra``: anything else ``td.save`` stores.
    """
    from .. import __version__
    loaders = {name: _loader_state(l) for name, l in (loaders or {}).items()
               if l is not None and hasattr(l, "state_dict")}
    state = {
        "format": FORMAT, "version": VERSION, "tidu_version": __version__,
        "model": model.state_dict(), "model_class": type(model).__name__,
        "optimizer": _state_of(optimizer), "optimizer_class": None if optimizer is None else type(optimizer).__name__,
        "scheduler": _state_of(scheduler), "scheduler_class": None if scheduler is None else type(scheduler).__name__,
        "rng": backend.get_rng_state(),
        "loaders": loaders,
        "epoch": int(epoch), "global_step": int(global_step),
        "history": history.to_dict() if hasattr(history, "to_dict") else history,
        "callbacks": callbacks or {},
        "preprocessor": preprocessor.state_dict() if hasattr(preprocessor, "state_dict") else preprocessor,
        "config": config,
        "extra": extra,
    }
    _save(state, path)


def load_checkpoint(path):
    """Read a training checkpoint into a dict (the keys ``save_checkpoint`` wrote); refuses, naming
    ``path``, a missing, truncated or corrupted file and one that is not a tidu training checkpoint."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_checkpoint: no checkpoint at {path!r}")
    state = _load(path)  # raises CheckpointError, naming the file, when truncated or corrupted
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        keys = sorted(state)[:6] if isinstance(state, dict) else []
        raise CheckpointError(f"load_checkpoint: {path!r} is not a tidu training checkpoint (it holds {keys}...); "
                              "for a file of weights only, use model.load_state_dict(td.load(path))")
    if state.get("version") != VERSION:
        raise CheckpointError(f"load_checkpoint: {path!r} has checkpoint version {state.get('version')!r}; this tidu "
                              f"reads version {VERSION}")
    return state


def _shape(v):
    return tuple(getattr(v, "shape", np.shape(v)))


def check_model_state(saved, model, path="<checkpoint>"):
    """Raise ``CheckpointError`` unless ``saved`` (a state dict) has exactly the model's keys and shapes."""
    current = model.state_dict()
    for key, value in current.items():
        if key in saved and _shape(saved[key]) != _shape(value):
            raise CheckpointError(f"{path!r} does not fit the model {type(model).__name__}: {key!r} has shape "
                                  f"{_shape(saved[key])} in the checkpoint but {_shape(value)} in the model")
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    if missing or unexpected:
        parts = ([f"missing from the checkpoint: {missing[:8]}"] if missing else []) + \
                ([f"not in the model: {unexpected[:8]}"] if unexpected else [])
        raise CheckpointError(f"{path!r} does not fit the model {type(model).__name__}: keys " + "; ".join(parts))


def load_weights(path, model):
    """Load only the model weights from ``path`` — a training checkpoint or a plain state-dict file —
    after checking keys and shapes. Returns the model."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_weights: no file at {path!r}")
    state = _load(path)
    saved = state["model"] if isinstance(state, dict) and state.get("format") == FORMAT else state
    check_model_state(saved, model, path)
    model.load_state_dict(saved)
    return model


def restore(state, path, model=None, optimizer=None, scheduler=None, loaders=None, rng=True):
    """Put what :func:`load_checkpoint` read back into the objects given (each one optional).

    Checks everything before changing anything, so a checkpoint that does not fit leaves the objects
    as they were. ``loaders``: a dict name -> DataLoader, matched by name.
    """
    if model is not None:
        check_model_state(state["model"], model, path)
    for what, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if state.get(what) is None:
            raise CheckpointError(f"{path!r} has no {what} state, but a {type(obj).__name__} was given to restore")
        saved_class = state.get(f"{what}_class")
        if saved_class is not None and saved_class != type(obj).__name__:
            raise CheckpointError(f"{path!r} holds the state of a {saved_class} {what}, not of a {type(obj).__name__}")
    saved_loaders = state.get("loaders") or {}
    for name, loader in (loaders or {}).items():
        if loader is None or name not in saved_loaders or not hasattr(loader, "load_state_dict"):
            continue
        batches = saved_loaders[name].get("batches")
        try:
            now = len(loader)
        except TypeError:
            now = None
        if batches is not None and now is not None and batches != now:
            raise CheckpointError(f"{path!r}: the {name} loader had {batches} batches per epoch when saved and has "
                                  f"{now} now; resume with the same data and batch size")

    if model is not None:
        model.load_state_dict(state["model"])
    if optimizer is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path!r}: the optimizer state does not fit this optimizer: {e}") from None
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    for name, loader in (loaders or {}).items():
        if loader is not None and name in saved_loaders and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(saved_loaders[name]["state"])
    if rng and state.get("rng") is not None:
        backend.set_rng_state(state["rng"])
