"""Pooling and normalization: finite differences and PyTorch parity for the ops, running statistics of
BatchNorm across train and eval, the layers, and their error messages."""
import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
from helpers import check, make_inputs, needs_torch, torch

T = torch

MAX_POOL = [  # (input shape, kwargs)
    ((2, 3, 6, 6), {"kernel_size": 2}),  # the 2×2 stride-2 fast case
    ((1, 2, 7, 5), {"kernel_size": 2}),  # odd sizes: the last row / column is dropped
    ((1, 2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 2, 7, 5), {"kernel_size": (3, 2), "stride": (2, 1)}),
    ((1, 2, 7, 7), {"kernel_size": 2, "ceil_mode": True}),
    ((1, 2, 8, 7), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 2, 9, 8), {"kernel_size": 2, "dilation": 2, "stride": 2}),
    ((3, 6, 5), {"kernel_size": 2, "stride": 1}),  # unbatched
]


@pytest.mark.parametrize("xs,kw", MAX_POOL, ids=[f"{c[0]}-{c[1]}" for c in MAX_POOL])
def test_max_pool2d(xs, kw):
    check(lambda x: td.max_pool2d(x, **kw), shapes=[xs], torch_fn=lambda x: T.nn.functional.max_pool2d(x, **kw))


def test_max_pool_ties_go_to_the_first_maximum():
    x = td.tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True)
    td.max_pool2d(x, 2).sum().backward()
    expected = np.zeros((4, 4), np.float32)
    expected[::2, ::2] = 1  # PyTorch routes the gradient to the first maximum of each window
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], expected)


@needs_torch
@pytest.mark.parametrize("xs,kw", MAX_POOL[2:7], ids=[f"{c[0]}-{c[1]}" for c in MAX_POOL[2:7]])
def test_max_pool2d_indices(xs, kw):
    x = make_inputs([xs])[0].astype(np.float32)
    out, idx = td.max_pool2d(td.tensor(x), return_indices=True, **kw)
    ref, ref_idx = T.nn.functional.max_pool2d(T.from_numpy(x), return_indices=True, **kw)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())
    np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())
    assert idx.dtype == td.int64


def test_max_pool1d():
    check(lambda x: td.max_pool1d(x, 3, 2, 1), shapes=[(2, 3, 9)],
          torch_fn=lambda x: T.nn.functional.max_pool1d(x, 3, 2, 1))
    check(lambda x: td.max_pool1d(x, 2, ceil_mode=True), shapes=[(2, 7)],
          torch_fn=lambda x: T.nn.functional.max_pool1d(x, 2, ceil_mode=True))


