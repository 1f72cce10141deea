"""``History``: what ``Trainer.fit`` returns — one list per logged value, one entry per epoch (Keras's).

>>> h = History()
>>> h.append(0, {"loss": 0.9, "val_loss": 1.0}); h.append(1, {"loss": 0.5, "val_loss": 0.7})
>>> h.epoch, h.history["loss"], h["val_loss"][-1]
([0, 1], [0.9, 0.5], 0.7)
>>> History.from_dict(h.to_dict()).history == h.history
True
"""
import json
import math

import numpy as np

from ..io import atomic_write, read_json

__all__ = ["History"]


class History:
    """``history``: a dict name -> list of per-epoch values (NaN where an epoch did not log a name);
    ``epoch``: the epoch indices (from 0). ``confusion_matrix``: the last validation (or training)
    confusion matrix of a classifier, as a list of rows, and ``class_names`` its labels, when known."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.confusion_matrix = None
        self.class_names = None

    def append(self, epoch, logs):
        """Record one epoch's scalar logs."""
        n = len(self.epoch)
        self.epoch.append(int(epoch))
        for key, value in logs.items():
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
                continue  # arrays (a confusion matrix) and flags are not curves
            self.history.setdefault(key, [math.nan] * n).append(float(value))
        for values in self.history.values():
            if len(values) < n + 1:
                values.append(math.nan)

    def __len__(self):
        return len(self.epoch)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def keys(self):
        return self.history.keys()

    def rows(self):
        """One dict per epoch: ``{"epoch": e, name: value, ...}``."""
        return [{"epoch": e, **{k: v[i] for k, v in self.history.items()}} for i, e in enumerate(self.epoch)]

    def best(self, monitor="val_loss", mode="min"):
        """``(epoch, value)`` of the best epoch for ``monitor`` (NaN epochs skipped)."""
        values = np.asarray(self.history[monitor], dtype=np.float64)
        if np.all(np.isnan(values)):
            return None, math.nan
        i = int(np.nanargmin(values) if mode == "min" else np.nanargmax(values))
        return self.epoch[i], float(values[i])

    # --- JSON (history.json in a run folder) ---
    def to_dict(self):
        """A JSON-able dict (NaN and infinities as None)."""
        clean = {k: [v if math.isfinite(v) else None for v in vals] for k, vals in self.history.items()}
        return {"epoch": list(self.epoch), "history": clean, "confusion_matrix": self.confusion_matrix,
                "class_names": self.class_names}

    @classmethod
    def from_dict(cls, d):
        h = cls()
        h.epoch = [int(e) for e in d.get("epoch", [])]
        h.history = {k: [math.nan if v is None else float(v) for v in vals] for k, vals in d.get("history", {}).items()}
        h.confusion_matrix = d.get("confusion_matrix")
        h.class_names = d.get("class_names")
        return h

    def save(self, path):
        """Write ``to_dict()`` to ``path`` as JSON, atomically."""
        with atomic_write(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1, allow_nan=False)

    @classmethod
    def load(cls, path):
        return cls.from_dict(read_json(path))

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
