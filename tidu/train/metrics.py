"""Metrics on NumPy arrays: accuracy, precision, recall, F1, ROC AUC, confusion matrix, MSE, MAE, R².

Every metric comes twice. As a **function** it takes the whole arrays, in scikit-learn's order and with
its defaults, and gives scikit-learn's value (no scikit-learn needed at run time):

>>> from tidu.train import metrics
>>> metrics.accuracy([0, 1, 1, 0], [0, 1, 0, 0])
0.75
>>> metrics.f1([0, 1, 2, 2], [0, 2, 2, 2], average="macro")
0.6
>>> metrics.r2([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
0.5

As a **class** it accumulates over batches — ``update(y_true, y_pred)`` per batch, ``compute()`` at the
end, ``reset()`` to start again — and gives the value the function gives on all the batches at once:

>>> acc = metrics.Accuracy()
>>> acc.update([0, 1], [0, 1]).update([1, 0], [0, 0]).compute()
0.75

``y_pred`` of a classification metric may be labels, or scores with one column per class (the label is
the argmax), or, for a binary problem, one score per sample (the label is ``score > threshold``,
0.5 for probabilities; pass ``threshold=0`` for logits). The ``Trainer`` turns the model's outputs into
probabilities before it calls them. ``y_true`` may be labels or one-hot rows. Precision, recall and F1
take ``average`` = ``'binary'`` (the default, as in scikit-learn: the class ``pos_label``), ``'macro'``,
``'micro'``, ``'weighted'`` or ``None`` (one value per class); a zero division gives ``zero_division``.

``get(name)`` builds a metric from its name (``"accuracy"``, ``"f1_macro"``, ``"precision"``,
``"roc_auc"``, ``"mse"``, ``"r2"``…), as the ``Trainer`` and the config files name them.
"""
import copy

import numpy as np

__all__ = ["Metric", "Mean", "FunctionMetric", "Accuracy", "Precision", "Recall", "F1", "ROCAUC", "ConfusionMatrix",
           "MSE", "RMSE", "MAE", "R2", "accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "mse",
           "rmse", "mae", "r2", "get", "names", "accuracy_score", "precision_score", "recall_score", "f1_score",
           "roc_auc_score", "mean_squared_error", "mean_absolute_error", "r2_score"]

_AVERAGES = ("binary", "macro", "micro", "weighted", None)


def _array(x, what, op):
    """A NumPy array from a Tensor, a CuPy array, a list or an array."""
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):   # Tensor (or a torch tensor)
        x = x.numpy()
    elif hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        x = x.get()
    a = np.asarray(x)
    if a.dtype == object:
        raise TypeError(f"{op}: {what} must be numbers (a Tensor, array or list), got objects")
    return a


def _as_labels(a, op, what):
    """Integer-valued floats (0.0, 1.0 …) become int64 labels; other floats stay scores."""
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        return a.astype(np.int64)
    return a


def _true_labels(y_true, op):
    y = _as_labels(_array(y_true, "y_true", op), op, "y_true")
    if y.ndim >= 2 and y.shape[-1] == 1:
        y = y[..., 0]
    return y


def _pred_labels(y_true, y_pred, threshold, op):
    """Turn ``y_pred`` (labels, per-class scores, or binary scores) into labels shaped like ``y_true``."""
    p = _array(y_pred, "y_pred", op)
    t = _true_labels(y_true, op)
    if t.ndim == p.ndim and t.ndim >= 1 and p.ndim >= 2 and p.shape[-1] > 1 and p.shape == t.shape \
            and t.dtype.kind in "iu" and t.size and t.max() <= 1 and np.all(t.sum(-1) == 1):
        t = t.argmax(-1)  # one-hot targets
    if p.ndim == t.ndim + 1 and p.shape[-1] > 1:
        p = p.argmax(-1)
    else:
        if p.ndim == t.ndim + 1:
            p = p[..., 0]
        p = _as_labels(p, op, "y_pred")
        if p.dtype.kind == "f":  # one score per sample: a binary problem
            p = (p > threshold).astype(np.int64)
    if p.shape != t.shape:
        raise ValueError(f"{op}: y_true has shape {t.shape} and y_pred has shape {p.shape}; expected the same "
                         "shape, or y_pred with one more axis of per-class scores")
    if t.dtype.kind == "f":
        raise ValueError(f"{op}: y_true holds non-integer values (for example {t.ravel()[0]!r}); a classification "
                         "metric needs class labels")
    return t.ravel(), p.ravel()


