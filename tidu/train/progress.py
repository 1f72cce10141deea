"""Progress output: a tqdm bar per epoch on a terminal, one line per epoch otherwise (keras#12860).

``ProgressBar`` is a callback, so a hand-written loop can use it too:

>>> import io
>>> from tidu.train.progress import ProgressBar
>>> out = io.StringIO()
>>> bar = ProgressBar(mode="lines", file=out, epochs=2)
>>> bar.on_epoch_begin(0); bar.on_epoch_end(0, {"loss": 0.51234, "accuracy": 0.875})
>>> out.getvalue().split(" - ")[:3]
['epoch 1/2', 'loss: 0.5123', 'accuracy: 0.8750']
"""
import math
import sys
import time

from .callbacks import Callback

__all__ = ["ProgressBar", "format_logs"]


def _fmt(key, value):
    if isinstance(value, float) and math.isnan(value):
        return f"{key}: nan"
    if key == "lr" or (value != 0 and not 1e-3 <= abs(value) < 1e5):
        return f"{key}: {value:.3g}"
    return f"{key}: {value:.4f}"


def format_logs(logs):
    """``"loss: 0.1234 - accuracy: 0.9500 - ..."`` for the numbers in ``logs``."""
    return " - ".join(_fmt(k, float(v)) for k, v in logs.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)
                      and k not in ("size", "optimizer_step"))


def _tqdm():
    try:
        from tqdm.auto import tqdm
        return tqdm
    except ImportError:
        return None


class ProgressBar(Callback):
    """Show training progress.

    ``mode``: ``'bar'`` (a tqdm bar per epoch with the running loss, then all the epoch's values),
    ``'lines'`` (one line per epoch, for logs and pipes), or ``'auto'``: a bar when ``file`` (default:
    standard output) is a terminal and tqdm (the ``progress`` extra) is installed, else lines.
    ``epochs`` and ``steps`` (batches per epoch) come from the Trainer, or are given in a loop.
    """

    def __init__(self, mode="auto", file=None, epochs=None, steps=None):
        if mode not in ("auto", "bar", "lines"):
            raise ValueError(f"ProgressBar: mode must be 'auto', 'bar' or 'lines', got {mode!r}")
        self.mode, self.file, self.epochs, self.steps = mode, file, epochs, steps
        self._bar = None
        self._start = None

    def _stream(self):
        return self.file if self.file is not None else sys.stdout

    def _use_bar(self):
        if self.mode == "lines":
            return False
        tqdm = _tqdm()
        if self.mode == "bar":
            return tqdm is not None
        isatty = getattr(self._stream(), "isatty", None)
        return tqdm is not None and bool(isatty and isatty())

    def _total_epochs(self):
        return getattr(self.trainer, "epochs", None) or self.epochs

    def on_epoch_begin(self, epoch, logs=None):
        logs = logs or {}
        self._start = time.perf_counter()
        total = self._total_epochs()
        self._desc = f"epoch {epoch + 1}/{total}" if total else f"epoch {epoch + 1}"
        if self._use_bar():
            steps = logs.get("steps", getattr(self.trainer, "steps_per_epoch", None) or self.steps)
            self._bar = _tqdm()(total=steps, initial=logs.get("initial", 0), desc=self._desc, file=self._stream(),
                                unit="batch", leave=True, dynamic_ncols=True)

    def on_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update(1)
            if logs and "loss" in logs:
                self._bar.set_postfix_str(_fmt("loss", float(logs["loss"])), refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start if self._start is not None else 0.0
        text = format_logs(logs or {})
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.close()
            self._bar = None
        else:
            stream = self._stream()
            stream.write(f"{getattr(self, '_desc', f'epoch {epoch + 1}')} - {text} - {seconds:.1f}s\n")
            stream.flush()

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        """Close a bar left open (training stopped part-way through an epoch)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