AVG_POOL = [
    ((2, 3, 6, 6), {"kernel_size": 2}),
    ((1, 2, 7, 5), {"kernel_size": 3, "stride": 2}),
    ((1, 2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ((1, 2, 7, 7), {"kernel_size": 2, "ceil_mode": True}),
    ((1, 2, 8, 7), {"kernel_size": (3, 2), "stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 2, 8, 7), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
    ((1, 2, 5, 5), {"kernel_size": 2, "stride": 1, "divisor_override": 3}),
]


@pytest.mark.parametrize("xs,kw", AVG_POOL, ids=[f"{c[0]}-{c[1]}" for c in AVG_POOL])
def test_avg_pool2d(xs, kw):
    check(lambda x: td.avg_pool2d(x, **kw), shapes=[xs], torch_fn=lambda x: T.nn.functional.avg_pool2d(x, **kw))


def test_avg_pool1d():
    check(lambda x: td.avg_pool1d(x, 3, 2, 1, count_include_pad=False), shapes=[(2, 3, 8)],
          torch_fn=lambda x: T.nn.functional.avg_pool1d(x, 3, 2, 1, count_include_pad=False))


@pytest.mark.parametrize("xs,size", [((2, 3, 6, 6), 1), ((2, 3, 6, 9), (2, 3)), ((1, 2, 7, 5), (3, 4)),
                                     ((1, 2, 5, 7), (None, 3)), ((3, 5, 4), 2)], ids=str)
def test_adaptive_avg_pool2d(xs, size):
    check(lambda x: td.adaptive_avg_pool2d(x, size), shapes=[xs],
          torch_fn=lambda x: T.nn.functional.adaptive_avg_pool2d(x, size))


def test_adaptive_avg_pool1d():
    check(lambda x: td.adaptive_avg_pool1d(x, 3), shapes=[(2, 3, 7)],
          torch_fn=lambda x: T.nn.functional.adaptive_avg_pool1d(x, 3))


def test_pool_errors():
    with pytest.raises(ValueError, match=r"max_pool2d: expected a 4-D input \(N, C, H, W\) or \(C, H, W\), "
                                       r"got shape \(4, 4\)"):
        td.max_pool2d(td.ones(4, 4), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: the window \(kernel 5, dilation 1\) is larger than the padded "
                                         r"input \(size 3 \+ 2 \* padding 0\)"):
        td.max_pool2d(td.ones(1, 1, 3, 3), 5)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding \(2, "
                                       r"2\) should be at most half of the kernel size \(3, 3\)"):
        td.avg_pool2d(td.ones(1, 1, 8, 8), 3, padding=2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be an int or a tuple of 2"):
        td.adaptive_avg_pool2d(td.ones(1, 1, 4, 4), (1, 2, 3))


@needs_torch
def test_pool_layers():
    x = make_inputs([(2, 3, 9, 8)])[0].astype(np.float32)
    for ours, theirs in [(nn.MaxPool2d(3, 2, 1, ceil_mode=True), T.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
                         (nn.AvgPool2d(2, count_include_pad=False, padding=1),
                          T.nn.AvgPool2d(2, count_include_pad=False, padding=1)),
                         (nn.AdaptiveAvgPool2d((2, 3)), T.nn.AdaptiveAvgPool2d((2, 3)))]:
        np.testing.assert_allclose(ours(td.tensor(x)).numpy(), theirs(T.from_numpy(x)).numpy(), atol=1e-6)
        assert ours.state_dict() == {}
    x1 = x[:, :, 0]
    for ours, theirs in [(nn.MaxPool1d(2), T.nn.MaxPool1d(2)), (nn.AvgPool1d(3, 2), T.nn.AvgPool1d(3, 2)),
                         (nn.AdaptiveAvgPool1d(3), T.nn.AdaptiveAvgPool1d(3))]:
        np.testing.assert_allclose(ours(td.tensor(x1)).numpy(), theirs(T.from_numpy(x1)).numpy(), atol=1e-6)
    out, idx = nn.MaxPool2d(2, return_indices=True)(td.tensor(x))
    assert idx.shape == out.shape == (2, 3, 4, 4)


# --- normalization ops ---

BN_SHAPES = [(6, 3), (4, 3, 5), (2, 3, 4, 5)]


def _bn(training, affine=True):
    def fn(x, *wb):
        c = x.shape[1]
        w, b = wb if affine else (None, None)
        if isinstance(x, td.Tensor):
            rm, rv = td.tensor(np.linspace(-1, 1, c), dtype=x.dtype), td.tensor(np.linspace(0.5, 2, c), dtype=x.dtype)
            return td.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5)
        rm = T.tensor(np.linspace(-1, 1, c), dtype=x.dtype)
        rv = T.tensor(np.linspace(0.5, 2, c), dtype=x.dtype)
        return T.nn.functional.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5)
    return fn


@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm(shape, training):
    check(_bn(training), shapes=[shape, (shape[1],), (shape[1],)], atol=1e-4)


def test_batch_norm_without_affine():
    check(_bn(True, affine=False), shapes=[(4, 3, 5)], atol=1e-4)
    check(lambda x: td.batch_norm(x, None, None, training=True), shapes=[(5, 2, 3)],
          torch_fn=lambda x: T.nn.functional.batch_norm(x, None, None, training=True), atol=1e-4)


@needs_torch
def test_batch_norm_running_statistics_update_in_place():
    x = make_inputs([(8, 3, 4, 4)], seed=2)[0].astype(np.float32) * 3 + 1
    rm, rv = td.zeros(3), td.ones(3)
    trm, trv = T.zeros(3), T.ones(3)
    for momentum in (0.1, 0.5):
        td.batch_norm(td.tensor(x), rm, rv, training=True, momentum=momentum)
        T.nn.functional.batch_norm(T.from_numpy(x), trm, trv, training=True, momentum=momentum)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-5)  # the unbiased batch variance
    assert rm.dtype == rv.dtype == td.float32


@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 4), 3), ((3, 4, 5), 2), ((2, 4), 4), ((2, 6, 2, 2), 1)], ids=str)
def test_group_norm(shape, groups):
    c = shape[1]
    check(lambda x, w, b: td.group_norm(x, groups, w, b, 1e-5), shapes=[shape, (c,), (c,)],
          torch_fn=lambda x, w, b: T.nn.functional.group_norm(x, groups, w, b, 1e-5), atol=1e-4)
    check(lambda x: td.group_norm(x, groups), shapes=[shape],
          torch_fn=lambda x: T.nn.functional.group_norm(x, groups), atol=1e-4)


