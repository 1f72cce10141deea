"""tidu.train.metrics against scikit-learn: functions on whole arrays, classes accumulated over batches."""
import numpy as np
import pytest

import tidu as td
from tidu.train import metrics as M

sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed: metric parity not checked")

rs = np.random.default_rng(0)
BIN_T, BIN_P = rs.integers(0, 2, 200), rs.integers(0, 2, 200)
MC_T, MC_P = rs.integers(0, 4, 300), rs.integers(0, 4, 300)
MC_P[:10] = 5  # a class predicted but never true
SKEWED_T, SKEWED_P = np.zeros(50, np.int64), np.r_[np.zeros(45, np.int64), np.ones(5, np.int64)]


def _batches(*arrays, size=37):
    n = len(arrays[0])
    for i in range(0, n, size):
        yield tuple(a[i:i + size] for a in arrays)


def _accumulated(metric, y_true, y_pred):
    for t, p in _batches(y_true, y_pred):
        metric.update(t, p)
    return metric.compute()


@pytest.mark.parametrize("t,p", [(BIN_T, BIN_P), (MC_T, MC_P), (SKEWED_T, SKEWED_P)])
def test_accuracy(t, p):
    assert M.accuracy(t, p) == pytest.approx(sk.accuracy_score(t, p))
    assert _accumulated(M.Accuracy(), t, p) == pytest.approx(sk.accuracy_score(t, p))


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
@pytest.mark.parametrize("t,p", [(BIN_T, BIN_P), (MC_T, MC_P), (SKEWED_T, SKEWED_P)])
def test_prf_averages(name, average, t, p):
    fn, ref = getattr(M, name), getattr(sk, f"{name}_score")
    expected = ref(t, p, average=average, zero_division=0)
    np.testing.assert_allclose(fn(t, p, average=average), expected)
    cls = {"precision": M.Precision, "recall": M.Recall, "f1": M.F1}[name]
    np.testing.assert_allclose(_accumulated(cls(average=average), t, p), expected)


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
@pytest.mark.parametrize("pos_label", [0, 1])
@pytest.mark.parametrize("t,p", [(BIN_T, BIN_P), (SKEWED_T, SKEWED_P), (np.zeros(5, int), np.zeros(5, int))])
def test_prf_binary_pos_label(name, pos_label, t, p):
    expected = getattr(sk, f"{name}_score")(t, p, pos_label=pos_label, zero_division=0)
    assert getattr(M, name)(t, p, pos_label=pos_label) == pytest.approx(expected)
    cls = {"precision": M.Precision, "recall": M.Recall, "f1": M.F1}[name]
    assert _accumulated(cls(pos_label=pos_label), t, p) == pytest.approx(expected)


def test_prf_string_labels_and_labels_argument():
    t = np.array(["cat", "dog", "dog", "bird", "cat"])
    p = np.array(["cat", "cat", "dog", "dog", "cat"])
    for avg in ("macro", "weighted", "micro"):
        assert M.f1(t, p, average=avg) == pytest.approx(sk.f1_score(t, p, average=avg, zero_division=0))
    assert M.precision(t, p, average="macro", labels=["cat", "dog"]) == pytest.approx(
        sk.precision_score(t, p, average="macro", labels=["cat", "dog"], zero_division=0))
    np.testing.assert_array_equal(M.confusion_matrix(t, p), sk.confusion_matrix(t, p))
    np.testing.assert_array_equal(M.confusion_matrix(t, p, labels=["dog", "cat"]),
                                  sk.confusion_matrix(t, p, labels=["dog", "cat"]))
    assert M.precision(["no", "yes", "yes"], ["yes", "yes", "no"], pos_label="yes") == 0.5


def test_binary_average_on_multiclass_is_refused():
    with pytest.raises(ValueError, match="4 classes but average='binary'.*macro"):
        M.f1(MC_T[:50] % 4, MC_T[:50] % 4)
    with pytest.raises(ValueError, match="4 classes but average='binary'.*f1_macro"):
        M.F1().update(MC_T % 4, MC_T % 4).compute()
    with pytest.raises(ValueError, match="pos_label=3 is not a valid label"):
        M.Recall(pos_label=3).update([0, 1], [1, 0]).compute()
    with pytest.raises(ValueError, match="average must be one of"):
        M.Precision(average="samples")


@pytest.mark.parametrize("t,p", [(BIN_T, BIN_P), (MC_T, MC_P)])
def test_confusion_matrix(t, p):
    np.testing.assert_array_equal(M.confusion_matrix(t, p), sk.confusion_matrix(t, p))
    # the class indexes rows by label, 0 .. the largest seen (here 4 is never seen)
    every = np.arange(max(t.max(), p.max()) + 1)
    np.testing.assert_array_equal(_accumulated(M.ConfusionMatrix(), t, p), sk.confusion_matrix(t, p, labels=every))
    assert M.ConfusionMatrix(num_classes=6).update([0], [0]).compute().shape == (6, 6)
    with pytest.raises(ValueError, match="out of range for num_classes=2"):
        M.ConfusionMatrix(num_classes=2).update([0, 2], [0, 1])


