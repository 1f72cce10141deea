"""Training: ``Trainer`` (fit / evaluate / predict), callbacks, metrics, checkpoints, progress and plots.

>>> from tidu.train import Trainer, callbacks, metrics
>>> metrics.accuracy([0, 1, 1], [0, 1, 0])
0.6666666666666666

The pieces work without the Trainer too (STYLE.md §9): metrics accumulate over batches
(``metrics.Accuracy().update(y, pred)``), callbacks take their hooks from any loop
(``callbacks.CallbackList``), ``ProgressBar`` prints from any loop, and ``checkpoint`` saves and
restores a run. Only this package writes to the terminal; nothing below it prints.
"""
from . import callbacks, checkpoint, metrics, plots, progress
from .callbacks import (Callback, CallbackList, CSVLogger, EarlyStopping, GradientAccumulation, GradientClipping,
                        JSONLLogger, LambdaCallback, LRSchedulerCallback, ModelCheckpoint, NonFiniteGuard,
                        NonFiniteLossError)
from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from .history import History
from .plots import redraw
from .progress import ProgressBar
from .trainer import LOSSES, Trainer

__all__ = ["Trainer", "History", "LOSSES", "callbacks", "metrics", "checkpoint", "plots", "progress", "Callback",
           "CallbackList", "EarlyStopping", "ModelCheckpoint", "LRSchedulerCallback", "GradientClipping",
           "GradientAccumulation", "CSVLogger", "JSONLLogger", "LambdaCallback", "NonFiniteGuard",
           "NonFiniteLossError", "ProgressBar", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "load_weights", "redraw"]