def test_norm_errors():
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value per channel when training, "
                                         r"got input of shape \(1, 3\)"):
        td.batch_norm(td.ones(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean of shape \(4,\) does not match the 3 channels"):
        td.batch_norm(td.ones(2, 3), td.zeros(4), td.ones(4))
    with pytest.raises(ValueError, match=r"batch_norm: evaluation \(training=False\) needs running_mean"):
        td.batch_norm(td.ones(2, 3), None, None)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): expected a 4-D \(N, C, H, W\) input, got shape \(2, "
                                       r"3, 5\)"):
        nn.BatchNorm2d(3)(td.ones(2, 3, 5))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): expected input with 3 channels \(dim 1\), "
                                       r"got shape \(2, 4\)"):
        nn.BatchNorm1d(3)(td.ones(2, 4))
    with pytest.raises(ValueError, match=r"group_norm: the 6 channels .*not divisible by num_groups=4"):
        td.group_norm(td.ones(2, 6, 3), 4)
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 6\): expected input of shape \(N, 6, ...\), got \(2, 4, 3\)"):
        nn.GroupNorm(2, 6)(td.ones(2, 4, 3))
    with pytest.raises(ValueError, match=r"layer_norm: input of shape \(2, "
                                       r"3\) does not end with normalized_shape \(4,\)"):
        nn.LayerNorm(4)(td.ones(2, 3))


# --- normalization layers against PyTorch's, over several steps ---

def _train_step(ours, theirs, x, g):
    xo, xt = td.tensor(x, requires_grad=True), T.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), atol=1e-4, rtol=1e-4)
    yo.backward(td.tensor(g))
    yt.backward(T.from_numpy(g))
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), atol=1e-4, rtol=1e-4)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-4, rtol=1e-4, err_msg=name)
        p.grad = None
        q.grad = None


def _same_state(ours, theirs):
    ref = theirs.state_dict()
    assert list(ours.state_dict()) == list(ref)
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v.numpy(), ref[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
        assert v.dtype == ref[k].numpy().dtype, k


@needs_torch
@pytest.mark.parametrize("kind,shape,kw", [
    ("BatchNorm1d", (8, 4), {}),
    ("BatchNorm1d", (4, 4, 6), {"momentum": None}),  # cumulative moving average
    ("BatchNorm2d", (4, 4, 3, 5), {"momentum": 0.3, "eps": 1e-3}),
    ("BatchNorm2d", (4, 4, 3, 3), {"affine": False}),
    ("BatchNorm2d", (4, 4, 3, 3), {"track_running_stats": False}),
], ids=lambda v: str(v))
def test_batch_norm_layers_train_then_eval(kind, shape, kw):
    ours, theirs = getattr(nn, kind)(4, **kw), getattr(T.nn, kind)(4, **kw)
    if ours.weight is not None:  # non-trivial affine parameters
        w = np.linspace(0.5, 1.5, 4).astype(np.float32)
        ours.weight.data[...] = w
        theirs.weight.data[...] = T.from_numpy(w)
    rs = np.random.default_rng(0)
    for step in range(3):
        x = (rs.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        _train_step(ours, theirs, x, rs.standard_normal(shape).astype(np.float32))
        _same_state(ours, theirs)
    ours.eval(), theirs.eval()
    assert not ours.training
    x = rs.standard_normal(shape).astype(np.float32)
    _train_step(ours, theirs, x, rs.standard_normal(shape).astype(np.float32))
    _same_state(ours, theirs)  # eval leaves the running statistics alone


@needs_torch
def test_batch_norm_loads_pytorch_state():
    theirs = T.nn.BatchNorm2d(3)
    theirs(T.randn(4, 3, 2, 2) * 2 + 1)
    ours = nn.BatchNorm2d(3)
    ours.load_state_dict(theirs.state_dict())
    assert int(ours.num_batches_tracked.item()) == 1
    ours.eval(), theirs.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(ours(td.tensor(x)).numpy(), theirs(T.from_numpy(x)).detach().numpy(), atol=1e-6)


@needs_torch
@pytest.mark.parametrize("kw", [{}, {"elementwise_affine": False}, {"bias": False}, {"eps": 1e-3}], ids=str)
def test_layer_norm_layer(kw):
    ours, theirs = nn.LayerNorm((3, 5), **kw), T.nn.LayerNorm((3, 5), **kw)
    if ours.weight is not None:
        w = np.linspace(0.5, 1.5, 15).reshape(3, 5).astype(np.float32)
        ours.weight.data[...] = w
        theirs.weight.data[...] = T.from_numpy(w)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    rs = np.random.default_rng(1)
    _train_step(ours, theirs, rs.standard_normal((2, 4, 3, 5)).astype(np.float32),
                rs.standard_normal((2, 4, 3, 5)).astype(np.float32))


@needs_torch
@pytest.mark.parametrize("groups,affine", [(2, True), (6, False), (1, True)], ids=str)
def test_group_norm_layer(groups, affine):
    ours, theirs = nn.GroupNorm(groups, 6, affine=affine), T.nn.GroupNorm(groups, 6, affine=affine)
    if affine:
        w = np.linspace(0.5, 1.5, 6).astype(np.float32)
        ours.weight.data[...] = w
        theirs.weight.data[...] = T.from_numpy(w)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    rs = np.random.default_rng(2)
    _train_step(ours, theirs, rs.standard_normal((3, 6, 4, 3)).astype(np.float32),
                rs.standard_normal((3, 6, 4, 3)).astype(np.float32))
