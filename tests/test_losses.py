"""Every loss op: float64 finite differences and PyTorch parity (values and gradients), over shapes,
targets, weights, ignore_index, label smoothing and reductions; the loss modules; clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidu as td
import tidu.nn as nn
import tidu.nn.functional as F
from helpers import check, needs_torch, torch

REDUCTIONS = ["mean", "sum", "none"]
rs = np.random.default_rng(0)


def _tf():
    return torch.nn.functional


def _w(values, lib):
    """The same class weights for tidu (td) and PyTorch (torch)."""
    if values is None:
        return None
    a = np.asarray(values, np.float32)
    return td.tensor(a) if lib == "td" else torch.tensor(a)


def _labels(shape, n_classes, ignore=None, seed=0):
    t = np.random.default_rng(seed).integers(0, n_classes, shape)
    if ignore is not None and t.size:
        t.reshape(-1)[1::3] = ignore  # every third target ignored, never all of them
    return t


# --- cross-entropy ---
CE_INDEX_CASES = [  # id, input shape, kwargs
    ("2d", (5, 4), {}),
    ("batch1", (1, 3), {}),
    ("one_class", (3, 1), {}),
    ("unbatched", (4,), {}),
    ("spatial1d", (3, 4, 6), {}),
    ("spatial2d", (2, 3, 4, 5), {}),
    ("weight", (6, 4), {"weight": [0.5, 1.0, 2.0, 3.0]}),
    ("ignore", (6, 4), {"ignore_index": -100}),
    ("ignore_pos", (6, 4), {"ignore_index": 1}),
    ("smooth", (6, 4), {"label_smoothing": 0.2}),
    ("all", (6, 4), {"weight": [0.5, 1.0, 2.0, 3.0], "ignore_index": -100, "label_smoothing": 0.15}),
    ("all_spatial", (2, 3, 4, 2), {"weight": [2.0, 0.5, 1.0], "ignore_index": 7, "label_smoothing": 0.3}),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,shape,kw", CE_INDEX_CASES, ids=[c[0] for c in CE_INDEX_CASES])
def test_cross_entropy_class_indices(name, shape, kw, reduction):
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    ignore = kw.get("ignore_index")
    t = _labels(tshape, n_classes, ignore if ignore is not None and ignore != 1 else None)
    if ignore == 1:  # a real class used as ignore_index
        t = _labels(tshape, n_classes)
    w = kw.get("weight")
    opts = {k: v for k, v in kw.items() if k != "weight"}
    x = rs.standard_normal(shape) * 2
    check(lambda a, b: F.cross_entropy(a, b, weight=_w(w, "td"), reduction=reduction, **opts),
          inputs=[x, t],
          torch_fn=lambda a, b: _tf().cross_entropy(a, b, weight=_w(w, "torch"), reduction=reduction, **opts))


CE_PROB_CASES = [
    ("2d", (5, 4), {}),
    ("batch1", (1, 3), {}),
    ("unbatched", (4,), {}),
    ("spatial", (2, 3, 4), {}),
    ("weight", (5, 4), {"weight": [0.5, 1.0, 2.0, 3.0]}),
    ("smooth", (5, 4), {"label_smoothing": 0.1}),
    ("weight_smooth_spatial", (2, 3, 2, 2), {"weight": [2.0, 0.5, 1.0], "label_smoothing": 0.25}),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,shape,kw", CE_PROB_CASES, ids=[c[0] for c in CE_PROB_CASES])
def test_cross_entropy_probabilities(name, shape, kw, reduction):
    class_dim = 0 if len(shape) == 1 else 1
    p = rs.random(shape) + 0.05
    p /= p.sum(axis=class_dim, keepdims=True)
    w = kw.get("weight")
    opts = {k: v for k, v in kw.items() if k != "weight"}
    # both input and target are float: both are differentiated, as in PyTorch
    check(lambda a, b: F.cross_entropy(a, b, weight=_w(w, "td"), reduction=reduction, **opts),
          inputs=[rs.standard_normal(shape), p],
          torch_fn=lambda a, b: _tf().cross_entropy(a, b, weight=_w(w, "torch"), reduction=reduction, **opts))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_empty_batch(reduction):
    # PyTorch: 'mean' of nothing is nan, 'sum' is 0, 'none' is empty
    check(lambda a, b: F.cross_entropy(a, b, reduction=reduction), inputs=[np.zeros((0, 4)), np.zeros(0, np.int64)],
          torch_fn=lambda a, b: _tf().cross_entropy(a, b, reduction=reduction))


def test_cross_entropy_all_targets_ignored():
    # mean over zero counted targets is nan; the gradient is zero
    x = td.randn(3, 4, requires_grad=True)
    loss = F.cross_entropy(x, td.tensor([-100, -100, -100]))
    assert np.isnan(loss.item())
    loss.backward()
    assert not x.grad.numpy().any()


def test_cross_entropy_is_stable_for_huge_logits():
    x = td.tensor([[1000.0, -1000.0, 0.0]], requires_grad=True)
    loss = F.cross_entropy(x, td.tensor([1]))
    assert loss.item() == pytest.approx(2000.0)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1.0, -1.0, 0.0]], atol=1e-6)


def test_cross_entropy_float32_in_float32_out():
    x = td.randn(4, 3, requires_grad=True)
    loss = F.cross_entropy(x, td.tensor([0, 1, 2, 0]), weight=td.tensor(np.ones(3)))  # float64 weight
    loss.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32


@needs_torch
@settings(max_examples=15, deadline=None)
@given(st.integers(0, 5), st.integers(1, 5), st.lists(st.integers(1, 3), max_size=2),
       st.sampled_from(REDUCTIONS), st.booleans(), st.booleans(), st.sampled_from([0.0, 0.1]), st.integers(0, 99))
def test_cross_entropy_property(n, c, spatial, reduction, weighted, ignore, smoothing, seed):
    shape = (n, c) + tuple(spatial)
    x = np.random.default_rng(seed).standard_normal(shape)
    t = _labels((n,) + tuple(spatial), c, -100 if ignore else None, seed)
    w = list(np.random.default_rng(seed).uniform(0.5, 2.0, c)) if weighted else None
    check(lambda a, b: F.cross_entropy(a, b, weight=_w(w, "td"), reduction=reduction, label_smoothing=smoothing),
          inputs=[x, t],
          torch_fn=lambda a, b: _tf().cross_entropy(a, b, weight=_w(w, "torch"), reduction=reduction,
                                                   label_smoothing=smoothing))


# --- nll ---
NLL_CASES = [
    ("2d", (5, 4), {}),
    ("batch1", (1, 3), {}),
    ("unbatched", (4,), {}),
    ("spatial", (2, 3, 4), {}),
    ("weight_ignore", (6, 4), {"weight": [0.5, 1.0, 2.0, 3.0], "ignore_index": -100}),
    ("weight_ignore_spatial", (2, 3, 2, 3), {"weight": [2.0, 0.5, 1.0], "ignore_index": -1}),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,shape,kw", NLL_CASES, ids=[c[0] for c in NLL_CASES])
def test_nll_loss(name, shape, kw, reduction):
    n_classes = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = _labels(tshape, n_classes, kw.get("ignore_index"))
    w = kw.get("weight")
    opts = {k: v for k, v in kw.items() if k != "weight"}
    check(lambda a, b: F.nll_loss(a, b, weight=_w(w, "td"), reduction=reduction, **opts),
          inputs=[rs.standard_normal(shape), t],
          torch_fn=lambda a, b: _tf().nll_loss(a, b, weight=_w(w, "torch"), reduction=reduction, **opts))


def test_nll_of_log_softmax_is_cross_entropy():
    x = td.randn(6, 5)
    t = td.tensor([0, 4, 2, 1, 3, 0])
    np.testing.assert_allclose(F.nll_loss(F.log_softmax(x, 1), t).item(), F.cross_entropy(x, t).item(), rtol=1e-6)


# --- regression losses ---
POINTWISE = [  # name, tidu fn, torch fn
    ("mse", lambda a, b, r: F.mse_loss(a, b, reduction=r), lambda a, b, r: _tf().mse_loss(a, b, reduction=r)),
    ("l1", lambda a, b, r: F.l1_loss(a, b, reduction=r), lambda a, b, r: _tf().l1_loss(a, b, reduction=r)),
    ("smooth_l1", lambda a, b, r: F.smooth_l1_loss(a, b, reduction=r),
     lambda a, b, r: _tf().smooth_l1_loss(a, b, reduction=r)),
    ("smooth_l1_beta", lambda a, b, r: F.smooth_l1_loss(a, b, reduction=r, beta=0.5),
     lambda a, b, r: _tf().smooth_l1_loss(a, b, reduction=r, beta=0.5)),
    ("smooth_l1_beta0", lambda a, b, r: F.smooth_l1_loss(a, b, reduction=r, beta=0.0),
     lambda a, b, r: _tf().smooth_l1_loss(a, b, reduction=r, beta=0.0)),
    ("huber", lambda a, b, r: F.huber_loss(a, b, reduction=r), lambda a, b, r: _tf().huber_loss(a, b, reduction=r)),
    ("huber_delta", lambda a, b, r: F.huber_loss(a, b, reduction=r, delta=2.0),
     lambda a, b, r: _tf().huber_loss(a, b, reduction=r, delta=2.0)),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (1, 1), ()])
@pytest.mark.parametrize("name,fn,torch_fn", POINTWISE, ids=[p[0] for p in POINTWISE])
def test_pointwise_losses(name, fn, torch_fn, shape, reduction):
    check(lambda a, b: fn(a, b, reduction), shapes=[shape, shape], seed=len(shape),
          torch_fn=lambda a, b: torch_fn(a, b, reduction))


@pytest.mark.parametrize("name,fn,torch_fn", POINTWISE, ids=[p[0] for p in POINTWISE])
def test_pointwise_losses_empty(name, fn, torch_fn):
    for r in REDUCTIONS:
        check(lambda a, b: fn(a, b, r), shapes=[(0, 3), (0, 3)], torch_fn=lambda a, b: torch_fn(a, b, r))


@needs_torch
@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=3), st.sampled_from(POINTWISE), st.sampled_from(REDUCTIONS),
       st.integers(0, 99))
def test_pointwise_property(shape, case, reduction, seed):
    _, fn, torch_fn = case
    check(lambda a, b: fn(a, b, reduction), shapes=[tuple(shape)] * 2, seed=seed,
          torch_fn=lambda a, b: torch_fn(a, b, reduction))


def test_mse_warns_when_target_broadcasts():
    # (N, 1) against (N,) silently makes an (N, N) loss in PyTorch too; both warn
    with pytest.warns(UserWarning, match=r"mse_loss: target shape \(4,\) differs from input shape \(4, 1\)"):
        F.mse_loss(td.zeros(4, 1), td.zeros(4))


def test_mse_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"mse_loss: input of shape \(4, 3\) and target of shape \(5,\)"):
        F.mse_loss(td.zeros(4, 3), td.zeros(5))


def test_mse_float64_target_keeps_float32():
    out = F.mse_loss(td.zeros(3), td.tensor(np.ones(3)))  # a float64 target, as from pandas
    assert out.dtype == np.float32 and out.item() == 1.0


# --- binary cross-entropy ---
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape,weight", [((6,), None), ((3, 4), None), ((3, 4), (4,)), ((2, 3, 2), (3, 1)),
                                          ((1,), None), ((), None)])
def test_binary_cross_entropy(shape, weight, reduction):
    w = None if weight is None else rs.uniform(0.5, 2.0, weight)
    check(lambda a, b: F.binary_cross_entropy(a, b, weight=_w(w, "td"), reduction=reduction),
          inputs=[rs.uniform(0.05, 0.95, shape), rs.uniform(0, 1, shape)],
          torch_fn=lambda a, b: _tf().binary_cross_entropy(a, b, weight=_w(w, "torch"), reduction=reduction))


def test_binary_cross_entropy_clamps_log_at_minus_100():
    x = td.tensor([0.0, 1.0], requires_grad=True)
    loss = F.binary_cross_entropy(x, td.tensor([1.0, 0.0]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [100.0, 100.0])
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape,weight,pos_weight", [((6,), None, None), ((3, 4), None, None), ((3, 4), (4,), None),
                                                     ((3, 4), None, (4,)), ((2, 3, 4), (3, 1), (4,)),
                                                     ((1,), None, None), ((0, 4), None, (4,))])
def test_binary_cross_entropy_with_logits(shape, weight, pos_weight, reduction):
    w = None if weight is None else rs.uniform(0.5, 2.0, weight)
    pw = None if pos_weight is None else rs.uniform(0.5, 3.0, pos_weight)
    check(lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight=_w(w, "td"), reduction=reduction,
                                                          pos_weight=_w(pw, "td")),
          inputs=[rs.standard_normal(shape) * 3, rs.uniform(0, 1, shape)],
          torch_fn=lambda a, b: _tf().binary_cross_entropy_with_logits(a, b, weight=_w(w, "torch"),
                                                                      reduction=reduction,
                                                                      pos_weight=_w(pw, "torch")))


def test_binary_cross_entropy_with_logits_is_stable():
    x = td.tensor([100.0, -100.0], requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, td.tensor([0.0, 1.0]), reduction="sum")
    assert loss.item() == pytest.approx(200.0)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -1.0])


# --- KL divergence ---
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    x = np.log(rs.dirichlet(np.ones(5), size=4))
    t = rs.dirichlet(np.ones(5), size=4)
    t = np.log(t) if log_target else t
    check(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target), inputs=[x, t],
          torch_fn=lambda a, b: _tf().kl_div(a, b, reduction=reduction, log_target=log_target))


@needs_torch
def test_kl_div_zero_target_probability_contributes_nothing():
    x = np.log(rs.dirichlet(np.ones(3), size=2)).astype(np.float32)
    t = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]], np.float32)
    a, b = td.tensor(x, requires_grad=True), td.tensor(t, requires_grad=True)
    ta, tb = torch.tensor(x, requires_grad=True), torch.tensor(t, requires_grad=True)
    out, ref = F.kl_div(a, b, reduction="sum"), _tf().kl_div(ta, tb, reduction="sum")
    out.backward()
    ref.backward()
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy())
    # PyTorch's target gradient is nan where target == 0 (the derivative of xlogy); tidu gives 0 there
    pos = t > 0
    np.testing.assert_allclose(b.grad.numpy()[pos], tb.grad.numpy()[pos], rtol=1e-6)
    assert not b.grad.numpy()[~pos].any()


# --- modules ---
@needs_torch
@pytest.mark.parametrize("make", [
    lambda nn_: nn_.MSELoss(), lambda nn_: nn_.L1Loss(reduction="sum"), lambda nn_: nn_.SmoothL1Loss(beta=0.5),
    lambda nn_: nn_.HuberLoss(delta=0.7), lambda nn_: nn_.BCEWithLogitsLoss(pos_weight=_lib_tensor(nn_, [2.0] * 3)),
])
def test_regression_and_bce_modules(make):
    x, t = rs.standard_normal((4, 3)).astype(np.float32), rs.uniform(0, 1, (4, 3)).astype(np.float32)
    ours = make(nn)(td.tensor(x), td.tensor(t)).item()
    theirs = make(torch.nn)(torch.tensor(x), torch.tensor(t)).item()
    assert ours == pytest.approx(theirs, rel=1e-5)


def _lib_tensor(nn_, values):
    return td.tensor(values) if nn_ is nn else torch.tensor(values)


@needs_torch
def test_classification_modules_and_their_state_dicts():
    w = [1.0, 2.0, 0.5]
    x = rs.standard_normal((5, 3)).astype(np.float32)
    t = np.array([0, 2, 1, 1, -100])
    ours = nn.CrossEntropyLoss(weight=td.tensor(w), label_smoothing=0.1)
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.1)
    assert ours(td.tensor(x), td.tensor(t)).item() == pytest.approx(
        theirs(torch.tensor(x), torch.tensor(t)).item(), rel=1e-5)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    lp = F.log_softmax(td.tensor(x), 1)
    assert nn.NLLLoss(weight=td.tensor(w))(lp, td.tensor(t)).item() == pytest.approx(
        torch.nn.NLLLoss(weight=torch.tensor(w))(torch.log_softmax(torch.tensor(x), 1), torch.tensor(t)).item(),
        rel=1e-5)
    p = rs.uniform(0.1, 0.9, (5, 3)).astype(np.float32)
    assert nn.BCELoss()(td.tensor(p), td.tensor(p)).item() == pytest.approx(
        torch.nn.BCELoss()(torch.tensor(p), torch.tensor(p)).item(), rel=1e-5)
    assert list(nn.BCEWithLogitsLoss(pos_weight=td.ones(3)).state_dict()) == \
        list(torch.nn.BCEWithLogitsLoss(pos_weight=torch.ones(3)).state_dict())
    assert nn.KLDivLoss(reduction="batchmean")(lp, td.tensor(p)).item() == pytest.approx(
        torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(torch.tensor(x), 1), torch.tensor(p)).item(),
        rel=1e-5)


def test_loss_module_repr_and_bad_reduction():
    assert repr(nn.MSELoss()) == "MSELoss()"
    assert repr(nn.L1Loss(reduction="sum")) == "L1Loss(reduction='sum')"
    with pytest.raises(ValueError, match="CrossEntropyLoss: reduction must be one of 'mean', 'sum', 'none', got 'avg'"):
        nn.CrossEntropyLoss(reduction="avg")


# --- errors ---
def test_cross_entropy_float_target_where_indices_expected():
    with pytest.raises(TypeError, match=r"cross_entropy: target must hold class indices as integers.*float32"):
        F.cross_entropy(td.zeros(4, 3), td.zeros(4))


def test_cross_entropy_integer_target_with_input_shape():
    with pytest.raises(TypeError, match=r"cross_entropy: target has the input's shape \(4, 3\) but dtype int64"):
        F.cross_entropy(td.zeros(4, 3), td.tensor(np.zeros((4, 3), np.int64)))


def test_cross_entropy_batch_size_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"cross_entropy: input of shape \(4, 3\) needs a target of shape \(4,\), "
                                         r"got target of shape \(5,\)"):
        F.cross_entropy(td.zeros(4, 3), td.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match=r"nll_loss: input of shape \(2, 3, 4\) needs a target of shape \(2, 4\)"):
        F.nll_loss(td.zeros(2, 3, 4), td.tensor([0, 1]))


def test_class_index_out_of_range():
    with pytest.raises(IndexError, match="cross_entropy: target 3 is out of bounds for 3 classes"):
        F.cross_entropy(td.zeros(2, 3), td.tensor([0, 3]))
    with pytest.raises(IndexError, match="nll_loss: target -1 is out of bounds for 3 classes"):
        F.nll_loss(td.zeros(2, 3), td.tensor([-1, 0]))


def test_bad_reduction_names_the_op():
    for fn, args in [(F.cross_entropy, (td.zeros(2, 3), td.tensor([0, 1]))), (F.mse_loss, (td.zeros(2), td.zeros(2))),
                     (F.binary_cross_entropy_with_logits, (td.zeros(2), td.zeros(2)))]:
        with pytest.raises(ValueError, match=fn.__name__ + r": reduction must be one of 'mean', 'sum', 'none', "
                                                           r"got 'average'"):
            fn(*args, reduction="average")


def test_other_loss_errors():
    with pytest.raises(ValueError, match=r"cross_entropy: weight must hold one value per class, shape \(3,\), got "
                                         r"shape \(2,\)"):
        F.cross_entropy(td.zeros(2, 3), td.tensor([0, 1]), weight=td.ones(2))
    with pytest.raises(ValueError, match="cross_entropy: label_smoothing must lie in"):
        F.cross_entropy(td.zeros(2, 3), td.tensor([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="ignore_index=0 is not supported with class-probability targets"):
        F.cross_entropy(td.zeros(2, 3), td.zeros(2, 3), ignore_index=0)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must hold probabilities in \[0, 1\]"):
        F.binary_cross_entropy(td.tensor([0.5, 1.5]), td.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: target of shape \(3,\) must have the "
                                         r"input's shape \(3, 1\)"):
        F.binary_cross_entropy_with_logits(td.zeros(3, 1), td.zeros(3))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(5,\) does not broadcast to the input's shape "
                                         r"\(3, 4\)"):
        F.binary_cross_entropy_with_logits(td.zeros(3, 4), td.zeros(3, 4), pos_weight=td.ones(5))
    with pytest.raises(TypeError, match="mse_loss: input must be a floating tensor, got int64"):
        F.mse_loss(td.tensor([1, 2]), td.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="huber_loss: delta must be positive"):
        F.huber_loss(td.zeros(2), td.zeros(2), delta=0)
