"""tidu.fairness: group metrics against values computed by hand on a small table."""
import json
import math

import numpy as np
import pytest

import tidu as td
from tidu.fairness import demographic_parity_difference, equalized_odds_difference, group_metrics

#            group a      group b      group c      group d (no positive label)
Y_TRUE = [1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]
Y_PRED = [1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1]
GROUPS = list("aaaabbbbccccdd")

# by hand: (count, accuracy, selection rate, TPR, FPR)
EXPECTED = {"a": (4, 2 / 4, 2 / 4, 1 / 2, 1 / 2),
            "b": (4, 3 / 4, 2 / 4, 1 / 1, 1 / 3),
            "c": (4, 3 / 4, 4 / 4, 3 / 3, 1 / 1),
            "d": (2, 1 / 2, 1 / 2, math.nan, 1 / 2),
            "all": (14, 9 / 14, 9 / 14, 5 / 6, 4 / 8)}


def test_group_metrics_by_hand():
    r = group_metrics(Y_TRUE, Y_PRED, GROUPS)
    rows = dict(r["by_group"], all=r["overall"])
    assert list(r["by_group"]) == ["a", "b", "c", "d"]
    for g, (count, acc, sel, tpr, fpr) in EXPECTED.items():
        m = rows[g]
        assert m["count"] == count, g
        assert m["accuracy"] == pytest.approx(acc), g
        assert m["selection_rate"] == pytest.approx(sel), g
        assert m["tpr"] == pytest.approx(tpr, nan_ok=True), g
        assert m["fpr"] == pytest.approx(fpr), g
    assert r["demographic_parity_difference"] == pytest.approx(1.0 - 0.5)       # c − a (or b, d)
    assert r["equalized_odds_difference"] == pytest.approx(max(1 - 1 / 2, 1 - 1 / 3))  # FPR gap c − b
    assert demographic_parity_difference(Y_TRUE, Y_PRED, sensitive_features=GROUPS) == pytest.approx(0.5)
    assert equalized_odds_difference(Y_TRUE, Y_PRED, sensitive_features=GROUPS) == pytest.approx(2 / 3)
    json.dumps(r)  # a plain dict: goes into a report as is


def test_tensors_scores_and_intersections():
    y_true, y_pred = td.tensor(Y_TRUE), td.tensor(np.array(Y_PRED))
    rs = np.random.default_rng(0)
    proba = rs.uniform(size=(14, 2)).astype(np.float32)
    r = group_metrics(y_true, y_pred, np.array(GROUPS), y_score=td.tensor(proba))
    sklearn = pytest.importorskip("sklearn.metrics")
    for g in "abc":
        keep = np.array(GROUPS) == g
        assert r["by_group"][g]["auc"] == pytest.approx(
            sklearn.roc_auc_score(np.array(Y_TRUE)[keep], proba[keep, 1]))
    assert math.isnan(r["by_group"]["d"]["auc"])  # one class only
    assert r["overall"]["auc"] == pytest.approx(sklearn.roc_auc_score(Y_TRUE, proba[:, 1]))
    both = group_metrics(Y_TRUE, Y_PRED, {"sex": list("fmfmfmfmfmfmfm"), "band": GROUPS})
    assert "sex=f, band=a" in both["by_group"]
    assert sum(m["count"] for m in both["by_group"].values()) == 14


def test_multiclass_is_one_against_the_rest():
    r = group_metrics([0, 1, 2, 2], [0, 2, 2, 1], ["x", "x", "y", "y"], pos_label=2)
    assert r["by_group"]["x"]["accuracy"] == 0.5 and r["by_group"]["x"]["selection_rate"] == 0.5
    assert r["by_group"]["y"]["tpr"] == 0.5 and math.isnan(r["by_group"]["y"]["fpr"])


def test_renderers():
    r = group_metrics(Y_TRUE, Y_PRED, GROUPS)
    md = r.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| group | count | accuracy | selection rate | TPR | FPR |"
    assert lines[1] == "|---|---|---|---|---|---|"
    assert lines[5] == "| d | 2 | 0.500 | 0.500 | n/a | 0.500 |"
    assert lines[6] == "| all | 14 | 0.643 | 0.643 | 0.833 | 0.500 |"
    assert md.endswith("demographic parity difference: 0.500; equalized odds difference: 0.667")
    text = str(r).splitlines()
    assert text[0].split() == ["group", "count", "accuracy", "selection", "rate", "TPR", "FPR"]
    assert len({len(line) for line in text[:7]}) == 1  # aligned columns


def test_errors():
    with pytest.raises(ValueError, match="y_true has 3 values but y_pred has 2"):
        group_metrics([1, 0, 1], [1, 0], ["a", "b", "a"])
    with pytest.raises(ValueError, match="sensitive has 2 values but y_true has 3"):
        group_metrics([1, 0, 1], [1, 0, 0], ["a", "b"])
    with pytest.raises(ValueError, match=r"y_pred must be one value per sample \(1-D\), got shape \(3, 2\)"):
        group_metrics([1, 0, 1], np.zeros((3, 2)), ["a", "b", "a"])
