"""Callbacks: code that runs at fixed points of training, in the ``Trainer`` or in a loop you write.

A callback overrides some of the hooks (Keras's names, plus one before each optimizer step):

    on_train_begin(logs)         on_train_end(logs)
    on_epoch_begin(epoch, logs)  on_epoch_end(epoch, logs)     epoch counts from 0
    on_batch_begin(batch, logs)  on_batch_end(batch, logs)     batch counts from 0 in each epoch
    on_before_optimizer_step(step, logs)                       after backward, before optimizer.step()

``logs`` is a dict of numbers: at the end of an epoch ``loss``, the metrics, ``val_loss`` and the
validation metrics, and ``lr``. A callback that wants training to stop sets ``self.stop_training``.
The ``Trainer`` binds every callback to itself (``set_trainer``); in a hand-written loop, bind the
model (and optimizer) yourself and call the hooks — :class:`CallbackList` calls them on many:

>>> import tidu as td, tidu.nn as nn
>>> from tidu.train.callbacks import CallbackList, EarlyStopping
>>> model = nn.Linear(2, 1)
>>> cbs = CallbackList([EarlyStopping(monitor="val_loss", patience=2)], model=model)
>>> for epoch, val_loss in enumerate([0.9, 0.5, 0.6, 0.7, 0.4]):
...     cbs.on_epoch_end(epoch, {"val_loss": val_loss})
...     if cbs.stop_training:
...         break
>>> epoch
3

A callback whose ``state_dict()`` is not empty is saved in checkpoints, so that a resumed run
continues it (the patience already spent, the best value so far).
"""
import csv
import io
import json
import math
import os

import numpy as np

from ..io import atomic_write

__all__ = ["Callback", "CallbackList", "EarlyStopping", "ModelCheckpoint", "LRSchedulerCallback", "GradientClipping",
           "GradientAccumulation", "CSVLogger", "JSONLLogger", "NonFiniteGuard", "NonFiniteLossError", "LambdaCallback"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last finite loss."""


class Callback:
    """Base class: every hook does nothing. ``trainer``, ``model`` and ``optimizer`` are set by
    ``set_trainer`` (the Trainer does it) or ``bind`` (a hand-written loop does it)."""

    trainer = None
    model = None
    optimizer = None
    stop_training = False

    def set_trainer(self, trainer):
        self.trainer, self.model, self.optimizer = trainer, trainer.model, trainer.optimizer

    def bind(self, model=None, optimizer=None):
        """Attach a model and optimizer for use outside a Trainer; returns the callback."""
        if model is not None:
            self.model = model
        if optimizer is not None:
            self.optimizer = optimizer
        return self

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_before_optimizer_step(self, step, logs=None):
        pass

    def state_dict(self):
        """What a checkpoint keeps of this callback (numbers, strings, arrays, nested dicts)."""
        return {}

    def load_state_dict(self, state):
        pass

    def _stop(self):
        self.stop_training = True
        if self.trainer is not None:
            self.trainer.stop_training = True


_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end",
          "on_before_optimizer_step")


class CallbackList:
    """Calls a hook on each callback in order; ``stop_training`` is true when any callback asks to stop."""

    def __init__(self, callbacks=(), model=None, optimizer=None, trainer=None):
        self.callbacks = list(callbacks)
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks: item {i} is a {type(cb).__name__}, not a tidu.train.callbacks.Callback "
                                "(subclass Callback, or wrap functions in LambdaCallback)")
            if trainer is not None:
                cb.set_trainer(trainer)
            else:
                cb.bind(model, optimizer)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    @property
    def stop_training(self):
        return any(cb.stop_training for cb in self.callbacks)

    def __getattr__(self, name):
        if name not in _HOOKS:
            raise AttributeError(name)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, name)(*args, **kwargs)
        return call


class LambdaCallback(Callback):
    """A callback from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, **hooks):
        for name, fn in hooks.items():
            if name not in _HOOKS:
                raise ValueError(f"LambdaCallback: unknown hook {name!r}; hooks are {', '.join(_HOOKS)}")
            setattr(self, name, fn)


# --- monitoring a value: shared by EarlyStopping and ModelCheckpoint ---

def _mode_for(monitor, mode, who):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    from . import metrics
    base = monitor[4:] if monitor.startswith("val_") else monitor
    if "loss" in base or "error" in base:
        return "min"
    try:
        return "max" if metrics.get(base).higher_is_better else "min"
    except ValueError:
        return "min"


