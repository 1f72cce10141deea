"""Convolutions: float64 finite differences and PyTorch parity (values and gradients of input, weight and
bias) over a grid of stride / padding / dilation / groups / odd sizes; layers, errors, loading PyTorch weights."""
import math
import warnings

import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
from helpers import check, make_inputs, needs_torch, torch

T = torch


def _quiet(fn):
    """PyTorch warns about padding='same' with even kernels; warnings are errors in this suite."""
    def run(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args)
    return run


# (x shape, weight shape, kwargs): odd sizes, rectangular kernels, every padding form, groups
CONV2D = [
    ((2, 3, 5, 6), (4, 3, 3, 3), {}),
    ((2, 3, 5, 6), (4, 3, 3, 3), {"padding": 1}),
    ((1, 2, 7, 5), (3, 2, 2, 3), {"stride": 2}),
    ((1, 2, 7, 6), (3, 2, 3, 2), {"stride": (2, 3), "padding": (1, 2)}),
    ((1, 2, 7, 7), (2, 2, 3, 3), {"dilation": 2}),
    ((1, 2, 8, 7), (2, 2, 3, 2), {"dilation": (2, 1), "padding": 2, "stride": 2}),
    ((2, 4, 5, 5), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    ((1, 4, 6, 5), (4, 1, 3, 3), {"groups": 4, "stride": 2, "padding": 1}),  # depthwise
    ((2, 3, 5, 6), (4, 3, 3, 3), {"padding": "same"}),
    ((1, 2, 6, 5), (3, 2, 2, 4), {"padding": "same", "dilation": (1, 2)}),  # asymmetric 'same'
    ((2, 3, 5, 6), (4, 3, 3, 3), {"padding": "valid"}),
    ((2, 3, 4, 4), (5, 3, 1, 1), {}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {}),  # kernel as large as the input
    ((2, 20, 4, 3), (3, 20, 2, 2), {"padding": 1}),
    ((2, 1, 6, 5), (3, 1, 3, 3), {"padding": 1}),  # one channel: the tap-by-tap im2col
    ((2, 32, 5, 4), (8, 16, 3, 3), {"groups": 2, "stride": (1, 2)}),
]


@pytest.mark.parametrize("xs,ws,kw", CONV2D, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CONV2D])
def test_conv2d(xs, ws, kw):
    check(lambda x, w, b: td.conv2d(x, w, b, **kw), shapes=[xs, ws, (ws[0],)],
          torch_fn=_quiet(lambda x, w, b: T.nn.functional.conv2d(x, w, b, **kw)), atol=1e-4)


def test_conv2d_without_bias_and_unbatched():
    check(lambda x, w: td.conv2d(x, w, stride=2, padding=1), shapes=[(3, 6, 5), (2, 3, 3, 3)],
          torch_fn=lambda x, w: T.nn.functional.conv2d(x, w, stride=2, padding=1))


CONV1D = [
    ((2, 3, 9), (4, 3, 3), {}),
    ((2, 3, 9), (4, 3, 3), {"stride": 2, "padding": 1}),
    ((1, 4, 10), (6, 2, 2), {"groups": 2, "dilation": 3}),
    ((2, 2, 7), (3, 2, 4), {"padding": "same"}),
]


@pytest.mark.parametrize("xs,ws,kw", CONV1D, ids=[f"{c[0]}-{c[2]}" for c in CONV1D])
def test_conv1d(xs, ws, kw):
    check(lambda x, w, b: td.conv1d(x, w, b, **kw), shapes=[xs, ws, (ws[0],)],
          torch_fn=_quiet(lambda x, w, b: T.nn.functional.conv1d(x, w, b, **kw)), atol=1e-4)


