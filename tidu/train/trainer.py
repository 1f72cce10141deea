"""``Trainer``: ``fit``, ``evaluate`` and ``predict`` around a model — a thin layer over the loop you
would write (STYLE.md §9). Each batch: forward, loss, NaN/inf check, backward, optimizer step; the rest
(schedules, clipping, early stopping, checkpoints, logs, progress) are callbacks.

>>> import numpy as np, tidu as td, tidu.nn as nn
>>> from tidu.train import Trainer
>>> _ = td.manual_seed(0)
>>> X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
>>> y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
>>> model = nn.Linear(2, 2)
>>> trainer = Trainer(model, loss="cross_entropy", optimizer=td.optim.SGD(model.parameters(), lr=0.5),
...                   metrics=["accuracy"], progress=False)
>>> history = trainer.fit((X, y), epochs=20, batch_size=16)
>>> history.history["accuracy"][-1] > 0.9, trainer.evaluate((X, y))["accuracy"] > 0.9
(True, True)
>>> trainer.predict(X[:3]).shape, trainer.predict_classes(X[:3]).tolist() == y[:3].tolist()
((3, 2), True)

A run folder (``run_dir``) gets ``checkpoints/last.safetensors`` (every epoch),
``checkpoints/best.safetensors`` (the best epoch by ``val_loss``, or ``loss`` without validation),
``metrics.jsonl``, ``metrics.csv``, ``history.json`` and ``plots/*.png``; ``fit(..., resume=True)``
(or ``Trainer.resume(run_dir, model, optimizer, ...)``) continues a killed run from its last checkpoint
to the same final weights, bit for bit, as a run that was never interrupted.

Under ``mpiexec -n N`` (``tidu.distributed.is_launched()``) the same script trains data-parallel on N
processes: the Trainer joins the process group, makes BatchNorm layers ``SyncBatchNorm``, wraps the
model in ``DistributedDataParallel``, gives each rank its share of the training and validation data
(a DataLoader's ``batch_size`` is then per rank), merges the loss and metrics of all ranks, and only
rank 0 logs, shows progress, draws and writes files (the others wait for it). A failing rank ends
the whole job, showing its error; every rank resumes from the same checkpoint.
"""
import numbers
import os

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor
from . import checkpoint as _ckpt
from . import metrics as _metrics
from .callbacks import (Callback, CallbackList, CSVLogger, GradientClipping, JSONLLogger, LRSchedulerCallback,
                        ModelCheckpoint, NonFiniteGuard)
from .history import History
from .progress import ProgressBar

__all__ = ["Trainer", "LOSSES"]

# name -> (function of tidu.nn.functional, what the model's outputs are)
#   multiclass: logits, one column per class     multiclass_log: log-probabilities (nll_loss)
#   binary: one logit per sample                 binary_prob: one probability per sample
#   regression: values
LOSSES = {
    "mse": ("mse_loss", "regression"), "mse_loss": ("mse_loss", "regression"),
    "mae": ("l1_loss", "regression"), "l1": ("l1_loss", "regression"), "l1_loss": ("l1_loss", "regression"),
    "huber": ("huber_loss", "regression"), "huber_loss": ("huber_loss", "regression"),
    "smooth_l1": ("smooth_l1_loss", "regression"), "smooth_l1_loss": ("smooth_l1_loss", "regression"),
    "cross_entropy": ("cross_entropy", "multiclass"), "ce": ("cross_entropy", "multiclass"),
    "nll": ("nll_loss", "multiclass_log"), "nll_loss": ("nll_loss", "multiclass_log"),
    "bce": ("binary_cross_entropy", "binary_prob"), "binary_cross_entropy": ("binary_cross_entropy", "binary_prob"),
    "bce_with_logits": ("binary_cross_entropy_with_logits", "binary"),
    "binary_cross_entropy_with_logits": ("binary_cross_entropy_with_logits", "binary"),
}
_KINDS_BY_NAME = {"MSELoss": "regression", "L1Loss": "regression", "HuberLoss": "regression",
                  "SmoothL1Loss": "regression", "CrossEntropyLoss": "multiclass", "NLLLoss": "multiclass_log",
                  "BCELoss": "binary_prob", "BCEWithLogitsLoss": "binary",
                  **{fn: kind for fn, kind in LOSSES.values()}}
_TASKS = {"multiclass": "multiclass", "multiclass_log": "multiclass", "binary": "binary", "binary_prob": "binary",
          "regression": "regression"}
