"""``PrivacyCallback``: DP-SGD in the ``Trainer`` — ε spent per epoch in the logs, and a clean stop
before the epoch that would take ε past a target.

Make the model, optimizer and loader private with :func:`make_private`, then train them with a
``Trainer`` and this callback. After every epoch it logs ``epsilon`` (the ε spent so far, for
``delta``) next to the loss: in the progress line, ``history.json``, ``metrics.jsonl`` and the plots.
With a target ε (given here or to ``make_private``) it looks one epoch ahead and ends training
after the last epoch that keeps ε within the target, with a message that says so; the budget is
never passed, and the optimizer's own guard refuses any step that would pass it.

>>> import io
>>> import numpy as np, tidu as td, tidu.nn as nn
>>> from tidu.data import DataLoader, TensorDataset
>>> from tidu.privacy import make_private
>>> from tidu.train import Trainer
>>> _ = td.manual_seed(0)
>>> X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32); y = (X[:, 0] > 0).astype(np.int64)
>>> model = nn.Linear(4, 2)
>>> model, opt, loader = make_private(model, td.optim.SGD(model.parameters(), lr=0.5),
...                                   DataLoader(TensorDataset(X, y), batch_size=20), noise_multiplier=1.0, seed=0)
>>> privacy = PrivacyCallback(target_epsilon=8.0, delta=1e-5, file=io.StringIO())
>>> history = Trainer(model, loss="cross_entropy", optimizer=opt, callbacks=[privacy], progress=False).fit(
...     loader, epochs=50)
>>> len(history), [round(e, 2) for e in history["epsilon"][:3]], round(history["epsilon"][-1], 2)
(10, [3.44, 4.22, 4.85], 7.9)
>>> print(privacy.message)  # doctest: +ELLIPSIS
privacy budget: stopped after epoch 10 of 50: ε = 7.9 (δ = 1e-05) is spent, and one more epoch would ...
"""
import math
import numbers
import sys

import numpy as np

from ..train.callbacks import Callback, GradientClipping
from .accountant import PrivacyBudgetExceeded
from .dpsgd import DPOptimizer

__all__ = ["PrivacyCallback", "PrivacyBudgetExceeded"]