# (x shape, weight shape (in, out/groups, k...), kwargs)
CONV_T = [
    ((2, 3, 4, 5), (3, 2, 3, 3), {}),
    ((1, 3, 4, 3), (3, 2, 3, 3), {"stride": 2}),
    ((1, 3, 4, 3), (3, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((1, 2, 3, 4), (2, 3, 2, 3), {"stride": (3, 2), "padding": (1, 0), "output_padding": (2, 1)}),
    ((1, 2, 4, 4), (2, 2, 3, 2), {"dilation": 2, "padding": 1}),
    ((2, 4, 3, 3), (4, 3, 3, 3), {"groups": 2, "stride": 2, "output_padding": 1}),
    ((1, 2, 3, 3), (2, 2, 2, 2), {"stride": 2}),  # disjoint taps: the scatter writes instead of adding
]


@pytest.mark.parametrize("xs,ws,kw", CONV_T, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CONV_T])
def test_conv_transpose2d(xs, ws, kw):
    out_c = ws[1] * kw.get("groups", 1)
    check(lambda x, w, b: td.conv_transpose2d(x, w, b, **kw), shapes=[xs, ws, (out_c,)],
          torch_fn=lambda x, w, b: T.nn.functional.conv_transpose2d(x, w, b, **kw), atol=1e-4)


def test_conv_transpose1d_and_unbatched():
    check(lambda x, w, b: td.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1),
          shapes=[(2, 3, 5), (3, 2, 3), (2,)],
          torch_fn=lambda x, w, b: T.nn.functional.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1))
    check(lambda x, w: td.conv_transpose2d(x, w, stride=2), shapes=[(3, 3, 4), (3, 2, 2, 2)],
          torch_fn=lambda x, w: T.nn.functional.conv_transpose2d(x, w, stride=2))


def test_batch_split_into_chunks(monkeypatch):
    # the im2col works on chunks of images; force one image per chunk (and groups, padding, strides)
    import tidu.ops.conv as conv_ops
    monkeypatch.setattr(conv_ops, "_CHUNK_BYTES", 1)
    check(lambda x, w, b: td.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2),
          shapes=[(3, 4, 5, 4), (6, 2, 3, 3), (6,)],
          torch_fn=lambda x, w, b: T.nn.functional.conv2d(x, w, b, stride=(2, 1), padding=1, groups=2), atol=1e-4)
    check(lambda x, w, b: td.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2),
          shapes=[(3, 4, 3, 2), (4, 2, 3, 3), (4,)], atol=1e-4,
          torch_fn=lambda x, w, b: T.nn.functional.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1,
                                                                    groups=2))


def test_conv_transpose_is_the_adjoint_of_conv():
    # <conv(x, w), y> == <x, conv_transpose(y, w)> for the same stride / padding / dilation
    x, w, y = (td.tensor(a) for a in make_inputs([(2, 3, 7, 8), (4, 3, 3, 2), (2, 4, 4, 3)], seed=3))
    kw = {"stride": 2, "padding": (1, 0), "dilation": (1, 2)}
    lhs = (td.conv2d(x, w, **kw) * y).sum().item()
    rhs = (x * td.conv_transpose2d(y, w, output_padding=(0, 1), **kw)).sum().item()
    assert abs(lhs - rhs) < 1e-3 * max(1.0, abs(lhs))


def test_gradients_only_where_required():
    x = td.randn(2, 3, 6, 6)
    w = td.randn(4, 3, 3, 3, requires_grad=True)
    b = td.zeros(4)
    td.conv2d(x, w, b, padding=1).sum().backward()
    assert x.grad is None and b.grad is None and w.grad.shape == (4, 3, 3, 3)
    with td.no_grad():
        y = td.conv2d(x, w)
    assert not y.requires_grad and y.dtype == td.float32


def test_output_feeds_the_next_layers():
    # the output is an NCHW view of NHWC memory: pooling, reshape and a second conv must all read it right
    x, w1, w2 = (td.tensor(a) for a in make_inputs([(2, 1, 8, 8), (4, 1, 3, 3), (5, 4, 3, 3)], seed=1))
    y = td.conv2d(td.max_pool2d(td.relu(td.conv2d(x, w1, padding=1)), 2), w2, padding=1).reshape(2, -1)
    if torch is not None:
        F = T.nn.functional
        ref = F.conv2d(F.max_pool2d(F.relu(F.conv2d(T.from_numpy(x.numpy()), T.from_numpy(w1.numpy()), padding=1)), 2),
                       T.from_numpy(w2.numpy()), padding=1).reshape(2, -1)
        np.testing.assert_allclose(y.numpy(), ref.numpy(), atol=1e-5)


# --- errors: the message names the op or layer, what was expected, and the shapes ---

