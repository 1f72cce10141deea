"""Group fairness: the metrics of a classifier per value of a sensitive attribute, and the gaps between groups.

For each group g (the samples whose sensitive attribute is g), with ŷ the prediction and y the label:

    count            n_g
    accuracy         P(ŷ = y | g)
    selection rate   P(ŷ = positive | g)
    TPR (recall)     P(ŷ = positive | y = positive, g)
    FPR              P(ŷ = positive | y ≠ positive, g)

and, as Fairlearn defines them (the largest gap between any two groups, 0 when the groups are treated alike):

    demographic parity difference   max_g selection rate − min_g selection rate
    equalized odds difference       max(max_g TPR − min_g TPR, max_g FPR − min_g FPR)

Rates that a group cannot have (a TPR with no positive label in it) are NaN and left out of the gaps.
Selection rate, TPR and FPR are for a binary decision: ``pos_label`` (default 1) is the positive class,
and a multi-class problem is read as "positive class against the rest".

>>> r = group_metrics(y_true=[1, 0, 1, 0, 1, 0], y_pred=[1, 0, 0, 0, 1, 1], sensitive=list("aaabbb"))
>>> r["by_group"]["a"]["tpr"], r["by_group"]["b"]["fpr"], r["demographic_parity_difference"]
(0.5, 0.5, 0.3333333333333333)
>>> print(r.to_markdown())
| group | count | accuracy | selection rate | TPR | FPR |
|---|---|---|---|---|---|
| a | 3 | 0.667 | 0.333 | 0.500 | 0.000 |
| b | 3 | 0.667 | 0.667 | 1.000 | 0.500 |
| all | 6 | 0.667 | 0.500 | 0.667 | 0.333 |
<BLANKLINE>
demographic parity difference: 0.333; equalized odds difference: 0.500
"""
import math

import numpy as np

__all__ = ["group_metrics", "GroupMetrics", "demographic_parity_difference", "equalized_odds_difference"]

_COLUMNS = [("count", "count"), ("accuracy", "accuracy"), ("selection_rate", "selection rate"), ("tpr", "TPR"),
            ("fpr", "FPR"), ("auc", "AUC")]


def _vector(who, name, v):
    if hasattr(v, "numpy") and not isinstance(v, np.ndarray):
        v = v.numpy()  # a Tensor (or a pandas Series)
    a = np.asarray(v)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{who}: {name} must be one value per sample (1-D), got shape {a.shape}")
    return a


def _sensitive(who, sensitive, n):
    """Group labels as strings; a dict (or DataFrame) of several attributes gives their intersections."""
    if isinstance(sensitive, dict) or hasattr(sensitive, "columns"):
        names = list(sensitive.keys()) if isinstance(sensitive, dict) else list(sensitive.columns)
        cols = [_vector(who, f"sensitive[{k!r}]", sensitive[k]) for k in names]
        if any(len(c) != n for c in cols):
            raise ValueError(f"{who}: every sensitive attribute needs {n} values, got {[len(c) for c in cols]}")
        return np.array([", ".join(f"{k}={v}" for k, v in zip(names, row)) for row in zip(*cols)], dtype=object)
    a = _vector(who, "sensitive", sensitive)
    if len(a) != n:
        raise ValueError(f"{who}: sensitive has {len(a)} values but y_true has {n}")
    return np.array([str(v) for v in a], dtype=object)


def _rate(hits, of):
    return float(hits.sum() / of.sum()) if of.sum() else math.nan


def _auc(pos_scores, neg_scores):
    """ROC AUC as P(score of a positive > score of a negative), ties counting half (Mann–Whitney)."""
    if len(pos_scores) == 0 or len(neg_scores) == 0:
        return math.nan
    scores = np.concatenate([pos_scores, neg_scores])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2
    ranks[order] = np.repeat(avg, counts)
    n_pos, n_neg = len(pos_scores), len(neg_scores)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _metrics(y_true, y_pred, pos_label, score):
    pos, sel = y_true == pos_label, y_pred == pos_label
    m = {"count": int(len(y_true)),
         "accuracy": float((y_true == y_pred).mean()) if len(y_true) else math.nan,
         "selection_rate": float(sel.mean()) if len(y_true) else math.nan,
         "tpr": _rate(sel & pos, pos),
         "fpr": _rate(sel & ~pos, ~pos)}
    if score is not None:
        m["auc"] = _auc(score[pos], score[~pos])
    return m


def _gap(values):
    values = [v for v in values if not math.isnan(v)]
    return max(values) - min(values) if values else math.nan


