"""Pictures of a run: a curve per metric (training and validation) and a classifier's confusion matrix.

matplotlib (the ``plot`` extra) is imported when a picture is drawn, with its Agg canvas (no display
needed, no global backend switched); each PNG is written atomically through ``tidu.io.atomic_write``.

    redraw("runs/digits")   # -> ['runs/digits/plots/loss.png', 'runs/digits/plots/accuracy.png', ...]

File names: ``<metric>.png`` for each metric logged (``loss.png``, ``accuracy.png``, ``lr.png``…, the
validation curve drawn with the training one) and ``confusion_matrix.png``.
"""
import json
import math
import os

import numpy as np

from ..io import atomic_write, read_json
from .history import History

__all__ = ["plot_history", "plot_confusion_matrix", "plot_run", "redraw"]


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("tidu.train.plots needs matplotlib: pip install 'tidu[plot]'") from None
    return Figure(figsize=figsize, dpi=100, layout="constrained")


def _save(fig, path):
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _as_history(history):
    if isinstance(history, History):
        return history
    if isinstance(history, dict) and "history" in history:
        return History.from_dict(history)
    if isinstance(history, dict):  # name -> list of values
        h = History()
        n = max((len(v) for v in history.values()), default=0)
        h.epoch = list(range(n))
        h.history = {k: [math.nan if v is None else float(v) for v in vals] for k, vals in history.items()}
        return h
    raise TypeError(f"plots: expected a History or a dict of lists, got {type(history).__name__}")


def _title(key):
    return {"loss": "Loss", "lr": "Learning rate", "mse": "MSE", "mae": "MAE", "rmse": "RMSE", "r2": "R²",
            "roc_auc": "ROC AUC"}.get(key, key.replace("_", " ").capitalize())


def plot_history(history, out_dir):
    """One PNG per logged value in ``out_dir``: its training curve and, when logged, its validation
    curve (``val_<name>``). Returns the paths written."""
    h = _as_history(history)
    epochs = np.asarray(h.epoch, dtype=np.int64) + 1
    names = [k for k in h.history if not k.startswith("val_")]
    names += [k[4:] for k in h.history if k.startswith("val_") and k[4:] not in h.history]
    paths = []
    for name in names:
        fig = _figure((6.0, 4.0))
        ax = fig.add_subplot()
        for key, label, style in ((name, "training", "-o"), ("val_" + name, "validation", "-s")):
            if key in h.history:
                values = np.asarray(h.history[key], dtype=np.float64)
                if not np.all(np.isnan(values)):
                    ax.plot(epochs, values, style, markersize=3, label=label if name != "lr" else None)
        positive = [v for k in (name, "val_" + name) for v in h.history.get(k, []) if not math.isnan(v)]
        if name == "lr" and positive and min(positive) > 0 and max(positive) / min(positive) > 20:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(_title(name))
        ax.set_title(_title(name))
        ax.grid(True, alpha=0.3)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
        if name != "lr":
            ax.legend()
        paths.append(_save(fig, os.path.join(out_dir, f"{name}.png")))
    return paths


def plot_confusion_matrix(matrix, path, class_names=None, title="Confusion matrix"):
    """Draw a confusion matrix (rows: true class, columns: predicted) with its counts, shaded by the
    fraction of each true class. Returns ``path``."""
    cm = np.asarray(matrix, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square matrix, got shape {cm.shape}")
    n = cm.shape[0]
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class names for a {n}x{n} matrix")
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    size = min(max(4.0, 0.45 * n + 2.5), 14.0)
    fig = _figure((size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), labels=names, rotation=45 if max(map(len, names)) > 3 else 0, ha="right"
                  if max(map(len, names)) > 3 else "center")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9 if n <= 12 else 6,
                        color="white" if frac[i, j] > 0.5 else "black")
    return _save(fig, path)


def plot_run(run_dir, history):
    """Draw every picture of a run into ``RUN_DIR/plots/``; returns the paths written."""
    h = _as_history(history)
    out = os.path.join(os.fspath(run_dir), "plots")
    paths = plot_history(h, out)
    if h.confusion_matrix is not None:
        paths.append(plot_confusion_matrix(h.confusion_matrix, os.path.join(out, "confusion_matrix.png"),
                                           class_names=h.class_names))
    return paths


def _read_jsonl(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    h = History()
    for row in rows:
        h.append(int(row.get("epoch", len(h))), {k: (math.nan if v is None else v) for k, v in row.items()
                                                  if k != "epoch"})
    return h


def redraw(run_dir):
    """Redraw the pictures of a run from ``RUN_DIR/history.json`` (or ``metrics.jsonl``) into
    ``RUN_DIR/plots/`` — what ``tidu plot RUN_DIR`` does. Returns the paths written."""
    run_dir = os.fspath(run_dir)
    history_path, jsonl_path = os.path.join(run_dir, "history.json"), os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(history_path):
        h = History.from_dict(read_json(history_path))
    elif os.path.exists(jsonl_path):
        h = _read_jsonl(jsonl_path)
    else:
        raise FileNotFoundError(f"redraw: {run_dir!r} has neither history.json nor metrics.jsonl; is it a run "
                                "folder written by Trainer(run_dir=...)?")
    if not len(h):
        raise ValueError(f"redraw: the history in {run_dir!r} is empty (no epoch finished)")
    return plot_run(run_dir, h)