_OPTIMIZERS = {"sgd": ("SGD", 0.01), "adam": ("Adam", 1e-3), "adamw": ("AdamW", 1e-3), "rmsprop": ("RMSprop", 1e-3),
               "adagrad": ("Adagrad", 1e-2)}
_TARGET_KEYS = ("y", "label", "labels", "target", "targets")


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Trainer: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def _to_tensor(x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (np.ndarray, np.generic, list, float, int)):
        a = np.asarray(x)
        if a.dtype == np.float64:  # float32 at the boundary (DESIGN.md)
            a = a.astype(np.float32)
        return Tensor(a)
    return x  # strings, None, custom objects: the model's business


def _array(output):
    if isinstance(output, (tuple, list)):  # a model returning several things: the first is the prediction
        output = output[0]
    return output.numpy() if isinstance(output, Tensor) else np.asarray(output)


def _batch_len(x):
    while isinstance(x, (tuple, list, dict)):
        x = next(iter(x.values())) if isinstance(x, dict) else x[0]
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape else 1


def _length(loader):
    try:
        return len(loader)
    except TypeError:
        return None


def _softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class Trainer:
    """Train, evaluate and run a model.

    Args:
        model: a ``tidu.nn.Module`` (anything callable on the batch's inputs with ``parameters()``,
            ``state_dict()``, ``train()`` and ``eval()``).
        loss: a name (``"cross_entropy"``, ``"mse"``, ``"bce_with_logits"``, ``"bce"``, ``"nll"``,
            ``"mae"``/``"l1"``, ``"huber"``, ``"smooth_l1"``), an ``nn`` loss module, or a function
            ``loss(output, target) -> Tensor``. The loss also tells what the outputs are (logits,
            probabilities, values), which decides how metrics and ``predict_proba`` read them.
        optimizer: a ``tidu.optim`` optimizer, or a name (``"adam"``, ``"adamw"``, ``"sgd"``…) with its
            default learning rate.
        metrics: names (``"accuracy"``, ``"f1_macro"``, ``"roc_auc"``, ``"r2"``… see
            ``tidu.train.metrics.names()``), ``Metric`` objects, dicts ``{"name": "precision",
            "pos_label": 0}``, or functions ``fn(y_true, y_pred)``. Logged as ``name`` (training) and
            ``val_name`` (validation).
        scheduler: a learning-rate scheduler, stepped after each epoch (``scheduler_interval="batch"``:
            after each optimizer step); ``ReduceLROnPlateau`` is given ``val_loss`` (else ``loss``).
        callbacks: more ``Callback`` objects, called in order after the built-in schedule and clipping.
        grad_clip: clip the gradients' total norm to this before each step.
        accumulate_steps: sum gradients over this many batches per optimizer step.
        run_dir: a folder for checkpoints, logs and plots (nothing is written without it).
        progress: ``"auto"`` (a bar on a terminal, a line per epoch otherwise), ``True`` (the same),
            ``"bar"``, ``"lines"``, ``False``, or a ``ProgressBar``.
        seed: seeds tidu's generator now (``td.manual_seed``), so loaders made later and dropout repeat.
        config: a JSON-able dict saved in checkpoints (the job's settings).
        preprocessor: a fitted ``tidu.data.TabularPreprocessor`` (saved in checkpoints; ``predict``
            applies it to DataFrames).
        task: ``"multiclass"``, ``"binary"`` or ``"regression"`` when the loss is a function the
            Trainer does not know (classification outputs then being logits).
        plots: draw ``RUN_DIR/plots/*.png`` when ``fit`` ends (needs matplotlib; skipped without it).

    Attributes: ``history`` (a ``History``), ``epoch`` (epochs completed), ``global_step`` (batches
    trained), ``stop_training`` (set to stop after the current epoch), ``confusion_matrix`` (of the
    last evaluation of a classifier), ``task``.
    """

    def __init__(self, model, loss=None, optimizer=None, metrics=None, scheduler=None, callbacks=None,
                 grad_clip=None, accumulate_steps=1, run_dir=None, progress="auto", seed=None, config=None,
                 preprocessor=None, task=None, scheduler_interval="epoch", plots=True):
        if not callable(model) or not hasattr(model, "parameters"):
            raise TypeError(f"Trainer: model must be a tidu.nn.Module, got {type(model).__name__}")
        if seed is not None:
            backend.manual_seed(seed)
        self._group = None  # the ranks, when launched by mpiexec (tidu.distributed.training)
        from .. import distributed
        if distributed.is_launched():
            from ..distributed.training import TrainerGroup
            self._group = TrainerGroup(model)
            model = self._group.model
        self.model = model
        self.loss_fn, self.loss_name, self._kind = self._resolve_loss(loss)
        if task is not None:
            if task not in ("multiclass", "binary", "regression"):
                raise ValueError(f"Trainer: task must be 'multiclass', 'binary' or 'regression', got {task!r}")
            self._kind = task
        self.task = _TASKS.get(self._kind)
        self.optimizer = self._resolve_optimizer(optimizer)
        self.metrics = self._resolve_metrics(metrics)
        self.scheduler = scheduler
        self.accumulate_steps = _positive_int(accumulate_steps, "accumulate_steps")
        self.run_dir = None if run_dir is None else os.fspath(run_dir)
        self.config, self.preprocessor, self.plots = config, preprocessor, bool(plots)
        self.callbacks = list(callbacks or [])
        self.history = History()
        self.epoch = self.global_step = 0
        self.epochs = None
        self.steps_per_epoch = None
        self.stop_training = False
        self.confusion_matrix = None
        self._guard = NonFiniteGuard()
        self._progress = self._resolve_progress(progress) if self._main else None
        self._loaders = {}
        self._epoch_state = None      # running loss and metrics of an epoch under way (saved mid-epoch)
        self._pending = None          # (state, path) of a checkpoint whose loaders and RNG fit() restores
        self._resume_skip = 0

        built = []
        if scheduler is not None:
            built.append(LRSchedulerCallback(scheduler, interval=scheduler_interval))
        if grad_clip is not None:
            built.append(GradientClipping(max_norm=grad_clip))
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"Trainer: callbacks[{i}] is a {type(cb).__name__}, "
                                "not a tidu.train.callbacks.Callback")
        built += self.callbacks
        if not self._main:  # files and the terminal are rank 0's
            from .callbacks import _FileLogger
            built = [cb for cb in built if not isinstance(cb, (_FileLogger, ProgressBar))]
        if self.run_dir is not None:
            given = {type(cb) for cb in self.callbacks}
            if not any(isinstance(cb, ModelCheckpoint) and cb.filepath is None for cb in self.callbacks):
                built.append(ModelCheckpoint())
            built += [cls() for cls in (CSVLogger, JSONLLogger) if cls not in given and self._main]
        built.append(self._guard)
        if self._progress is not None:
            built.append(self._progress)
        self._all_callbacks = CallbackList(built, trainer=self)

    @property
    def _main(self):
        return self._group is None or self._group.main

    # --- arguments ---
    @staticmethod
    def _resolve_loss(loss):
        if loss is None:
            return None, None, None
        if isinstance(loss, str):
            key = loss.lower().strip()
            if key not in LOSSES:
                raise ValueError(f"Trainer: unknown loss {loss!r}; known: {', '.join(sorted(LOSSES))} "
                                 "(or pass an nn loss module or a function loss(output, target))")
            name, kind = LOSSES[key]
            from ..nn import functional as F
            return getattr(F, name), name, kind
        if callable(loss):
            name = getattr(loss, "__name__", None) or type(loss).__name__
            return loss, name, _KINDS_BY_NAME.get(name)
        raise TypeError(f"Trainer: loss must be a name, an nn loss module or a function, got {type(loss).__name__}")

    def _resolve_optimizer(self, optimizer):
        if isinstance(optimizer, str):
            key = optimizer.lower()
            if key not in _OPTIMIZERS:
                raise ValueError(f"Trainer: unknown optimizer {optimizer!r}; known: {', '.join(_OPTIMIZERS)} "
                                 "(or pass a tidu.optim optimizer)")
            from .. import optim
            cls_name, lr = _OPTIMIZERS[key]
            return getattr(optim, cls_name)(self.model.parameters(), lr=lr)
        if optimizer is not None and not (hasattr(optimizer, "step") and hasattr(optimizer, "zero_grad")):
            raise TypeError("Trainer: optimizer must be a tidu.optim optimizer or a name, "
                            f"got {type(optimizer).__name__}")
        return optimizer

    @staticmethod
    def _resolve_metrics(metrics):
        if metrics is None:
            return []
        if isinstance(metrics, (str, _metrics.Metric, dict)) or callable(metrics):
            metrics = [metrics]
        out = []
        for m in metrics:
            if isinstance(m, dict):
                kwargs = dict(m)
                if "name" not in kwargs:
                    raise ValueError(f"Trainer: a metric given as a dict needs a 'name', got {m!r}")
                name = kwargs.pop("name")
                out.append(_metrics.get(name, **kwargs))
            elif isinstance(m, (str, _metrics.Metric)):
                out.append(_metrics.get(m))
            elif callable(m):
                out.append(_metrics.FunctionMetric(m))
            else:
                raise TypeError(f"Trainer: a metric must be a name, a Metric or a function, got {type(m).__name__}")
        names = [m.name for m in out]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"Trainer: metrics {twice} are given twice; pass name= to tell them apart")
        if "loss" in names:
            raise ValueError("Trainer: 'loss' is logged already; it cannot also be a metric's name")
        return out

    @staticmethod
    def _resolve_progress(progress):
        if isinstance(progress, ProgressBar):
            return progress
        if progress is False or progress is None:
            return None
        if progress is True:
            return ProgressBar("auto")
        if progress in ("auto", "bar", "lines"):
            return ProgressBar(progress)
        raise ValueError("Trainer: progress must be 'auto', 'bar', 'lines', True, False or a ProgressBar, "
                         f"got {progress!r}")

    def _need(self, op, loss=True, optimizer=False):
        if loss and self.loss_fn is None:
            raise ValueError(f"Trainer.{op}: no loss; create the Trainer with loss=... (e.g. 'cross_entropy')")
        if optimizer and self.optimizer is None:
            raise ValueError(f"Trainer.{op}: no optimizer; create the Trainer with optimizer=... "
                             "(e.g. td.optim.AdamW(model.parameters(), lr=1e-3))")

    # --- data ---
    def _loader(self, data, batch_size, shuffle, what):
        """A DataLoader (or any re-iterable of batches) as is; ``(X, y)`` arrays or tensors are batched."""
        if data is None:
            return None
        if isinstance(data, tuple) and data and all(isinstance(a, (np.ndarray, Tensor)) for a in data):
            from ..data import DataLoader, TensorDataset
            return DataLoader(TensorDataset(*data), batch_size=batch_size, shuffle=shuffle)
        if isinstance(data, (np.ndarray, Tensor)):
            raise TypeError(f"Trainer: {what} is a single array; pass (X, y) or a DataLoader")
        if not hasattr(data, "__iter__"):
            raise TypeError(f"Trainer: {what} must be a DataLoader, an iterable of batches or a tuple (X, y); "
                            f"got {type(data).__name__}")
        if hasattr(data, "__next__"):
            raise TypeError(f"Trainer: {what} is an iterator, which is used up after one epoch; pass a DataLoader "
                            "or another re-iterable")
        return data

    @staticmethod
    def _split(batch):
        """``(inputs, target)`` of a batch: ``(x, ..., y)`` tuples, dicts with a ``y``/``label``/
        ``target`` key, or a lone input (no target)."""
        if isinstance(batch, dict):
            key = next((k for k in _TARGET_KEYS if k in batch), None)
            return {k: _to_tensor(v) for k, v in batch.items() if k != key}, _to_tensor(batch.get(key))
        if isinstance(batch, (tuple, list)):
            if len(batch) == 1:
                return (_to_tensor(batch[0]),), None
            return tuple(_to_tensor(b) for b in batch[:-1]), _to_tensor(batch[-1])
        return (_to_tensor(batch),), None

    def _forward(self, inputs, model=None):
        model = self.model if model is None else model
        return model(**inputs) if isinstance(inputs, dict) else model(*inputs)

    def _prepare_target(self, output, target):
        """Make a built-in loss's target fit the outputs: labels of shape (n,), float targets shaped
        like the outputs ((n,) against (n, 1) would otherwise broadcast to (n, n))."""
        if target is None or self._kind is None or not isinstance(output, Tensor) or not isinstance(target, Tensor):
            return target
        t, o = target.data, output.data
        if self._kind.startswith("multiclass"):
            if t.ndim == o.ndim and t.ndim >= 2 and t.shape[-1] == 1:
                t = t[..., 0]
            if t.ndim == o.ndim - 1 and t.dtype.kind == "f" and np.all(t == np.round(t)):
                t = t.astype(np.int64)
        else:
            if t.dtype != o.dtype:
                t = t.astype(o.dtype)
            if t.shape != o.shape and t.size == o.size:
                t = t.reshape(o.shape)
        return target if t is target.data else Tensor(t)

    def _scores(self, out):
        """Model outputs -> what metrics read: probabilities for classifiers, values otherwise."""
        kind = self._kind
        if kind == "multiclass":
            return _softmax(out)
        if kind == "multiclass_log":
            return np.exp(out)
        if kind == "binary":
            return (0.5 * np.tanh(0.5 * out) + 0.5).astype(out.dtype)  # sigmoid
        return out

    def _new_confusion(self, scores):
        if self.task == "multiclass" and scores.ndim >= 2:
            return _metrics.ConfusionMatrix(num_classes=scores.shape[-1])
        if self.task == "binary":
            return _metrics.ConfusionMatrix(num_classes=2)
        return None

    def _new_epoch_state(self):
        # cm: a ConfusionMatrix for classifiers, None until the first batch, False when there is none
        return {"loss": _metrics.Mean(), "metrics": [m.clone() for m in self.metrics], "cm": None}

    def _update_metrics(self, state, target, output):
        if target is None or (not state["metrics"] and self.task not in ("multiclass", "binary")):
            return
        y_true = target.numpy() if isinstance(target, Tensor) else np.asarray(target)
        scores = self._scores(_array(output))
        for m in state["metrics"]:
            m.update(y_true, scores)
        if state["cm"] is None:
            state["cm"] = self._new_confusion(scores) or False
        if state["cm"]:
            try:
                state["cm"].update(y_true, scores)
            except ValueError:  # targets that are not labels (soft labels): no confusion matrix
                state["cm"] = False

    @staticmethod
    def _read_metrics(state, prefix=""):
        logs = {prefix + "loss": state["loss"].compute()} if state["loss"]._s_weight else {}
        for m in state["metrics"]:
            logs[prefix + m.name] = m.compute()
        return logs

    # --- fit ---
    def fit(self, train_data, val_data=None, epochs=1, resume=False, batch_size=32, shuffle=True):
        """Train for ``epochs`` epochs in all (a resumed run does the ones its checkpoint lacks).

        ``train_data`` / ``val_data``: DataLoaders (or re-iterables of ``(x, y)`` batches), or ``(X, y)``
        arrays batched with ``batch_size`` (the training ones shuffled). ``resume``: True continues from
        ``RUN_DIR/checkpoints/last.safetensors``, a path continues from that checkpoint. Returns the
        ``History``.
        """
        self._need("fit", optimizer=True)
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"Trainer.fit: epochs must be an integer >= 0, got {epochs!r}")
        train_loader = self._loader(train_data, batch_size, shuffle, "train_data")
        if train_loader is None:
            raise ValueError("Trainer.fit: train_data is None")
        if self._group is not None:
            train_loader = self._group.train_loader(train_loader)
        val_loader = self._loader(val_data, batch_size, False, "val_data")
        self._loaders = {"train": train_loader, "val": val_loader}
        self.epochs = int(epochs)

        if resume:
            path = self._checkpoint_path(resume)
            state = _ckpt.load_checkpoint(path)
            self._restore(state, path, self._loaders, rng=True)
        elif self._pending is not None:
            state, path = self._pending
            _ckpt.restore(state, path, loaders=self._loaders, rng=True)
            self._restore_epoch_state(state)
        else:
            self.history, self.epoch, self.global_step = History(), 0, 0
            self._guard.reset()
            self._epoch_state, self._resume_skip = None, 0
            self.optimizer.zero_grad()
        self._pending = None

        cbs = self._all_callbacks
        self.stop_training = False
        for cb in cbs:
            cb.stop_training = False
        logs = {}
        try:
            cbs.on_train_begin({})
            while self.epoch < self.epochs and not self.stop_training:
                epoch = self.epoch
                state = self._train_epoch(train_loader, epoch, cbs)
                if self._group is not None:
                    self._group.merge(state)
                logs = self._read_metrics(state)
                cm = state["cm"]
                if val_loader is not None:
                    val_state = self._evaluate_loader(val_loader)
                    logs.update(self._read_metrics(val_state, "val_"))
                    cm = val_state["cm"] or cm
                logs["lr"] = float(self.optimizer.param_groups[0]["lr"])
                self.epoch, self._epoch_state = epoch + 1, None
                self.history.append(epoch, {k: v for k, v in logs.items() if np.ndim(v) == 0})
                if cm:
                    self.confusion_matrix = cm.compute()
                    self.history.confusion_matrix = self.confusion_matrix.tolist()
                    self.history.class_names = self._class_names(self.confusion_matrix.shape[0])
                cbs.on_epoch_end(epoch, logs)
                if cbs.stop_training:
                    self.stop_training = True
                if self._group is not None:  # every rank stops together
                    self.stop_training = self._group.any(self.stop_training)
                if self.run_dir is not None:
                    if self._main:
                        self.history.save(os.path.join(self.run_dir, "history.json"))
                    self.save_checkpoint()
            cbs.on_train_end(logs)
        except BaseException as e:
            if self._group is not None:
                self._group.fail(e)  # the other ranks would wait for this one forever
            raise
        finally:
            if self._progress is not None:
                self._progress.close()
        if self.run_dir is not None and self.plots and len(self.history) and self._main:
            self._draw()
        return self.history

    def _train_epoch(self, loader, epoch, cbs):
        model, opt, k = self.model, self.optimizer, self.accumulate_steps
        ddp = None if self._group is None else self._group.ddp
        model.train()
        steps = self.steps_per_epoch = _length(loader)
        skip, self._resume_skip = self._resume_skip, 0
        if self._epoch_state is None:
            self._epoch_state = self._new_epoch_state()
        state = self._epoch_state
        cbs.on_epoch_begin(epoch, {"steps": steps, "initial": skip})
        stepped = True
        for b, batch in enumerate(loader, start=skip):
            cbs.on_batch_begin(b, {})
            inputs, target = self._split(batch)
            if target is None:
                raise ValueError("Trainer.fit: a training batch has no target; the loader should yield (x, y) "
                                 f"tuples or dicts with a 'y'/'label'/'target' key, got {type(batch).__name__}")
            if _batch_len(target) == 0:  # an empty Poisson-sampled batch (DP-SGD): no loss, yet the step counts
                self._step(cbs, {"size": 0})
                self.global_step += 1
                cbs.on_batch_end(b, {"size": 0, "optimizer_step": True})
                continue
            if ddp is not None:  # average the gradients only on the batch that steps
                ddp.require_backward_grad_sync = steps is None or (b + 1) % k == 0 or b + 1 == steps
            output = self._forward(inputs, ddp)
            target = self._prepare_target(output, target)
            loss = self.loss_fn(output, target)
            value = self._guard.check(loss, step=self.global_step + 1, epoch=epoch, batch=b)
            group = k if steps is None else min(k, steps - (b - b % k))  # batches in this accumulation group
            (loss * (1.0 / group) if group > 1 else loss).backward()
            stepped = (b + 1) % k == 0 or (steps is not None and b + 1 == steps)
            logs = {"batch_loss": value, "size": _batch_len(target)}
            if stepped:
                self._step(cbs, logs)
            self.global_step += 1
            state["loss"].update(value, logs["size"])
            self._update_metrics(state, target, output)
            logs.update(loss=state["loss"].compute(), optimizer_step=stepped)
            cbs.on_batch_end(b, logs)
        if not stepped:  # an iterable without len() ended inside an accumulation group
            self._step(cbs, {})
        return state

    def _step(self, cbs, logs):
        cbs.on_before_optimizer_step(self.global_step, logs)
        self.optimizer.step()
        self.optimizer.zero_grad()

    # --- evaluate and predict ---
    def _evaluate_loader(self, loader):
        model = self.model
        was_training = getattr(model, "training", True)
        model.eval()
        state = self._new_epoch_state()
        sharded = False
        if self._group is not None:
            loader, sharded = self._group.eval_loader(loader)
        try:
            with no_grad():
                for batch in loader:
                    inputs, target = self._split(batch)
                    output = self._forward(inputs)
                    if target is None:
                        raise ValueError("Trainer.evaluate: the batches have no target; give (x, y) batches")
                    target = self._prepare_target(output, target)
                    if self.loss_fn is not None:
                        state["loss"].update(float(self.loss_fn(output, target).item()), _batch_len(target))
                    self._update_metrics(state, target, output)
        finally:
            model.train(was_training)
        return self._group.merge(state) if sharded else state

    def evaluate(self, data, batch_size=256):
        """The loss and metrics on ``data`` (a loader or ``(X, y)``), in eval mode without gradients:
        ``{"loss": ..., "accuracy": ...}``. Also sets ``self.confusion_matrix`` for a classifier."""
        loader = self._loader(data, batch_size, False, "data")
        state = self._evaluate_loader(loader)
        if state["cm"]:
            self.confusion_matrix = state["cm"].compute()
        return self._read_metrics(state)

    def _predict_batches(self, data, batch_size):
        if hasattr(data, "columns") and hasattr(data, "iloc"):  # a DataFrame of raw rows
            if self.preprocessor is None:
                raise ValueError("Trainer.predict: got a DataFrame but the Trainer has no preprocessor; pass "
                                 "preprocessor=... or an array of features")
            data = self.preprocessor.transform(data)[0]
        if isinstance(data, (np.ndarray, Tensor, list)):
            x = _to_tensor(data)
            for i in range(0, len(x), batch_size):
                yield (x[i:i + batch_size],)
            return
        if isinstance(data, tuple) and data and all(isinstance(a, (np.ndarray, Tensor)) for a in data):
            data = self._loader(data, batch_size, False, "data")
        for batch in data:
            yield self._split(batch)[0]

    def predict(self, data, batch_size=256):
        """The model's outputs (logits, values) on ``data`` as one NumPy array, in eval mode without
        gradients. ``data``: an array or Tensor of inputs, a DataFrame of raw rows (with a
        ``preprocessor``), or a loader (the last element of a batch tuple being a target, ignored)."""
        model = self.model
        was_training = getattr(model, "training", True)
        model.eval()
        outs = []
        try:
            with no_grad():
                for inputs in self._predict_batches(data, batch_size):
                    outs.append(_array(self._forward(inputs)))
        finally:
            model.train(was_training)
        if not outs:
            return np.zeros((0,), dtype=np.float32)
        return np.concatenate(outs)

    def predict_proba(self, data, batch_size=256):
        """Class probabilities (softmax of logits, sigmoid of a binary logit) for a classifier."""
        if self.task not in ("multiclass", "binary"):
            raise ValueError(f"Trainer.predict_proba: needs a classification loss (cross_entropy, bce_with_logits, "
                             f"...), the loss is {self.loss_name!r}")
        return self._scores(self.predict(data, batch_size))

    def predict_classes(self, data, batch_size=256):
        """Class indices: the argmax of the outputs, or ``probability > 0.5`` for a binary classifier."""
        proba = self.predict_proba(data, batch_size)
        if self.task == "binary" and (proba.ndim == 1 or proba.shape[-1] == 1):
            p = proba[..., 0] if proba.ndim > 1 else proba
            return (p > 0.5).astype(np.int64)
        return proba.argmax(-1)

    # --- checkpoints ---
    def _checkpoint_path(self, which="last"):
        if which is True or which in ("last", "best"):
            name = "best" if which == "best" else "last"
            if self.run_dir is None:
                raise ValueError(f"Trainer: resume={which!r} needs a run_dir (or give the checkpoint's path)")
            path = os.path.join(self.run_dir, "checkpoints", f"{name}.safetensors")
            if not os.path.exists(path):
                raise FileNotFoundError(f"Trainer: no checkpoint to resume from at {path!r}")
            return path
        return os.fspath(which)

    def _keyed_callbacks(self):
        seen = {}
        for cb in self._all_callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            yield (name if seen[name] == 1 else f"{name}_{seen[name]}"), cb

    def save_checkpoint(self, path=None):
        """Write everything needed to continue this run to ``path`` (default
        ``RUN_DIR/checkpoints/last.safetensors``), atomically. Works mid-epoch too (from a callback)."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("Trainer.save_checkpoint: give a path, or create the Trainer with run_dir=...")
            path = os.path.join(self.run_dir, "checkpoints", "last.safetensors")
        callbacks = {}
        for key, cb in self._keyed_callbacks():
            s = cb.state_dict()
            if s:
                callbacks[key] = s
        extra = {"task": self.task, "loss": self.loss_name, "accumulate_steps": self.accumulate_steps,
                 "metrics": [m.name for m in self.metrics]}
        if self._epoch_state is not None:
            s = self._epoch_state
            if self._group is not None:  # what all ranks have seen of this epoch
                s = self._group.merge(s, copy=True)
            extra["epoch_state"] = {"loss": s["loss"].state_dict(), "metrics": [m.state_dict() for m in s["metrics"]],
                                    "cm": s["cm"].state_dict() if s["cm"] else None}
            params = [p for g in self.optimizer.param_groups for p in g["params"]] if self.optimizer else []
            if any(p.grad is not None for p in params):  # inside an accumulation group
                extra["grads"] = {str(i): p.grad for i, p in enumerate(params) if p.grad is not None}
                if self._group is not None:  # each rank's share so far, averaged: every rank resumes with it
                    extra["grads"] = dict(zip(extra["grads"], map(Tensor, self._group.average(
                        [g.data for g in extra["grads"].values()]))))
        if self._main:
            _ckpt.save_checkpoint(path, self.model, self.optimizer, self.scheduler, loaders=self._loaders,
                                  epoch=self.epoch, global_step=self.global_step, history=self.history,
                                  callbacks=callbacks, preprocessor=self.preprocessor, config=self.config,
                                  extra=extra)
        if self._group is not None:  # the file is there for every rank when this returns
            self._group.barrier()
        return path

    def _restore(self, state, path, loaders, rng):
        """Load a checkpoint into the model, optimizer, scheduler, loaders, RNG, history and callbacks."""
        _ckpt.restore(state, path, self.model, self.optimizer, self.scheduler, loaders, rng=rng)
        self.history = History.from_dict(state.get("history") or {})
        self.confusion_matrix = None if self.history.confusion_matrix is None else \
            np.asarray(self.history.confusion_matrix, dtype=np.int64)
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        saved = state.get("callbacks") or {}
        for key, cb in self._keyed_callbacks():
            if key in saved:
                cb.load_state_dict(saved[key])
        if self.config is None:
            self.config = state.get("config")
        if rng:
            self._restore_epoch_state(state)

    def _restore_epoch_state(self, state):
        extra = state.get("extra") or {}
        saved = extra.get("epoch_state")
        self._epoch_state, self._resume_skip = None, 0
        if saved is not None:
            s = self._new_epoch_state()
            if self._main:  # under mpiexec the saved state holds every rank's share: rank 0 carries it
                s["loss"].load_state_dict(saved["loss"])
                for m, ms in zip(s["metrics"], saved["metrics"]):
                    m.load_state_dict(ms)
                if saved.get("cm") is not None:
                    s["cm"] = _metrics.ConfusionMatrix()
                    s["cm"].load_state_dict(saved["cm"])
            self._epoch_state = s
            loader_state = (state.get("loaders") or {}).get("train", {}).get("state", {})
            self._resume_skip = int(loader_state.get("batches_seen", 0))
        params = [p for g in self.optimizer.param_groups for p in g["params"]] if self.optimizer else []
        grads = extra.get("grads") or {}
        for i, p in enumerate(params):
            g = grads.get(str(i))
            p.grad = None if g is None else Tensor(np.array(getattr(g, "data", g), dtype=p.dtype, copy=True))

    @classmethod
    def resume(cls, run_dir, model, optimizer=None, checkpoint="last", **kwargs):
        """A Trainer that continues the run in ``run_dir``: the model, optimizer and scheduler get the
        checkpoint's state now; the loaders' position and the random generator are restored by the next
        ``fit`` (after you create the loaders), which trains up to its ``epochs``. ``checkpoint``:
        ``"last"``, ``"best"`` or a path. ``kwargs``: the other Trainer arguments, as in the first run."""
        trainer = cls(model, optimizer=optimizer, run_dir=run_dir, **kwargs)
        path = trainer._checkpoint_path(checkpoint)
        state = _ckpt.load_checkpoint(path)
        trainer._restore(state, path, loaders=None, rng=False)
        trainer._pending = (state, path)
        return trainer

    def load_weights(self, path):
        """Load only the model weights from a checkpoint (or a state-dict file); returns the model."""
        return _ckpt.load_weights(path, self.model)

    # --- pictures ---
    def _class_names(self, n):
        classes = getattr(self.preprocessor, "classes", None)
        return [str(c) for c in classes] if classes is not None and len(classes) == n else None

    def _draw(self):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return []  # pictures are an extra
        from .plots import plot_run
        return plot_run(self.run_dir, self.history)

    def __repr__(self):
        return (f"Trainer(model={type(self.model).__name__}, loss={self.loss_name!r}, "
                f"optimizer={type(self.optimizer).__name__ if self.optimizer else None}, "
                f"metrics={[m.name for m in self.metrics]}, epoch={self.epoch})")