class PrivacyCallback(Callback):
    """Log the privacy spent and keep training within a privacy budget.

    Args:
        target_epsilon: stop before the epoch that would spend more than this ε (default: the
            optimizer's ``target_epsilon``, set by ``make_private(target_epsilon=...)``; None: no limit).
        delta: the δ that ε is computed for (default: the optimizer's ``target_delta``).
        verbose: print the message when the budget stops training (to ``file``, default standard output).

    The Trainer's optimizer must be a :class:`DPOptimizer` (from :func:`make_private`); gradient
    clipping (``grad_clip``) and accumulation (``accumulate_steps``) are refused, since DP-SGD clips
    each sample's gradient itself and each step must be one Poisson batch.

    Attributes: ``epsilon`` (ε after the last epoch), ``stopped_epoch`` (the epoch after which the
    budget stopped training, counted from 0, or None), ``message`` (why it stopped).
    """

    def __init__(self, target_epsilon=None, delta=None, verbose=True, file=None):
        for name, v in (("target_epsilon", target_epsilon), ("delta", delta)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0):
                raise ValueError(f"PrivacyCallback: {name} must be a positive number, got {v!r}")
        if delta is not None and not delta < 1:
            raise ValueError(f"PrivacyCallback: delta must lie in (0, 1), got {delta!r}")
        self.target_epsilon = None if target_epsilon is None else float(target_epsilon)
        self.delta = None if delta is None else float(delta)
        self.verbose, self.file = bool(verbose), file
        self.epsilon, self.stopped_epoch, self.message = None, None, None

    # --- binding ---
    def set_trainer(self, trainer):
        super().set_trainer(trainer)
        self._check_optimizer(self.optimizer)
        if trainer.accumulate_steps != 1:
            raise ValueError(f"PrivacyCallback: accumulate_steps={trainer.accumulate_steps} does not go with DP-SGD: "
                             "each optimizer step must be one Poisson-sampled batch; raise the batch size instead")

    def bind(self, model=None, optimizer=None):
        if optimizer is not None:
            self._check_optimizer(optimizer)
        return super().bind(model, optimizer)

    @staticmethod
    def _check_optimizer(optimizer):
        if not isinstance(optimizer, DPOptimizer):
            raise TypeError("PrivacyCallback: the optimizer must be a DPOptimizer; make the model, optimizer and "
                            "loader private first: model, optimizer, loader = tidu.privacy.make_private(model, "
                            f"optimizer, loader, ...) (got {type(optimizer).__name__})")

    @property
    def _delta(self):
        return self.optimizer.target_delta if self.delta is None else self.delta

    @property
    def _target(self):
        return self.optimizer.target_epsilon if self.target_epsilon is None else self.target_epsilon

    # --- hooks ---
    def on_train_begin(self, logs=None):
        if self.optimizer is None:
            raise RuntimeError("PrivacyCallback: no optimizer; use it in a Trainer or call .bind(optimizer=...)")
        self.stop_training = False
        clipping = [cb for cb in getattr(self.trainer, "_all_callbacks", []) if isinstance(cb, GradientClipping)]
        if clipping:
            raise ValueError("PrivacyCallback: gradient clipping (grad_clip / GradientClipping) does nothing under "
                             "DP-SGD, which clips each sample's gradient to max_grad_norm = "
                             f"{self.optimizer.max_grad_norm:g} itself; leave grad_clip out")
        if self.stopped_epoch is not None and self.trainer is not None:  # a resumed run that the budget ended
            self._stop()
        elif self.trainer is not None and self.trainer.epoch < (self.trainer.epochs or 0):
            self._check_ahead(self.trainer.epoch - 1, self.trainer.epochs)

    def on_epoch_end(self, epoch, logs=None):
        eps = self.epsilon = self.optimizer.epsilon(self._delta)
        if logs is not None:
            logs["epsilon"] = eps  # the loggers and the progress line come after this callback
        history = getattr(self.trainer, "history", None)
        if history is not None and len(history) and history.epoch[-1] == epoch:
            # the Trainer records an epoch's logs before the callbacks run: add ε to that epoch's entry
            history.history.setdefault("epsilon", [math.nan] * len(history))[-1] = eps
        epochs = getattr(self.trainer, "epochs", None)
        if epochs is None or epoch + 1 < epochs:
            self._check_ahead(epoch, epochs)

    def _steps_per_epoch(self):
        # a Poisson loader's epoch is round(1 / q) batches (and so is the loader make_private was given)
        return max(1, int(round(1 / self.optimizer.sample_rate)))

    def _check_ahead(self, epoch, epochs):
        """Stop now if one more epoch would spend more than the target ε."""
        target = self._target
        if target is None:
            return
        opt = self.optimizer
        acc, delta = opt.accountant, self._delta
        after = acc.epsilon_after(self._steps_per_epoch(), opt.noise_multiplier, opt.sample_rate, delta)
        if after <= target:
            return
        spent = acc.epsilon(delta)
        done = epoch + 1
        of = f" of {epochs}" if epochs else ""
        self.message = (
            f"privacy budget: stopped after epoch {done}{of}: ε = {spent:.3g} (δ = {delta:g}) is spent, and one more "
            f"epoch would spend ε = {after:.3g}, past the target ε = {target:g}; the model is that of epoch {done}. "
            "To train longer, allow a larger target ε or use a larger noise multiplier."
            if done else
            f"privacy budget: training did not start: one epoch would spend ε = {after:.3g} (δ = {delta:g}), past "
            f"the target ε = {target:g}; allow a larger target ε or use a larger noise multiplier.")
        self.stopped_epoch = epoch if done else None
        self._stop()
        if self.verbose:
            stream = self.file if self.file is not None else sys.stdout
            stream.write(self.message + "\n")
            stream.flush()

    # --- checkpoints ---
    def state_dict(self):
        return {"epsilon": self.epsilon, "stopped_epoch": self.stopped_epoch, "message": self.message}

    def load_state_dict(self, state):
        self.epsilon, self.stopped_epoch = state.get("epsilon"), state.get("stopped_epoch")
        self.message = state.get("message")