def _fraction(num, den, zero_division):
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out


class Metric:
    """Base class: a state accumulated by ``update(y_true, y_pred)`` and read by ``compute()``.

    A subclass writes ``reset()`` (which sets the state), ``update()`` and ``compute()``; the state is
    what ``state_dict()`` saves (NumPy arrays and numbers), so a metric resumes with a checkpoint.
    ``higher_is_better`` tells callbacks which way is an improvement. Calling a metric computes it on
    one pair of arrays without touching its state.
    """

    name = "metric"
    higher_is_better = True

    def __init__(self, name=None):
        if name is not None:
            self.name = name
        self.reset()

    def reset(self):
        raise NotImplementedError

    def update(self, y_true, y_pred):
        raise NotImplementedError

    def compute(self):
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        return self.clone().update(y_true, y_pred).compute()

    def clone(self):
        """A new metric with the same settings and an empty state."""
        m = copy.copy(self)
        m.reset()
        return m

    def state_dict(self):
        return {k[3:]: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()
                if k.startswith("_s_")}

    def load_state_dict(self, state):
        self.reset()
        for k, v in state.items():
            if not hasattr(self, "_s_" + k):
                raise ValueError(f"{type(self).__name__}.load_state_dict: unknown state {k!r}")
            setattr(self, "_s_" + k, np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                    if isinstance(getattr(self, "_s_" + k), np.ndarray) else v)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class Mean(Metric):
    """A running (weighted) mean of values: the loss of an epoch, averaged over samples.

    >>> m = Mean(); m.update(2.0, weight=3).update(4.0, weight=1).compute()
    2.5
    """

    name = "mean"
    higher_is_better = False

    def reset(self):
        self._s_total, self._s_weight = 0.0, 0.0

    def update(self, value, weight=1.0):
        self._s_total += float(value) * float(weight)
        self._s_weight += float(weight)
        return self

    def compute(self):
        return self._s_total / self._s_weight if self._s_weight else float("nan")


class FunctionMetric(Metric):
    """A metric from a function ``fn(y_true, y_pred) -> number`` on whole arrays (a scikit-learn metric,
    say): the batches are kept, and ``fn`` is called once on all of them.

    >>> m = FunctionMetric(lambda t, p: float((t == p).mean()), name="hits")
    >>> m.update([1, 2], [1, 0]).update([3], [3]).compute(), m.name
    (0.6666666666666666, 'hits')
    """

    def __init__(self, fn, name=None, higher_is_better=True):
        if not callable(fn):
            raise TypeError(f"FunctionMetric: expected a function (y_true, y_pred) -> number, got {type(fn).__name__}")
        self.fn, self.higher_is_better = fn, higher_is_better
        super().__init__(name or getattr(fn, "__name__", "metric"))

    def reset(self):
        self._s_true, self._s_pred = [], []

    def update(self, y_true, y_pred):
        self._s_true.append(_array(y_true, "y_true", self.name))
        self._s_pred.append(_array(y_pred, "y_pred", self.name))
        return self

    def compute(self):
        if not self._s_true:
            return float("nan")
        value = self.fn(np.concatenate(self._s_true), np.concatenate(self._s_pred))
        return float(value) if np.ndim(value) == 0 else value

    def state_dict(self):
        if not self._s_true:
            return {"true": None, "pred": None}
        return {"true": np.concatenate(self._s_true), "pred": np.concatenate(self._s_pred)}

    def load_state_dict(self, state):
        self.reset()
        if state.get("true") is not None:
            self._s_true = [np.asarray(getattr(state["true"], "data", state["true"]))]
            self._s_pred = [np.asarray(getattr(state["pred"], "data", state["pred"]))]


