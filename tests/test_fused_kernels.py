"""The fused NumPy kernels of layer_norm, softmax, log_softmax and cross_entropy: float64 finite
differences and PyTorch parity on their fast paths — several row blocks, rows split over threads,
rows redone on the exact path (a large mean next to the spread, a row far below its block's maximum,
masked and non-finite rows), weight and bias absent, non-contiguous and N-D inputs."""
import warnings

import numpy as np
import pytest

import tidu as td
from helpers import check, needs_torch, torch
from tidu.ops import nn as kernels

T = torch


@pytest.fixture(params=["whole arrays", "one block", "blocks on two threads"])
def blocks(request, monkeypatch):
    """Run each test on each path: small arrays' whole-array passes; the blocked kernels in one block;
    and tiny row blocks split over two threads."""
    if request.param != "whole arrays":
        monkeypatch.setattr(kernels, "_LN_SMALL", 0)
        monkeypatch.setattr(kernels, "_SM_SMALL", 0)
    if request.param == "blocks on two threads":
        if td.backend.blas_controller() is None:
            pytest.skip("threadpoolctl is not installed: rows are not split over threads")
        monkeypatch.setattr(kernels, "_BLOCK", 48)
        monkeypatch.setattr(kernels, "_MIN_PARALLEL", 0)
        monkeypatch.setattr(td.backend, "parallel_parts", lambda n, worth_it=True, xp=np: (
            [(0, n // 2), (n // 2, n)] if n > 1 else [(0, n)]))
    return request.param


def _ln(shape, weight=True, bias=True):
    """layer_norm over ``shape`` for tidu or torch tensors: (x, [w], [b]) -> output."""
    def fn(x, *wb):
        w = wb[0] if weight else None
        b = wb[-1] if bias else None
        if isinstance(x, td.Tensor):
            return td.layer_norm(x, shape, w, b)
        return T.nn.functional.layer_norm(x, shape, w, b)
    return fn


# --- layer_norm ---

@pytest.mark.parametrize("weight,bias", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("shape,normalized", [((24, 16), (16,)), ((3, 5, 8), (8,)), ((2, 3, 4, 5), (4, 5))],
                         ids=str)
def test_layer_norm(blocks, shape, normalized, weight, bias):
    rs = np.random.default_rng(1)
    x = rs.standard_normal(shape)
    inputs = [x] + ([1 + 0.3 * rs.standard_normal(normalized)] if weight else []) + \
        ([0.5 * rs.standard_normal(normalized)] if bias else [])
    check(_ln(normalized, weight, bias), inputs=inputs)


def test_layer_norm_benchmark_shapes_small(blocks):
    """The benchmark's shapes, scaled down: (16·128, 256) -> (2·4, 32), (32·128, 384) -> (4·4, 24), (64, 256)
    -> (24, 8)."""
    rs = np.random.default_rng(2)
    for n, d in [(8, 32), (16, 24), (24, 8)]:
        check(_ln((d,)), inputs=[rs.standard_normal((n, d)), 1 + 0.2 * rs.standard_normal(d),
                                 0.2 * rs.standard_normal(d)])


def test_layer_norm_non_contiguous(blocks):
    rs = np.random.default_rng(3)
    x = rs.standard_normal((12, 10)).T  # (10, 12), a transposed view
    assert not x.flags.c_contiguous
    check(_ln((12,)), inputs=[x, rs.standard_normal(12), rs.standard_normal(12)])
    xs = rs.standard_normal((7, 20))[:, ::2]  # strided columns
    check(_ln((10,)), inputs=[xs, rs.standard_normal(10), rs.standard_normal(10)])


@needs_torch
@pytest.mark.parametrize("offset", [1e2, 1e4])
def test_layer_norm_large_offset(blocks, offset):
    """x = offset + noise: the mean is redone from centred values, so float32 stays as exact as float64
    allows (PyTorch's float32 kernel is off by ~2e-3 at 1e4; its float64 one is the reference)."""
    rs = np.random.default_rng(4)
    x = (offset + rs.standard_normal((40, 24))).astype(np.float32)
    x[::3] -= offset  # ordinary rows mixed in: some blocks take both paths
    w = (1 + 0.1 * rs.standard_normal(24)).astype(np.float32)
    b = rs.standard_normal(24).astype(np.float32)
    g = rs.standard_normal(x.shape).astype(np.float32)
    ours = [td.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = td.layer_norm(ours[0], 24, ours[1], ours[2])
    y.backward(td.tensor(g))
    ref = [T.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)]
    yr = T.nn.functional.layer_norm(ref[0], (24,), ref[1], ref[2])
    yr.backward(T.tensor(g.astype(np.float64)))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), yr.detach().numpy(), rtol=1e-4, atol=1e-5)
    for a, r in zip(ours, ref):
        scale = np.abs(r.grad.numpy()).max()
        np.testing.assert_allclose(a.grad.numpy(), r.grad.numpy(), rtol=1e-4, atol=1e-5 * scale)


def test_layer_norm_large_offset_gradcheck(blocks):
    rs = np.random.default_rng(5)
    x = 1e3 + rs.standard_normal((9, 6))
    x[1] = 5.0 + 1e-3 * rs.standard_normal(6)  # |mean| / std = 5000
    check(_ln((6,)), inputs=[x, rs.standard_normal(6), rs.standard_normal(6)], atol=1e-3, rtol=1e-3)


@needs_torch
def test_layer_norm_constant_rows(blocks):
    """A constant row has variance 0: output = bias, finite gradients, as in PyTorch."""
    x = np.random.default_rng(6).standard_normal((10, 8)).astype(np.float32)
    x[2] = 3.0
    x[5] = 0.0
    check(_ln((8,)), inputs=[x, np.linspace(0.5, 1.5, 8), np.linspace(-1, 1, 8)], grad=False)
    t = td.tensor(x, requires_grad=True)
    td.layer_norm(t, 8).sum().backward()
    assert np.isfinite(t.grad.numpy()).all()


def test_layer_norm_partial_grads():
    rs = np.random.default_rng(7)
    x = td.tensor(rs.standard_normal((6, 5)))
    w = td.tensor(rs.standard_normal(5), requires_grad=True)
    b = td.tensor(rs.standard_normal(5))
    td.layer_norm(x, 5, w, b).sum().backward()
    assert x.grad is None and b.grad is None and w.grad.shape == (5,)
    x.requires_grad = True
    w.grad = None
    w.requires_grad = False
    out = td.layer_norm(x, 5, w, b)
    out.backward(td.ones_like(out))
    assert x.grad.shape == (6, 5) and w.grad is None


def test_layer_norm_dtypes_and_empty():
    x32 = td.randn(4, 6, requires_grad=True)
    w64 = td.ones(6, dtype=td.float64)
    assert td.layer_norm(x32, 6).dtype == np.float32
    assert td.layer_norm(x32.double(), 6).dtype == np.float64
    assert td.layer_norm(x32, 6, w64).dtype == np.float64  # NumPy's promotion, as before
    empty = td.zeros(0, 6, requires_grad=True)
    w = td.ones(6, requires_grad=True)
    out = td.layer_norm(empty, 6, w)
    assert out.shape == (0, 6)
    out.sum().backward()
    assert empty.grad.shape == (0, 6) and w.grad.tolist() == [0.0] * 6
    with pytest.raises(ValueError, match=r"layer_norm: input of shape \(4, 6\) does not end with"):
        td.layer_norm(x32, (5,))
    with pytest.raises(TypeError, match="layer_norm: input, weight and bias must be floating point, got int64"):
        td.layer_norm(td.tensor([[1, 2, 3]]), 3)
    assert td.softmax(td.tensor([[1, 2, 3]]), -1).dtype == np.float64  # integers: NumPy's promotion


# --- softmax, log_softmax ---

SOFTMAX = [("softmax", lambda x, d: td.softmax(x, d) if isinstance(x, td.Tensor) else T.softmax(x, d)),
           ("log_softmax", lambda x, d: td.log_softmax(x, d) if isinstance(x, td.Tensor) else T.log_softmax(x, d))]


@pytest.mark.parametrize("name,fn", SOFTMAX, ids=[s[0] for s in SOFTMAX])
@pytest.mark.parametrize("shape,dim", [((2, 2, 8, 8), -1), ((2, 2, 8, 8), 3), ((12, 65), -1), ((5, 7), 0),
                                       ((2, 3, 4), 1), ((6,), -1)], ids=str)
def test_softmax(blocks, name, fn, shape, dim):
    check(lambda x: fn(x, dim), shapes=[shape], low=-4, high=4)


@pytest.mark.parametrize("name,fn", SOFTMAX, ids=[s[0] for s in SOFTMAX])
def test_softmax_rows_far_below_their_block(blocks, name, fn):
    """Rows whose maximum lies far under the block's are redone with their own maximum."""
    x = np.random.default_rng(8).uniform(-3, 3, (24, 5))
    x[::4] -= 200.0
    x[1] += 150.0
    x[2, 0] = 80.0
    check(lambda t: fn(t, -1), inputs=[x])


@needs_torch
@pytest.mark.parametrize("name,fn", SOFTMAX, ids=[s[0] for s in SOFTMAX])
def test_softmax_masked_and_non_finite(blocks, name, fn):
    """-inf entries give 0 probability; a row of -inf or with +inf gives NaN — all as in PyTorch."""
    x = np.random.default_rng(9).standard_normal((12, 6)).astype(np.float32)
    x[0, :4] = -np.inf
    x[3] = -np.inf
    x[7, 2] = np.inf
    x[9, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = fn(td.tensor(x), -1).numpy()
    theirs = fn(T.tensor(x), -1).numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_softmax_keeps_dtype_and_takes_empty_input():
    x = td.randn(3, 70)
    for f in (td.softmax, td.log_softmax):
        assert f(x, -1).dtype == np.float32 and f(x.double(), -1).dtype == np.float64
        for shape in [(0, 4), (3, 0)]:
            e = td.zeros(*shape, requires_grad=True)
            y = f(e, -1)
            y.sum().backward()
            assert y.shape == shape and e.grad.shape == shape


# --- cross_entropy (its exps come from the same rows kernel) ---

@pytest.mark.parametrize("shape", [(64, 10), (12, 65), (4, 5, 3)], ids=str)
@pytest.mark.parametrize("kw", [{}, {"reduction": "none"}, {"reduction": "sum"}, {"label_smoothing": 0.1}],
                         ids=["mean", "none", "sum", "smoothing"])
def test_cross_entropy(blocks, shape, kw):
    rs = np.random.default_rng(10)
    x = rs.uniform(-3, 3, shape)
    x[::7] -= 100.0  # rows far below their block's maximum
    target = rs.integers(0, shape[1], (shape[0],) + shape[2:])
    check(lambda a, t: td.cross_entropy(a, t, **kw) if isinstance(a, td.Tensor) else
          T.nn.functional.cross_entropy(a, t, **kw), inputs=[x, target])


# --- the benchmark script runs ---

@needs_torch
def test_kernels_benchmark_runs(capsys):
    from benchmarks import kernels as bench
    bench.main(["--threads", "1", "--samples", "1", "--only", "cross"])
    out = capsys.readouterr().out
    assert "cross_entropy" in out and "ratio" in out