def test_errors_channels():
    with pytest.raises(ValueError, match=r"conv2d: expected input with 3 channels .*got input of shape \(2, 4, 5, 5\)"):
        td.conv2d(td.ones(2, 4, 5, 5), td.ones(8, 3, 3, 3))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, .*expected input with 3 channels.*got shape \(2, 4, 5, 5\)"):
        nn.Conv2d(3, 8, 3)(td.ones(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"Conv1d\(2, 4.*expected input with 2 channels.*got shape \(1, 3, 9\)"):
        nn.Conv1d(2, 4, 3)(td.ones(1, 3, 9))
    with pytest.raises(ValueError, match=r"conv_transpose2d: expected input with 2 channels"):
        td.conv_transpose2d(td.ones(1, 3, 4, 4), td.ones(2, 2, 3, 3))


def test_errors_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"conv2d: kernel of size \(5, 5\).*larger than the padded input \(4, 4\)"):
        td.conv2d(td.ones(1, 1, 2, 2), td.ones(1, 1, 5, 5), padding=1)
    with pytest.raises(ValueError, match=r"kernel of size \(5, 3\) \(dilation included\)"):
        td.conv2d(td.ones(1, 1, 4, 4), td.ones(1, 1, 3, 2), dilation=2)
    with pytest.raises(ValueError, match=r"conv1d: kernel of size \(7,\).*padded input \(6,\)"):
        nn.Conv1d(1, 1, 7)(td.ones(1, 1, 6))


def test_errors_groups():
    with pytest.raises(ValueError, match=r"Conv2d: in_channels \(5\) and out_channels \(4\) must both be divisible "
                                         r"by groups \(2\)"):
        nn.Conv2d(5, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"conv2d: out_channels 3 .*not divisible by groups=2"):
        td.conv2d(td.ones(1, 4, 5, 5), td.ones(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d: in_channels 3 is not divisible by groups=2"):
        td.conv_transpose2d(td.ones(1, 3, 4, 4), td.ones(3, 1, 3, 3), groups=2)


def test_errors_rank_and_arguments():
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-D input \(N, C, H, W\) or \(C, H, W\), "
                                       r"got shape \(5, 5\)"):
        td.conv2d(td.ones(5, 5), td.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"Conv2d\(1, 2.*expected a 4-D input \(N, 1, H, W\).*got shape \(5,\)"):
        nn.Conv2d(1, 2, 3)(td.ones(5))
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-D weight"):
        td.conv2d(td.ones(1, 1, 5, 5), td.ones(1, 3, 3))
    with pytest.raises(ValueError, match=r"padding='same' is not supported for strided convolutions"):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"padding must be an int, a tuple, 'same' or 'valid', got 'full'"):
        td.conv2d(td.ones(1, 1, 5, 5), td.ones(1, 1, 3, 3), padding="full")
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than either stride"):
        td.conv_transpose2d(td.ones(1, 1, 3, 3), td.ones(1, 1, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"bias of shape \(3,\) does not match out_channels 2"):
        td.conv2d(td.ones(1, 1, 5, 5), td.ones(2, 1, 3, 3), td.ones(3))


# --- layers ---

def test_conv_layers_shapes_and_init():
    td.manual_seed(0)
    conv = nn.Conv2d(4, 8, (3, 5), groups=2)
    assert conv.weight.shape == (8, 2, 3, 5) and conv.bias.shape == (8,)
    assert list(conv.state_dict()) == ["weight", "bias"]
    bound = 1 / math.sqrt(2 * 3 * 5)  # kaiming_uniform_(a=√5): U(±1/√fan_in), bias likewise
    w = conv.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(conv.bias.numpy()).max() <= bound
    up = nn.ConvTranspose2d(6, 4, 3, groups=2, bias=False)
    assert up.weight.shape == (6, 2, 3, 3) and up.bias is None and list(up.state_dict()) == ["weight"]
    assert np.abs(up.weight.numpy()).max() <= 1 / math.sqrt(2 * 9)
    assert nn.Conv1d(3, 6, 5).weight.shape == (6, 3, 5)
    assert repr(nn.Conv2d(1, 2, 3, padding=1, bias=False)) == \
        "Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"


def _from_torch(ours, theirs):
    ours.load_state_dict(theirs.state_dict())
    return ours


def _parity(ours, theirs, x, atol=1e-5, **call):
    """Same output and the same gradients of the input and of every parameter."""
    xt = T.tensor(x, requires_grad=True)
    xo = td.tensor(x, requires_grad=True)
    yo, yt = ours(xo, **call), theirs(xt, **call)
    np.testing.assert_allclose(yo.numpy(), yt.detach().numpy(), atol=atol, rtol=1e-4)
    g = np.random.default_rng(0).standard_normal(yt.shape).astype(np.float32)
    yo.backward(td.tensor(g))
    yt.backward(T.from_numpy(g))
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), atol=atol, rtol=1e-4)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=atol, rtol=1e-4, err_msg=name)