def _monitored(logs, monitor, who):
    logs = logs or {}
    if monitor not in logs:
        hint = (" (pass val_data to fit, or monitor a training value such as 'loss')"
                if monitor.startswith("val_") else "")
        raise ValueError(f"{who}: the monitored value {monitor!r} is not in the logs{hint}; "
                         f"available: {sorted(logs)}")
    return float(logs[monitor])


class _Monitor(Callback):
    def __init__(self, monitor, mode, min_delta, who):
        self.monitor, self.min_delta = monitor, abs(float(min_delta))
        self._who, self._mode_arg = who, mode
        self.mode = _mode_for(monitor, mode, who) if monitor is not None else None
        self.best, self.best_epoch = None, None

    def _resolve(self, logs):
        """The monitored name: ``monitor``, or (when None) ``val_loss`` if present, else ``loss``."""
        if self.monitor is None:
            self.monitor = "val_loss" if "val_loss" in (logs or {}) else "loss"
            self.mode = _mode_for(self.monitor, self._mode_arg, self._who)
        return _monitored(logs, self.monitor, self._who)

    def _improved(self, value):
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``mode``: 'min', 'max', or 'auto' (losses and errors go down, accuracies up). With
    ``restore_best_weights`` the model gets the weights of its best epoch back when training ends.
    ``stopped_epoch`` is the epoch after which training stopped (None while it goes on).
    """

    def __init__(self, monitor="val_loss", patience=0, mode="auto", min_delta=0.0, restore_best_weights=False):
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 0, got {patience!r}")
        super().__init__(monitor, mode, min_delta, "EarlyStopping")
        self.patience, self.restore_best_weights = int(patience), bool(restore_best_weights)
        self.wait, self.stopped_epoch, self.best_weights = 0, None, None

    def on_train_begin(self, logs=None):
        self.stop_training = False

    def on_epoch_end(self, epoch, logs=None):
        value = self._resolve(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: np.array(v.numpy(), copy=True) for k, v in self._model().state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self._stop()

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self._model().load_state_dict(self.best_weights)

    def _model(self):
        if self.model is None:
            raise RuntimeError("EarlyStopping(restore_best_weights=True) needs the model: use it in a Trainer, or "
                               "call .bind(model) first")
        return self.model

    def state_dict(self):
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self.monitor = state["monitor"]
        if self.monitor is not None:
            self.mode = _mode_for(self.monitor, self._mode_arg, self._who)
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.stopped_epoch = state["stopped_epoch"]
        weights = state.get("best_weights")
        self.best_weights = None if weights is None else \
            {k: np.asarray(getattr(v, "data", v)) for k, v in weights.items()}


class ModelCheckpoint(_Monitor):
    """Save a checkpoint when ``monitor`` improves (``save_best_only``, the default) or every epoch.

    In a Trainer it writes a full checkpoint (``Trainer.save_checkpoint``) to ``filepath``, by default
    ``RUN_DIR/checkpoints/best.safetensors``; in a hand-written loop it saves ``model.state_dict()``.
    ``filepath`` may hold ``{epoch}`` and any log value, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.safetensors"``
    (``epoch`` counted from 1 there). ``monitor=None`` watches ``val_loss`` when there is validation
    data, else ``loss``.
    """

    def __init__(self, filepath=None, monitor=None, mode="auto", save_best_only=True, min_delta=0.0):
        super().__init__(monitor, mode, min_delta, "ModelCheckpoint")
        self.filepath, self.save_best_only = filepath, bool(save_best_only)
        self.last_saved = None

    def _path(self, epoch, logs):
        path = self.filepath
        if path is None:
            run_dir = getattr(self.trainer, "run_dir", None)
            if run_dir is None:
                raise ValueError("ModelCheckpoint: give a filepath, or use it in a Trainer that has a run_dir")
            path = os.path.join(run_dir, "checkpoints", "best.safetensors")
        return os.fspath(path).format(epoch=epoch + 1, **(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        value = self._resolve(logs)
        improved = self._improved(value)
        if improved:
            self.best, self.best_epoch = value, epoch
        if improved or not self.save_best_only:
            path = self._path(epoch, logs)
            if self.trainer is not None:
                self.trainer.save_checkpoint(path)
            elif self.model is not None:
                from ..io import save
                save(self.model.state_dict(), path)
            else:
                raise RuntimeError("ModelCheckpoint: no model to save; use it in a Trainer or call .bind(model)")
            self.last_saved = path

    def state_dict(self):
        return {"monitor": self.monitor, "best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state):
        self.monitor = state["monitor"]
        if self.monitor is not None:
            self.mode = _mode_for(self.monitor, self._mode_arg, self._who)
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class LRSchedulerCallback(Callback):
    """Step a learning-rate scheduler once per epoch (``interval='epoch'``) or after every optimizer
    step (``'batch'``). ``ReduceLROnPlateau`` is stepped with the monitored value (``monitor``, by
    default ``val_loss``, or ``loss`` when there is no validation)."""

    def __init__(self, scheduler, interval="epoch", monitor="val_loss"):
        if interval not in ("epoch", "batch"):
            raise ValueError(f"LRSchedulerCallback: interval must be 'epoch' or 'batch', got {interval!r}")
        if not hasattr(scheduler, "step"):
            raise TypeError(f"LRSchedulerCallback: expected a scheduler with step(), got {type(scheduler).__name__}")
        self.scheduler, self.interval, self.monitor = scheduler, interval, monitor

    @property
    def _plateau(self):
        return type(self.scheduler).__name__ == "ReduceLROnPlateau"

    def on_epoch_end(self, epoch, logs=None):
        if self.interval != "epoch":
            return
        if self._plateau:
            logs = logs or {}
            key = self.monitor if self.monitor in logs or not self.monitor.startswith("val_") else self.monitor[4:]
            self.scheduler.step(_monitored(logs, key, "LRSchedulerCallback"))
        else:
            self.scheduler.step()

    def on_batch_end(self, batch, logs=None):
        if self.interval == "batch" and (logs or {}).get("optimizer_step", True):
            if self._plateau:
                self.scheduler.step(_monitored(logs, "loss", "LRSchedulerCallback"))
            else:
                self.scheduler.step()

    def state_dict(self):
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state["scheduler"])


class GradientClipping(Callback):
    """Clip the gradients before each optimizer step: their total norm to ``max_norm``
    (``clip_grad_norm_``), and/or each value to ``[-clip_value, clip_value]``. The norm before
    clipping goes into the batch logs as ``grad_norm``."""

    def __init__(self, max_norm=None, norm_type=2.0, clip_value=None):
        if max_norm is None and clip_value is None:
            raise ValueError("GradientClipping: give max_norm (clip the total norm) or clip_value (clip each value)")
        for name, v in (("max_norm", max_norm), ("clip_value", clip_value)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or v <= 0):
                raise ValueError(f"GradientClipping: {name} must be a positive number, got {v!r}")
        self.max_norm, self.norm_type, self.clip_value = max_norm, norm_type, clip_value

    def _parameters(self):
        if self.optimizer is not None:
            return [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.model is not None:
            return list(self.model.parameters())
        raise RuntimeError("GradientClipping: no parameters; use it in a Trainer or call .bind(model)")

    def on_before_optimizer_step(self, step, logs=None):
        from ..optim import clip_grad_norm_, clip_grad_value_
        params = self._parameters()
        if self.clip_value is not None:
            clip_grad_value_(params, self.clip_value)
        if self.max_norm is not None:
            norm = clip_grad_norm_(params, self.max_norm, self.norm_type)
            if logs is not None:
                logs["grad_norm"] = float(norm.item())


class GradientAccumulation(Callback):
    """Sum the gradients of ``steps`` batches before each optimizer step (an effective batch ``steps``
    times larger); each batch's loss is divided by the number of batches in its group. In a Trainer
    this is the same as ``Trainer(accumulate_steps=steps)``; in a loop, ``should_step(batch)`` tells
    when to step."""

    def __init__(self, steps):
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"GradientAccumulation: steps must be an integer >= 1, got {steps!r}")
        self.steps = int(steps)

    def set_trainer(self, trainer):
        super().set_trainer(trainer)
        trainer.accumulate_steps = self.steps

    def should_step(self, batch, num_batches=None):
        """True after the last batch of a group (and after the epoch's last batch)."""
        return (batch + 1) % self.steps == 0 or (num_batches is not None and batch + 1 == num_batches)


class NonFiniteGuard(Callback):
    """Stop training when the loss is NaN or infinite, with the step and the last finite loss.

    The Trainer always has one and checks each loss before its backward pass, so the weights are
    those of the last good step. In a loop, call ``check(loss, step)`` (or pass the batch's loss to
    ``on_batch_end`` in ``logs['loss']``).

    >>> guard = NonFiniteGuard()
    >>> guard.check(0.5, step=1)
    0.5
    >>> guard.check(float("nan"), step=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tidu.train.callbacks.NonFiniteLossError: the loss is nan at step 2; the last finite loss was 0.5 at step 1. ...
    """

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget the losses seen (a new run)."""
        self.last_finite, self.last_finite_step = None, None
        self._step = 0

    def check(self, loss, step=None, epoch=None, batch=None):
        """Return ``loss`` as a float, or raise :class:`NonFiniteLossError` if it is NaN or infinite."""
        value = float(loss.item() if hasattr(loss, "item") else loss)
        self._step = self._step + 1 if step is None else int(step)
        if math.isfinite(value):
            self.last_finite, self.last_finite_step = value, self._step
            return value
        where = f"step {self._step}"
        if epoch is not None:
            where += f" (epoch {epoch + 1}" + (f", batch {batch + 1})" if batch is not None else ")")
        last = (f"the last finite loss was {self.last_finite:.6g} at step {self.last_finite_step}"
                if self.last_finite is not None else "no finite loss was seen before it")
        raise NonFiniteLossError(
            f"the loss is {value} at {where}; {last}. Training stopped before this step's update, so the "
            "weights are those of the last finite step. Try a lower learning rate, gradient clipping "
            "(grad_clip=1.0), or check the inputs and targets for NaN/inf.")

    def on_batch_end(self, batch, logs=None):
        if self.trainer is None and logs and "loss" in logs:  # the Trainer checks before backward itself
            self.check(logs["loss"], batch=batch)

    def state_dict(self):
        return {"last_finite": self.last_finite, "last_finite_step": self.last_finite_step, "step": self._step}

    def load_state_dict(self, state):
        self.last_finite, self.last_finite_step = state["last_finite"], state["last_finite_step"]
        self._step = state.get("step", 0)


# --- logs in the run folder ---

def _finite_or_none(v):
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


class _FileLogger(Callback):
    """One row per epoch; the whole file is rewritten atomically each epoch, so it is never half
    written and a resumed run drops the rows of epochs its checkpoint did not reach."""

    default_name = None

    def __init__(self, filename=None, append=False):
        self.filename, self.append = filename, bool(append)
        self.rows = []

    def _path(self):
        if self.filename is not None:
            return os.fspath(self.filename)
        run_dir = getattr(self.trainer, "run_dir", None)
        if run_dir is None:
            raise ValueError(f"{type(self).__name__}: give a filename, or use it in a Trainer that has a run_dir")
        return os.path.join(run_dir, self.default_name)

    def on_train_begin(self, logs=None):
        history = getattr(self.trainer, "history", None)
        if history is not None and len(history):   # a resumed (or continued) run: its rows so far
            self.rows = [{k: _finite_or_none(v) for k, v in row.items()} for row in history.rows()]
        elif self.append and os.path.exists(self._path()):
            self.rows = self._read(self._path())
        else:
            self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **{k: _finite_or_none(v) for k, v in (logs or {}).items()
                                              if isinstance(v, (int, float, np.number))}})
        with atomic_write(self._path(), "w") as f:
            f.write(self._format(self.rows))


class CSVLogger(_FileLogger):
    """Metrics per epoch as CSV (``RUN_DIR/metrics.csv`` in a Trainer): a header, then one row per epoch."""

    default_name = "metrics.csv"

    def __init__(self, filename=None, separator=",", append=False):
        super().__init__(filename, append)
        self.separator = separator

    def _format(self, rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, delimiter=self.separator, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        return out.getvalue()

    def _read(self, path):
        with open(path, newline="") as f:
            return [{k: (float(v) if v not in ("", None) else None) if k != "epoch" else int(v)
                     for k, v in row.items()} for row in csv.DictReader(f, delimiter=self.separator)]


class JSONLLogger(_FileLogger):
    """Metrics per epoch as JSON lines (``RUN_DIR/metrics.jsonl`` in a Trainer); NaN is written as null."""

    default_name = "metrics.jsonl"

    def _format(self, rows):
        return "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)

    def _read(self, path):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