def test_scores_and_one_hot_inputs():
    logits = rs.normal(size=(60, 3)).astype(np.float32)
    t = rs.integers(0, 3, 60)
    assert M.accuracy(t, logits) == pytest.approx(sk.accuracy_score(t, logits.argmax(1)))
    assert M.accuracy(np.eye(3)[t], logits) == pytest.approx(sk.accuracy_score(t, logits.argmax(1)))
    prob = rs.uniform(size=40)
    tb = rs.integers(0, 2, 40)
    assert M.accuracy(tb, prob) == pytest.approx(sk.accuracy_score(tb, prob > 0.5))
    assert M.accuracy(tb, prob[:, None]) == pytest.approx(sk.accuracy_score(tb, prob > 0.5))
    assert M.accuracy(tb, prob - 0.5, threshold=0.0) == pytest.approx(sk.accuracy_score(tb, prob > 0.5))
    assert M.accuracy(td.tensor(tb), td.tensor(prob.astype(np.float32))) == pytest.approx(
        sk.accuracy_score(tb, prob > 0.5))
    assert M.accuracy(tb.astype(np.float32), tb.astype(np.float32)) == 1.0  # float labels stay labels
    with pytest.raises(ValueError, match=r"y_true has shape \(3,\) and y_pred has shape \(2,\)"):
        M.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="non-integer values"):
        M.accuracy([0.5, 1.0], [0, 1])


def test_roc_auc_binary_with_ties():
    t = rs.integers(0, 2, 500)
    s = np.round(rs.normal(size=500) + t, 1)  # rounding makes many ties
    assert M.roc_auc(t, s) == pytest.approx(sk.roc_auc_score(t, s))
    assert _accumulated(M.ROCAUC(), t, s) == pytest.approx(sk.roc_auc_score(t, s))
    two_cols = np.stack([1 - s, s], 1)
    assert M.roc_auc(t, two_cols) == pytest.approx(sk.roc_auc_score(t, s))
    assert M.roc_auc(t, s, pos_label=0) == pytest.approx(sk.roc_auc_score(t == 0, s))  # s scores class 0
    assert np.isnan(M.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))  # one class: undefined


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_roc_auc_multiclass_ovr(average):
    t = rs.integers(0, 4, 400)
    logits = rs.normal(size=(400, 4)) + np.eye(4)[t]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = sk.roc_auc_score(t, prob, multi_class="ovr", average=average)
    assert M.roc_auc(t, prob, average=average) == pytest.approx(expected)
    assert _accumulated(M.ROCAUC(average=average), t, prob) == pytest.approx(expected)


@pytest.mark.parametrize("shape", [(200,), (200, 3)])
def test_regression(shape):
    t = rs.normal(size=shape) * 3 + 100.0  # a large mean tests the stable variance
    p = t + rs.normal(size=shape)
    for fn, cls, ref in [(M.mse, M.MSE, sk.mean_squared_error), (M.mae, M.MAE, sk.mean_absolute_error),
                         (M.r2, M.R2, sk.r2_score)]:
        expected = ref(t, p)
        assert fn(t, p) == pytest.approx(expected, rel=1e-10)
        assert _accumulated(cls(), t, p) == pytest.approx(expected, rel=1e-10)
        assert _accumulated(cls(), t.astype(np.float32), p.astype(np.float32)) == pytest.approx(expected, rel=1e-5)
    assert M.rmse(t, p) == pytest.approx(np.sqrt(sk.mean_squared_error(t, p)))


def test_regression_edge_cases():
    assert M.r2([1.0, 2.0, 3.0], np.array([[1.0], [2.0], [3.0]])) == 1.0  # (n, 1) predictions
    assert M.r2([2.0, 2.0], [2.0, 2.0]) == sk.r2_score([2.0, 2.0], [2.0, 2.0])
    assert M.r2([2.0, 2.0], [2.0, 3.0]) == sk.r2_score([2.0, 2.0], [2.0, 3.0])
    assert np.isnan(M.R2().compute()) and np.isnan(M.MSE().compute())
    with pytest.raises(ValueError, match=r"mse: y_true has shape \(3,\) and y_pred has shape \(2,\)"):
        M.mse([1.0, 2.0, 3.0], [1.0, 2.0])


def test_state_dict_round_trip_and_reset():
    for name in ["accuracy", "f1_macro", "roc_auc", "r2", "confusion_matrix"]:
        m = M.get(name)
        regression = name == "r2"
        t1 = rs.normal(size=20) if regression else rs.integers(0, 3, 20)
        p1 = rs.normal(size=20) if regression else rs.uniform(size=(20, 3))
        t2, p2 = t1[::-1].copy(), p1[::-1].copy()
        m.update(t1, p1)
        saved = m.state_dict()
        m2 = M.get(name)
        m2.load_state_dict(saved)
        np.testing.assert_allclose(m2.update(t2, p2).compute(), m.update(t2, p2).compute())
        m.reset()
        np.testing.assert_allclose(m.update(t2, p2).compute(), M.get(name)(t2, p2))


def test_get_by_name():
    assert isinstance(M.get("accuracy"), M.Accuracy)
    assert M.get("f1_weighted").average == "weighted" and M.get("f1_weighted").name == "f1_weighted"
    assert M.get("recall_macro").name == "recall_macro"
    assert M.get("roc_auc_weighted").average == "weighted"
    assert isinstance(M.get("R2"), M.R2) and not M.get("r2") is M.get("r2")
    assert M.get("precision", pos_label=0).pos_label == 0
    assert M.get("mse").higher_is_better is False and M.get("r2").higher_is_better is True
    with pytest.raises(ValueError, match="unknown metric 'acuracy'; known: .*accuracy"):
        M.get("acuracy")
    assert M.f1_score is M.f1 and M.r2_score is M.r2