@needs_torch
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_layer_parity(mode):
    T.manual_seed(0)
    theirs = T.nn.Conv2d(3, 4, 3, padding=(1, 2), stride=(1, 2), padding_mode=mode)
    ours = _from_torch(nn.Conv2d(3, 4, 3, padding=(1, 2), stride=(1, 2), padding_mode=mode), theirs)
    _parity(ours, theirs, make_inputs([(2, 3, 6, 7)])[0].astype(np.float32))


@needs_torch
def test_conv1d_and_transpose_layer_parity():
    T.manual_seed(0)
    x = make_inputs([(2, 4, 9)])[0].astype(np.float32)
    theirs = T.nn.Conv1d(4, 6, 3, padding="same", groups=2)
    _parity(_from_torch(nn.Conv1d(4, 6, 3, padding="same", groups=2), theirs), theirs, x)
    theirs = T.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1)
    ours = _from_torch(nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1), theirs)
    x = make_inputs([(2, 4, 5, 4)])[0].astype(np.float32)
    _parity(ours, theirs, x)
    _parity(ours, theirs, x, output_size=(10, 8))  # output_size picks output_padding = (1, 1)
    with pytest.raises(ValueError, match=r"output_size \(12, 8\) is not reachable"):
        ours(td.tensor(x), output_size=(12, 8))


@needs_torch
def test_small_cnn_loads_pytorch_weights():
    """A PyTorch CNN's state_dict loaded into the same tidu architecture gives the same outputs, in
    eval and in train mode (batch statistics, and the same running statistics afterwards)."""
    T.manual_seed(0)
    theirs = T.nn.Sequential(T.nn.Conv2d(1, 8, 3, padding=1), T.nn.BatchNorm2d(8), T.nn.ReLU(), T.nn.MaxPool2d(2),
                             T.nn.Conv2d(8, 16, 3, padding=1), T.nn.BatchNorm2d(16), T.nn.ReLU(), T.nn.MaxPool2d(2),
                             T.nn.Flatten(), T.nn.Linear(16 * 3 * 3, 10))
    ours = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 3 * 3, 10))
    x = np.random.default_rng(0).standard_normal((4, 1, 12, 12)).astype(np.float32)
    with T.no_grad():  # non-trivial running statistics to load
        theirs.train()(T.from_numpy(x) * 2 + 1)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    theirs.eval(), ours.eval()
    np.testing.assert_allclose(ours(td.tensor(x)).numpy(), theirs(T.from_numpy(x)).detach().numpy(), atol=1e-5)
    theirs.train(), ours.train()
    _parity(ours, theirs, x, atol=1e-4)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), atol=1e-6, err_msg=k)


@pytest.mark.parametrize("threads", [2, 3])
def test_batch_split_over_threads_gives_the_same_results(threads, monkeypatch):
    """With several BLAS threads allowed, convolution and max-pooling split the batch over Python
    threads (each with one BLAS thread); forced here on small inputs, the results must not change."""
    from threadpoolctl import threadpool_limits
    import importlib
    conv_mod = importlib.import_module("tidu.ops.conv")
    rs = np.random.default_rng(0)
    x0 = rs.standard_normal((5, 4, 9, 8)).astype(np.float32)
    w0 = rs.standard_normal((6, 2, 3, 3)).astype(np.float32)

    def run():
        x, w, b = (td.tensor(a, requires_grad=True) for a in (x0, w0, np.ones(6, np.float32)))
        y = td.max_pool2d(td.conv2d(x, w, b, padding=1, groups=2).relu(), 2)
        (y * y).sum().backward()
        return [a.numpy() for a in (y, x.grad, w.grad, b.grad)]

    with threadpool_limits(limits=1):
        expected = run()
    monkeypatch.setattr(conv_mod, "MIN_PARALLEL_BYTES", 0)
    with threadpool_limits(limits=threads):
        got = run()
        assert td.backend.blas_controller() is None or td.backend.blas_controller().get_num_threads() == threads
    for a, b in zip(got, expected):  # the weight gradient sums its parts in another order
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())