class GroupMetrics(dict):
    """The result of :func:`group_metrics`: a plain dict (JSON-able) with ``by_group``, ``overall``,
    ``demographic_parity_difference``, ``equalized_odds_difference`` (and ``pos_label``), plus
    ``to_markdown()`` and a plain-text ``str()``."""

    def _rows(self, fmt):
        cols = [(k, title) for k, title in _COLUMNS if k in self["overall"]]
        rows = [[title for _, title in cols]]
        for name, m in list(self["by_group"].items()) + [("all", self["overall"])]:
            rows.append([str(name)] + [str(m[k]) if k == "count" else fmt(m[k]) for k, _ in cols])
        rows[0] = ["group"] + rows[0]
        return rows

    def _summary(self, fmt):
        return (f"demographic parity difference: {fmt(self['demographic_parity_difference'])}; "
                f"equalized odds difference: {fmt(self['equalized_odds_difference'])}")

    @staticmethod
    def _fmt(v, digits=3):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    def to_markdown(self, digits=3):
        """A Markdown table, one row per group and one for all samples, then the two gaps."""
        fmt = lambda v: self._fmt(v, digits)  # noqa: E731
        rows = self._rows(fmt)
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * len(rows[0]))
        return "\n".join(lines) + "\n\n" + self._summary(fmt)

    def to_text(self, digits=3):
        """The same table with aligned plain-text columns."""
        fmt = lambda v: self._fmt(v, digits)  # noqa: E731
        rows = self._rows(fmt)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines) + "\n" + self._summary(fmt)

    def __str__(self):
        return self.to_text()


def group_metrics(y_true, y_pred, sensitive, y_score=None, pos_label=1):
    """Per-group accuracy, selection rate, TPR, FPR and counts (and ROC AUC when ``y_score`` gives the
    positive class's score or probability), with the demographic-parity and equalized-odds differences.

    ``sensitive`` is one group label per sample, or a dict / DataFrame of several attributes (their
    combinations are then the groups). Labels and predictions can be Tensors, arrays or lists; a
    ``y_score`` of shape (N, C) (class probabilities) is read at column ``pos_label``.
    """
    who = "group_metrics"
    yt = _vector(who, "y_true", y_true)
    yp = _vector(who, "y_pred", y_pred)
    if len(yt) != len(yp):
        raise ValueError(f"{who}: y_true has {len(yt)} values but y_pred has {len(yp)}")
    if len(yt) == 0:
        raise ValueError(f"{who}: no samples")
    groups = _sensitive(who, sensitive, len(yt))
    score = None
    if y_score is not None:
        s = y_score.numpy() if hasattr(y_score, "numpy") and not isinstance(y_score, np.ndarray) else y_score
        s = np.asarray(s, dtype=np.float64)
        if s.ndim == 2 and s.shape[1] > 1:
            s = s[:, int(pos_label)]
        score = _vector(who, "y_score", s)
        if len(score) != len(yt):
            raise ValueError(f"{who}: y_score has {len(score)} values but y_true has {len(yt)}")
    by_group = {}
    for g in sorted(set(groups), key=str):
        keep = groups == g
        by_group[g] = _metrics(yt[keep], yp[keep], pos_label, None if score is None else score[keep])
    gaps = [g for g in (_gap([m["tpr"] for m in by_group.values()]), _gap([m["fpr"] for m in by_group.values()]))
            if not math.isnan(g)]
    return GroupMetrics(
        by_group=by_group, overall=_metrics(yt, yp, pos_label, score), pos_label=pos_label,
        demographic_parity_difference=_gap([m["selection_rate"] for m in by_group.values()]),
        equalized_odds_difference=max(gaps) if gaps else math.nan)


def demographic_parity_difference(y_true, y_pred, *, sensitive_features, pos_label=1):
    """max_g P(ŷ = positive | g) − min_g P(ŷ = positive | g) (Fairlearn's signature).

    >>> demographic_parity_difference([0, 0, 0, 0], [1, 1, 0, 1], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    return group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)["demographic_parity_difference"]


def equalized_odds_difference(y_true, y_pred, *, sensitive_features, pos_label=1):
    """The larger of the TPR gap and the FPR gap between groups (Fairlearn's signature).

    >>> equalized_odds_difference([1, 0, 1, 0], [1, 0, 0, 1], sensitive_features=["a", "a", "b", "b"])
    1.0
    """
    return group_metrics(y_true, y_pred, sensitive_features, pos_label=pos_label)["equalized_odds_difference"]