class Accuracy(Metric):
    """Fraction of samples whose predicted label equals the true one."""

    name = "accuracy"

    def __init__(self, threshold=0.5, name=None):
        self.threshold = threshold
        super().__init__(name)

    def reset(self):
        self._s_correct, self._s_total = 0, 0

    def update(self, y_true, y_pred):
        t, p = _pred_labels(y_true, y_pred, self.threshold, self.name)
        self._s_correct += int(np.count_nonzero(t == p))
        self._s_total += int(t.size)
        return self

    def compute(self):
        return self._s_correct / self._s_total if self._s_total else float("nan")


class ConfusionMatrix(Metric):
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as ``j`` (scikit-learn's layout).

    Labels are non-negative integers; the matrix grows to the largest label seen, or has
    ``num_classes`` rows from the start.

    >>> ConfusionMatrix().update([0, 1, 2, 2], [0, 2, 2, 1]).compute().tolist()
    [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    """

    name = "confusion_matrix"

    def __init__(self, num_classes=None, threshold=0.5, name=None):
        self.num_classes, self.threshold = num_classes, threshold
        super().__init__(name)

    def reset(self):
        n = self.num_classes or 0
        self._s_matrix = np.zeros((n, n), dtype=np.int64)

    def update(self, y_true, y_pred):
        t, p = _pred_labels(y_true, y_pred, self.threshold, self.name)
        if t.size == 0:
            return self
        if t.dtype.kind not in "iu" or p.dtype.kind not in "iu":
            raise ValueError(f"{self.name}: labels must be integers, got {t.dtype} and {p.dtype} "
                             "(the functions accept any labels)")
        low = min(t.min(), p.min())
        if low < 0:
            raise ValueError(f"{self.name}: labels must be non-negative integers, got {int(low)}")
        n = max(int(t.max()) + 1, int(p.max()) + 1, self._s_matrix.shape[0])
        if n > self._s_matrix.shape[0]:
            if self.num_classes is not None:
                raise ValueError(f"{self.name}: label {n - 1} is out of range for num_classes={self.num_classes}")
            grown = np.zeros((n, n), dtype=np.int64)
            k = self._s_matrix.shape[0]
            grown[:k, :k] = self._s_matrix
            self._s_matrix = grown
        self._s_matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)
        return self

    def compute(self):
        return self._s_matrix.copy()


def _check_average(op, average):
    if average not in _AVERAGES:
        raise ValueError(f"{op}: average must be one of 'binary', 'macro', 'micro', 'weighted' or None, "
                         f"got {average!r}")


def _prf(cm, which, average, pos_label, zero_division, op, labels=None):
    """Precision, recall or F1 from a confusion matrix, averaged as scikit-learn does."""
    n = cm.shape[0]
    if labels is None:
        present = np.flatnonzero(cm.sum(0) + cm.sum(1))  # labels seen in y_true or y_pred
    else:
        present = np.asarray(labels, dtype=np.int64)
        if present.size and present.max() >= n:  # a label never seen: zero counts
            cm = np.pad(cm, (0, int(present.max()) + 1 - n))
    if average == "binary":
        if present.size > 2:
            raise ValueError(f"{op}: the targets have {present.size} classes but average='binary'; pass "
                             f"average='macro', 'micro' or 'weighted' (or name the metric '{op}_macro')")
        if present.size == 2 and pos_label not in present:
            raise ValueError(f"{op}: pos_label={pos_label!r} is not a valid label: it should be one of "
                             f"{present.tolist()}")
        if pos_label >= cm.shape[0]:
            cm = np.pad(cm, (0, pos_label + 1 - cm.shape[0]))
        present = np.array([pos_label])
    tp = np.diag(cm)[present].astype(np.float64)
    pred = cm.sum(0)[present].astype(np.float64)
    true = cm.sum(1)[present].astype(np.float64)
    if average == "micro":
        tp, pred, true = tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)
    if which == "precision":
        values = _fraction(tp, pred, zero_division)
    elif which == "recall":
        values = _fraction(tp, true, zero_division)
    else:  # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (pred + true)
        values = _fraction(2 * tp, pred + true, zero_division)
    if average is None:
        return values
    if average == "weighted":
        return float(np.average(values, weights=true)) if true.sum() else float(zero_division)
    return float(values.mean()) if values.size else float(zero_division)


class _PRF(ConfusionMatrix):
    _which = None

    def __init__(self, average="binary", pos_label=1, zero_division=0.0, num_classes=None, threshold=0.5, name=None):
        _check_average(self._which, average)
        self.average, self.pos_label, self.zero_division = average, pos_label, zero_division
        if name is None:
            name = self._which if average in ("binary", None) else f"{self._which}_{average}"
        super().__init__(num_classes=num_classes, threshold=threshold, name=name)

    def compute(self):
        return _prf(self._s_matrix, self._which, self.average, self.pos_label, self.zero_division, self._which)


class Precision(_PRF):
    """Of the samples predicted as a class, the fraction that belong to it: ``tp / (tp + fp)``."""
    _which = "precision"


class Recall(_PRF):
    """Of the samples of a class, the fraction predicted as it: ``tp / (tp + fn)``."""
    _which = "recall"


class F1(_PRF):
    """The harmonic mean of precision and recall: ``2 tp / (2 tp + fp + fn)``."""
    _which = "f1"


def _average_ranks(x):
    """1-based ranks of ``x``, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    s = x[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    ends = np.r_[starts[1:], s.size]
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _binary_auc(positive, score):
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counting half
    (the Mann-Whitney statistic; equal to the trapezoidal area scikit-learn computes)."""
    n_pos = int(np.count_nonzero(positive))
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(score.astype(np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class ROCAUC(Metric):
    """Area under the ROC curve, from scores (probabilities or logits: only their order counts).

    Binary: one score per sample (or two columns, the second being the positive class's), the
    positive class being ``pos_label``. Multiclass: one column per class, one-vs-rest, averaged
    (``'macro'``, or ``'weighted'`` by class frequency); give probabilities (softmax) here, as
    scikit-learn expects. Undefined (NaN) when ``y_true`` holds one class only. Keeps all scores.
    """

    name = "roc_auc"

    def __init__(self, average="macro", pos_label=1, name=None):
        if average not in ("macro", "weighted"):
            raise ValueError(f"roc_auc: average must be 'macro' or 'weighted', got {average!r}")
        self.average, self.pos_label = average, pos_label
        super().__init__(name)

    def reset(self):
        self._s_true, self._s_score = np.zeros(0, np.int64), None

    def update(self, y_true, y_score):
        t = _true_labels(y_true, self.name)
        s = _array(y_score, "y_score", self.name).astype(np.float64)
        if s.ndim == t.ndim + 1 and s.shape[-1] == 1:
            s = s[..., 0]
        if s.shape[0] != t.shape[0] or s.ndim > 2 or t.ndim != 1:
            raise ValueError(f"{self.name}: y_true of shape {t.shape} and y_score of shape {s.shape} do not match; "
                             "expected (n,) labels and (n,) or (n, classes) scores")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{self.name}: y_score holds NaN or inf")
        self._s_true = np.concatenate([self._s_true, t.astype(np.int64)])
        if self._s_score is None or self._s_score.size == 0:
            self._s_score = s
        elif self._s_score.shape[1:] != s.shape[1:]:
            raise ValueError(f"{self.name}: scores of shape {s.shape} after scores with shape {self._s_score.shape}")
        else:
            self._s_score = np.concatenate([self._s_score, s])
        return self

    def compute(self):
        t, s = self._s_true, self._s_score
        if s is None or s.size == 0:
            return float("nan")
        if s.ndim == 1 or s.shape[1] == 2:
            score = s if s.ndim == 1 else s[:, 1]
            positive = t == self.pos_label if s.ndim == 1 else t == 1
            return _binary_auc(positive, score)
        aucs, weights = [], []
        for k in range(s.shape[1]):
            a = _binary_auc(t == k, s[:, k])
            if not np.isnan(a):
                aucs.append(a)
                weights.append(np.count_nonzero(t == k))
        if not aucs:
            return float("nan")
        return float(np.average(aucs, weights=weights if self.average == "weighted" else None))

    def state_dict(self):
        return {"true": self._s_true.copy(), "score": None if self._s_score is None else self._s_score.copy()}

    def load_state_dict(self, state):
        self.reset()
        self._s_true = np.asarray(state["true"].numpy() if hasattr(state["true"], "numpy") else state["true"])
        score = state.get("score")
        self._s_score = None if score is None else np.asarray(score.numpy() if hasattr(score, "numpy") else score)


class _Regression(Metric):
    """Per-output sums in float64, so that batches add up to the whole-array value."""

    higher_is_better = False

    def reset(self):
        self._s_n = 0
        self._s_sq = self._s_abs = self._s_mean = self._s_m2 = None

    def _pair(self, y_true, y_pred):
        t = _array(y_true, "y_true", self.name).astype(np.float64)
        p = _array(y_pred, "y_pred", self.name).astype(np.float64)
        if p.shape != t.shape:
            if p.size == t.size and p.squeeze().shape == t.squeeze().shape:
                p = p.reshape(t.shape)  # (n, 1) predictions for (n,) targets
            else:
                raise ValueError(f"{self.name}: y_true has shape {t.shape} and y_pred has shape {p.shape}; "
                                 "expected the same shape")
        if t.ndim == 0:
            t, p = t.reshape(1), p.reshape(1)
        return t.reshape(t.shape[0], -1), p.reshape(p.shape[0], -1)

    def update(self, y_true, y_pred):
        t, p = self._pair(y_true, y_pred)
        d = p - t
        n_b, mean_b = t.shape[0], t.mean(0) if t.shape[0] else np.zeros(t.shape[1])
        m2_b = ((t - mean_b) ** 2).sum(0)
        if self._s_sq is None:
            self._s_sq, self._s_abs = (d * d).sum(0), np.abs(d).sum(0)
            self._s_mean, self._s_m2, self._s_n = mean_b, m2_b, n_b
            return self
        if t.shape[1] != self._s_sq.shape[0]:
            raise ValueError(f"{self.name}: a batch with {t.shape[1]} outputs after batches with {self._s_sq.shape[0]}")
        self._s_sq = self._s_sq + (d * d).sum(0)
        self._s_abs = self._s_abs + np.abs(d).sum(0)
        n = self._s_n + n_b
        if n_b:  # Chan et al.'s parallel update of the mean and the sum of squared deviations
            delta = mean_b - self._s_mean
            self._s_m2 = self._s_m2 + m2_b + delta * delta * self._s_n * n_b / n
            self._s_mean = self._s_mean + delta * n_b / n
        self._s_n = n
        return self

    def state_dict(self):
        return {k: getattr(self, "_s_" + k) for k in ("n", "sq", "abs", "mean", "m2")}

    def load_state_dict(self, state):
        self.reset()
        for k, v in state.items():
            if k != "n" and v is not None:
                v = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            setattr(self, "_s_" + k, v)


class MSE(_Regression):
    """Mean squared error (averaged over samples and outputs)."""
    name = "mse"

    def compute(self):
        return float(self._s_sq.mean() / self._s_n) if self._s_n else float("nan")


class RMSE(MSE):
    """Square root of the mean squared error."""
    name = "rmse"

    def compute(self):
        return float(np.sqrt(super().compute()))


class MAE(_Regression):
    """Mean absolute error (averaged over samples and outputs)."""
    name = "mae"

    def compute(self):
        return float(self._s_abs.mean() / self._s_n) if self._s_n else float("nan")


class R2(_Regression):
    """Coefficient of determination ``1 - SS_res / SS_tot``, per output, then averaged (scikit-learn's
    ``'uniform_average'``). A constant target gives 1.0 when predicted exactly, else 0.0; fewer than two
    samples give NaN."""
    name = "r2"
    higher_is_better = True

    def compute(self):
        if self._s_n < 2:
            return float("nan")
        ss_res, ss_tot = self._s_sq, self._s_m2
        r2 = np.where(ss_tot != 0, 1.0 - ss_res / np.where(ss_tot != 0, ss_tot, 1.0),
                      np.where(ss_res == 0, 1.0, 0.0))
        return float(r2.mean())


# --- functions: whole arrays, scikit-learn's argument order and defaults ---

def _encode(y_true, y_pred, op, labels=None, pos_label=None):
    """Count a confusion matrix over arbitrary labels (strings, negative numbers …): the classes are the
    labels seen, then those of ``labels`` and ``pos_label`` not seen. Returns the matrix, the index of
    each of ``labels`` (or None) and the index of ``pos_label`` (or None)."""
    t, p = _pred_labels(y_true, y_pred, 0.5, op)
    wanted = [] if labels is None else list(np.asarray(labels).tolist())
    wanted_pos = [] if pos_label is None else [pos_label]
    if t.dtype.kind != p.dtype.kind or any(isinstance(v, str) for v in wanted + wanted_pos) != (t.dtype.kind in "US"):
        t, p = t.astype(str), p.astype(str)
        wanted, wanted_pos = [str(v) for v in wanted], [str(v) for v in wanted_pos]
    seen = np.unique(np.concatenate([t, p])).tolist()
    classes = seen + [v for v in dict.fromkeys(wanted + wanted_pos) if v not in set(seen)]
    index = {c: i for i, c in enumerate(classes)}
    n = len(classes)
    ti = np.array([index[v] for v in t.tolist()], dtype=np.int64)
    pi = np.array([index[v] for v in p.tolist()], dtype=np.int64)
    cm = np.bincount(ti * n + pi, minlength=n * n).reshape(n, n)
    sel = None if labels is None else np.array([index[v] for v in wanted], dtype=np.int64)
    return cm, sel, (index[wanted_pos[0]] if wanted_pos else None)


def accuracy(y_true, y_pred, threshold=0.5):
    """Fraction of correct predictions (scikit-learn's ``accuracy_score``)."""
    return Accuracy(threshold=threshold)(y_true, y_pred)


def confusion_matrix(y_true, y_pred, labels=None):
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as ``j``; the classes are ``labels``
    (in that order) or the sorted union of the labels seen.

    >>> confusion_matrix(["cat", "dog", "dog"], ["cat", "cat", "dog"]).tolist()
    [[1, 0], [1, 1]]
    """
    cm, sel, _ = _encode(y_true, y_pred, "confusion_matrix", labels)
    return cm if sel is None else cm[np.ix_(sel, sel)]


def _prf_function(which, y_true, y_pred, average, pos_label, zero_division, labels):
    _check_average(which, average)
    cm, sel, pos = _encode(y_true, y_pred, which, labels, pos_label if average == "binary" else None)
    if average == "binary":
        present = np.flatnonzero(cm.sum(0) + cm.sum(1))
        if present.size > 2:
            raise ValueError(f"{which}: the targets have {present.size} classes but average='binary'; pass "
                             "average='macro', 'micro' or 'weighted'")
        if present.size == 2 and pos not in present:
            raise ValueError(f"{which}: pos_label={pos_label!r} is not a valid label: it should be one of the "
                             "labels seen")
        return _prf(cm, which, "binary", pos, zero_division, which)
    return _prf(cm, which, average, pos, zero_division, which, labels=sel)


def precision(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0, labels=None):
    """``tp / (tp + fp)``, for ``pos_label`` or averaged over classes (scikit-learn's ``precision_score``)."""
    return _prf_function("precision", y_true, y_pred, average, pos_label, zero_division, labels)


def recall(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0, labels=None):
    """``tp / (tp + fn)``, for ``pos_label`` or averaged over classes (scikit-learn's ``recall_score``)."""
    return _prf_function("recall", y_true, y_pred, average, pos_label, zero_division, labels)


def f1(y_true, y_pred, average="binary", pos_label=1, zero_division=0.0, labels=None):
    """``2 tp / (2 tp + fp + fn)``, for ``pos_label`` or averaged over classes (scikit-learn's ``f1_score``)."""
    return _prf_function("f1", y_true, y_pred, average, pos_label, zero_division, labels)


def roc_auc(y_true, y_score, average="macro", pos_label=1):
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``; multiclass: one-vs-rest).

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    return ROCAUC(average=average, pos_label=pos_label)(y_true, y_score)


def mse(y_true, y_pred):
    """Mean squared error (scikit-learn's ``mean_squared_error``)."""
    return MSE()(y_true, y_pred)


def rmse(y_true, y_pred):
    """Root mean squared error."""
    return RMSE()(y_true, y_pred)


def mae(y_true, y_pred):
    """Mean absolute error (scikit-learn's ``mean_absolute_error``)."""
    return MAE()(y_true, y_pred)


def r2(y_true, y_pred):
    """Coefficient of determination (scikit-learn's ``r2_score``)."""
    return R2()(y_true, y_pred)


# scikit-learn's names, for habit
accuracy_score, precision_score, recall_score, f1_score = accuracy, precision, recall, f1
roc_auc_score, mean_squared_error, mean_absolute_error, r2_score = roc_auc, mse, mae, r2

# --- look-up by name ---
_REGISTRY = {"accuracy": Accuracy, "acc": Accuracy, "precision": Precision, "recall": Recall, "f1": F1,
             "f1_score": F1, "roc_auc": ROCAUC, "auc": ROCAUC, "auroc": ROCAUC, "confusion_matrix": ConfusionMatrix,
             "mse": MSE, "mean_squared_error": MSE, "rmse": RMSE, "mae": MAE, "mean_absolute_error": MAE, "r2": R2,
             "r2_score": R2}


def names():
    """The names ``get`` knows (``precision``, ``recall`` and ``f1`` also take a ``_macro``, ``_micro`` or
    ``_weighted`` suffix, ``roc_auc`` a ``_weighted`` one)."""
    return sorted(_REGISTRY)


def get(name, **kwargs):
    """A new metric from its name, or the metric itself when given one.

    >>> get("f1_macro").name, get("accuracy")
    ('f1_macro', Accuracy(name='accuracy'))
    >>> get("precision", pos_label=0).pos_label
    0
    """
    if isinstance(name, Metric):
        return name.clone() if not kwargs else type(name)(**kwargs)
    if not isinstance(name, str):
        raise TypeError(f"metrics.get: expected a metric name or a Metric, got {type(name).__name__}")
    key = name.lower().strip()
    if key in _REGISTRY:
        return _REGISTRY[key](**kwargs)
    base, _, average = key.rpartition("_")
    if base in ("precision", "recall", "f1", "f1_score") and average in ("macro", "micro", "weighted", "binary"):
        return _REGISTRY[base](average=average, **kwargs)
    if base in ("roc_auc", "auc", "auroc") and average in ("macro", "weighted"):
        return ROCAUC(average=average, name=key, **kwargs)
    raise ValueError(f"metrics.get: unknown metric {name!r}; known: {', '.join(names())} "
                     "(precision/recall/f1 take _macro, _micro or _weighted)")
