"""Every core op: float64 finite differences and PyTorch parity, one line per case."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidu as td
from helpers import check, make_inputs, torch

T = torch  # torch functions are looked up lazily so collection works without torch

UNARY = [
    ("neg", lambda x: -x, {}),
    ("exp", lambda x: x.exp(), {}),
    ("log", lambda x: x.log(), {"positive": True}),
    ("sqrt", lambda x: x.sqrt(), {"positive": True}),
    ("rsqrt", lambda x: x.rsqrt(), {"positive": True}),
    ("abs", lambda x: x.abs(), {}),
    ("sin", lambda x: x.sin(), {}),
    ("cos", lambda x: x.cos(), {}),
    ("tanh", lambda x: x.tanh(), {}),
    ("sigmoid", lambda x: x.sigmoid(), {}),
    ("relu", lambda x: x.relu(), {}),
    ("square", lambda x: x * x, {}),
    ("pow3", lambda x: x ** 3, {}),
    ("pow_half", lambda x: x ** 0.5, {"positive": True}),
    ("rpow", lambda x: 2.0 ** x, {}),
    ("reciprocal", lambda x: x.reciprocal(), {"positive": True}),
    ("log1p", lambda x: x.log1p(), {"positive": True}),
    ("expm1", lambda x: x.expm1(), {}),
    ("erf", lambda x: x.erf(), {}),
    ("clamp", lambda x: x.clamp(-0.5, 0.7), {}),
    ("clamp_min", lambda x: x.clamp(min=0.1), {}),
    ("scalar_ops", lambda x: (3.0 - x) / 2.0 + 1.5 * x - x / 4, {}),
    ("rdiv", lambda x: 1.0 / x, {"positive": True}),
]

FUNCTIONAL = [  # name, tidu fn, torch fn name in torch.nn.functional, kwargs
    ("leaky_relu", lambda x: td.leaky_relu(x, 0.2), lambda x: T.nn.functional.leaky_relu(x, 0.2)),
    ("gelu", lambda x: td.gelu(x), lambda x: T.nn.functional.gelu(x)),
    ("gelu_tanh", lambda x: td.gelu(x, approximate="tanh"), lambda x: T.nn.functional.gelu(x, approximate="tanh")),
    ("silu", lambda x: td.silu(x), lambda x: T.nn.functional.silu(x)),
    ("elu", lambda x: td.elu(x), lambda x: T.nn.functional.elu(x)),
    ("softplus", lambda x: td.softplus(x), lambda x: T.nn.functional.softplus(x)),
    ("softplus_beta", lambda x: td.softplus(x, beta=2.0, threshold=1.0),
     lambda x: T.nn.functional.softplus(x, beta=2.0, threshold=1.0)),
    ("softmax0", lambda x: td.softmax(x, 0), lambda x: T.softmax(x, 0)),
    ("softmax", lambda x: td.softmax(x, -1), lambda x: T.softmax(x, -1)),
    ("log_softmax", lambda x: td.log_softmax(x, -1), lambda x: T.log_softmax(x, -1)),
    ("log_softmax0", lambda x: td.log_softmax(x, 0), lambda x: T.log_softmax(x, 0)),
]

SHAPES = [(3, 4), (1, 5), (2, 3, 4), (), (0, 3)]


@pytest.mark.parametrize("name,fn,kw", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unary(name, fn, kw, shape):
    check(fn, shapes=[shape], **kw)


@pytest.mark.parametrize("name,fn,tfn", FUNCTIONAL, ids=[f[0] for f in FUNCTIONAL])
@pytest.mark.parametrize("shape", [(3, 4), (2, 1, 5)], ids=str)
def test_functional(name, fn, tfn, shape):
    check(fn, shapes=[shape], torch_fn=tfn)


BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3)), ((1,), (0,)), ((5, 1), (1, 5))]
BINARY = [
    ("add", lambda a, b: a + b, {}),
    ("sub", lambda a, b: a - b, {}),
    ("mul", lambda a, b: a * b, {}),
    ("div", lambda a, b: a / b, {"positive": True}),
    ("pow", lambda a, b: a ** b, {"positive": True}),
    ("maximum", lambda a, b: td.maximum(a, b) if isinstance(a, td.Tensor) else T.maximum(a, b), {}),
    ("minimum", lambda a, b: td.minimum(a, b) if isinstance(a, td.Tensor) else T.minimum(a, b), {}),
]


@pytest.mark.parametrize("name,fn,kw", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
def test_binary(name, fn, kw, shapes):
    check(fn, shapes=list(shapes), **kw)


def test_where_and_masked_fill():
    cond = np.array([[True, False, True], [False, False, True]])
    a, b = make_inputs([(2, 3), (3,)])
    check(lambda c, x, y: td.where(c, x, y) if isinstance(x, td.Tensor) else T.where(c, x, y),
          inputs=[cond, a, b])
    check(lambda x, m: x.masked_fill(m, -1.5), inputs=[a, cond])
    check(lambda x, m: x.masked_fill(m, 0.0), inputs=[a, np.array([True, False, True])])


REDUCTIONS = [
    ("sum", lambda x: x.sum()),
    ("sum1", lambda x: x.sum(1)),
    ("sum_keep", lambda x: x.sum(dim=-1, keepdim=True)),
    ("sum_tuple", lambda x: x.sum(dim=(0, 1))),
    ("mean", lambda x: x.mean()),
    ("mean0", lambda x: x.mean(0, keepdim=True)),
    ("var", lambda x: x.var(1)),
    ("var_biased", lambda x: x.var(0, unbiased=False)),
    ("std", lambda x: x.std(dim=1, keepdim=True)),
    ("logsumexp", lambda x: x.logsumexp(1)),
    ("max_dim", lambda x: x.max(dim=1)),
    ("min_dim_keep", lambda x: x.min(dim=0, keepdim=True)),
    ("max_all", lambda x: x.max()),
    ("amax", lambda x: x.amax(dim=1)),
    ("norm", lambda x: x.norm()),
    ("cumsum", lambda x: x.cumsum(1)),
]


@pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")  # torch's var of one element
@pytest.mark.parametrize("name,fn", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 5), (1, 1)], ids=str)
def test_reduction(name, fn, shape):
    check(fn, shapes=[shape])


def test_reductions_on_empty_dims():
    check(lambda x: x.sum(1), shapes=[(0, 3)])
    check(lambda x: x.sum(0), shapes=[(0, 3)])
    check(lambda x: x.mean(1), shapes=[(0, 3)])


def test_max_ties_and_indices():
    x = td.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]], requires_grad=True)
    values, indices = x.max(dim=1)
    assert indices.dtype == np.int64 and indices.tolist() == [1, 0]
    values.sum().backward()
    assert x.grad.tolist() == [[0, 1, 0], [1, 0, 0]]
    x.grad = None
    x.max().backward()  # a full reduction shares the gradient among ties
    assert x.grad.tolist() == [[0, 0.5, 0.5], [0, 0, 0]]
    assert td.argmax(x, dim=1).tolist() == [1, 0] and td.argmin(x).item() == 4


MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
                 ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((5,), (2, 5, 3)), ((2, 3, 4), (4,)),
                 ((0, 4), (4, 3))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(shapes):
    check(lambda a, b: a @ b, shapes=list(shapes))


@pytest.mark.parametrize("xshape", [(5, 3), (2, 4, 3), (3,)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(xshape, bias):
    shapes = [xshape, (4, 3)] + ([(4,)] if bias else [])
    check(lambda x, w, *b: td.linear(x, w, *b) if isinstance(x, td.Tensor) else T.nn.functional.linear(x, w, *b),
          shapes=shapes)


SHAPE_OPS = [
    ("reshape", (2, 3, 4), lambda x: x.reshape(4, -1)),
    ("view", (2, 3, 4), lambda x: x.view(6, 4)),
    ("flatten", (2, 3, 4), lambda x: x.flatten(1)),
    ("flatten_all", (2, 3, 4), lambda x: x.flatten()),
    ("transpose", (2, 3, 4), lambda x: x.transpose(0, 2)),
    ("permute", (2, 3, 4), lambda x: x.permute(2, 0, 1)),
    ("T2d", (3, 4), lambda x: x.t()),
    ("squeeze", (2, 1, 4, 1), lambda x: x.squeeze()),
    ("squeeze_dim", (2, 1, 4, 1), lambda x: x.squeeze(1)),
    ("unsqueeze", (2, 3), lambda x: x.unsqueeze(1)),
    ("unsqueeze_neg", (2, 3), lambda x: x.unsqueeze(-1)),
    ("expand", (3, 1), lambda x: x.expand(2, 3, 4)),
    ("expand_keep", (3, 1), lambda x: x.expand(-1, 5)),
    ("repeat", (2, 3), lambda x: x.repeat(2, 1, 3)),
    ("flip", (2, 3), lambda x: x.flip(1) if isinstance(x, td.Tensor) else x.flip(1)),
    ("getitem_int", (3, 4), lambda x: x[1]),
    ("getitem_slice", (5, 4), lambda x: x[1:4:2, ::-1] if isinstance(x, td.Tensor) else x[1:4:2].flip(1)),
    ("getitem_none_ellipsis", (2, 3, 4), lambda x: x[..., None, 1:3]),
    ("getitem_neg", (3, 4), lambda x: x[-1, -2]),
    ("getitem_intarray", (5, 3), lambda x: x[[0, 2, 2, 4]]),
    ("getitem_2arrays", (5, 3), lambda x: x[[0, 4, 0], [1, 2, 1]]),
    ("getitem_mask", (4, 3), lambda x: x[x > 0]),
]


@pytest.mark.parametrize("name,shape,fn", SHAPE_OPS, ids=[s[0] for s in SHAPE_OPS])
def test_shape_ops(name, shape, fn):
    check(fn, shapes=[shape])


def test_cat_stack_split_chunk():
    a, b, c = make_inputs([(2, 3), (4, 3), (2, 3)])
    check(lambda x, y: td.cat([x, y], 0) if isinstance(x, td.Tensor) else T.cat([x, y], 0), inputs=[a, b])
    check(lambda x, y: td.cat([x, y], dim=-1) if isinstance(x, td.Tensor) else T.cat([x, y], -1), inputs=[a, c])
    check(lambda x, y: td.stack([x, y], 1) if isinstance(x, td.Tensor) else T.stack([x, y], 1), inputs=[a, c])
    check(lambda x: x.split(3, dim=0), inputs=[b])
    check(lambda x: x.split([1, 3], dim=0), inputs=[b])
    check(lambda x: x.chunk(2, dim=1), inputs=[b])


@pytest.mark.parametrize("pad,mode", [((1, 2), "constant"), ((1, 1, 0, 2), "constant"), ((2, 1), "reflect"),
                                      ((1, 2, 1, 0), "replicate"), ((1, 2), "circular")], ids=str)
def test_pad(pad, mode):
    x = make_inputs([(2, 3, 4)])[0]
    check(lambda t: td.pad(t, pad, mode=mode) if isinstance(t, td.Tensor) else
          T.nn.functional.pad(t, pad, mode=mode), inputs=[x])


def test_gather_index_select_embedding():
    x = make_inputs([(3, 4)])[0]
    idx = np.array([[0, 3], [1, 1], [2, 0]])
    check(lambda t, i: t.gather(1, i), inputs=[x, idx])
    check(lambda t, i: t.gather(0, i), inputs=[x, np.array([[0, 1, 2, 0]])])
    check(lambda t, i: t.index_select(0, i), inputs=[x, np.array([2, 0, 2])])
    check(lambda t, i: t.index_select(1, i), inputs=[x, np.array([3, 1])])
    ids = np.array([[0, 2, 2], [1, 0, 2]])
    check(lambda i, w: td.embedding(i, w) if isinstance(w, td.Tensor) else T.nn.functional.embedding(i, w),
          inputs=[ids, x])
    # the padding row reads its weights but gets no gradient (PyTorch's rule): parity only
    check(lambda i, w: td.embedding(i, w, padding_idx=2) if isinstance(w, td.Tensor) else
          T.nn.functional.embedding(i, w, padding_idx=2), inputs=[ids, x], grad=False)
    from helpers import torch_parity
    torch_parity(lambda i, w: td.embedding(i, w, padding_idx=2),
                 lambda i, w: T.nn.functional.embedding(i, w, padding_idx=2), [ids, x])


def test_layer_norm():
    x, w, b = make_inputs([(2, 3, 4), (3, 4), (3, 4)])
    check(lambda t, w_, b_: td.layer_norm(t, (3, 4), w_, b_) if isinstance(t, td.Tensor) else
          T.nn.functional.layer_norm(t, (3, 4), w_, b_), inputs=[x, w, b])
    check(lambda t: td.layer_norm(t, 4) if isinstance(t, td.Tensor) else T.nn.functional.layer_norm(t, (4,)),
          inputs=[x])


def test_dropout():
    td.manual_seed(0)
    x = td.ones(1000, requires_grad=True)
    y = td.dropout(x, 0.3, training=True)
    kept = y.numpy() != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.numpy())  # gradient through the same mask
    assert td.dropout(x, 0.3, training=False) is x
    with pytest.raises(ValueError, match="dropout: probability"):
        td.dropout(x, 1.5)


def test_one_hot():
    out = td.one_hot(td.tensor([0, 2, 1]), 4)
    assert out.dtype == np.int64 and out.tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]
    with pytest.raises(ValueError, match="one_hot: class value 5"):
        td.one_hot(td.tensor([5]), 3)
    with pytest.raises(TypeError, match="one_hot: index must be an integer"):
        td.one_hot(td.tensor([1.0]), 3)


def test_comparisons_have_no_gradient():
    x = td.tensor([1.0, -2.0, 3.0], requires_grad=True)
    for out in (x > 0, x >= 1, x < 0, x <= 1, x == 3, x != 3):
        assert out.dtype == np.bool_ and not out.requires_grad
    assert (x > 0).tolist() == [True, False, True]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_broadcast_add_mul_property(shape, data):
    """Any broadcastable pair: gradients reduce back to each input's shape and match PyTorch."""
    other = [data.draw(st.sampled_from([n, 1])) for n in shape][data.draw(st.integers(0, len(shape))):]
    check(lambda a, b: a * b + a, shapes=[tuple(shape), tuple(other)])


def test_creation():
    td.manual_seed(0)
    assert td.zeros(2, 3).dtype == np.float32 and td.ones((2,)).shape == (2,)
    assert td.full((2, 2), 7).dtype == np.int64 and td.full((2,), 1.5).dtype == np.float32
    assert td.arange(5).dtype == np.int64 and td.arange(0, 1, 0.25).tolist() == [0, 0.25, 0.5, 0.75]
    assert td.linspace(0, 1, 5).dtype == np.float32 and td.eye(3).numpy().trace() == 3
    r = td.randn(1000)
    assert r.dtype == np.float32 and abs(r.mean().item()) < 0.1 and abs(r.std().item() - 1) < 0.1
    assert 0 <= td.rand(100).min().item() and td.rand(100).max().item() < 1
    ri = td.randint(0, 10, (50,))
    assert ri.dtype == np.int64 and ri.min().item() >= 0 and ri.max().item() < 10
    x = td.tensor([[1, 2]], dtype=td.float64)
    assert td.zeros_like(x).dtype == np.float64 and td.randn_like(x).shape == (1, 2)
    td.manual_seed(3)
    a = td.randn(4)
    td.manual_seed(3)
    assert a.tolist() == td.randn(4).tolist()


def test_dtype_rules():
    assert td.tensor([1.0, 2.0]).dtype == np.float32
    assert td.tensor(1.5).dtype == np.float32
    assert td.tensor([1, 2]).dtype == np.int64
    assert td.tensor([True]).dtype == np.bool_
    assert td.tensor(np.zeros(2, np.float64)).dtype == np.float64  # arrays keep their dtype
    assert td.tensor([1.0], dtype=td.float64).dtype == np.float64
    x = td.tensor([1.0, 2.0])
    assert (x * 2.5).dtype == np.float32 and (x + 1).dtype == np.float32 and (x ** 2).dtype == np.float32
    assert (x / 3).dtype == np.float32 and x.exp().dtype == np.float32
    assert x.double().dtype == np.float64 and x.long().dtype == np.int64


def test_type_cast_gradient():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    y = (x.double() * 3).sum()
    y.backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [3.0, 3.0]


def test_shape_errors_name_the_op_and_shapes():
    a, b = td.ones(2, 3), td.ones(4, 5)
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) cannot be multiplied"):
        a @ b
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4, 5\) do not broadcast"):
        a + b
    with pytest.raises(ValueError, match=r"mul: shapes \(2, 3\) and \(4, 5\)"):
        a * b
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\)"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match=r"cat: tensor 1 has shape \(4, 5\)"):
        td.cat([a, b])
    with pytest.raises(IndexError, match=r"sum: dim 2 is out of range for a tensor of shape \(2, 3\)"):
        a.sum(2)
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) does not fit weight of shape \(4, 5\)"):
        td.linear(a, b)
    with pytest.raises(ValueError, match=r"expand: shape \(2, 3\) cannot be expanded to \(4, 3\)"):
        a.expand(4, 3)


def test_index_dtype_errors():
    x = td.ones(3, 4)
    with pytest.raises(TypeError, match="gather: index must be an integer tensor"):
        x.gather(1, td.tensor([[0.0]]))
    with pytest.raises(IndexError, match="tensors used as indices must be integer or bool"):
        x[td.tensor([0.5])]
    with pytest.raises(IndexError, match=r"embedding: index 7 is out of range for a table of 3 rows"):
        td.embedding(td.tensor([7]), x)
    with pytest.raises(IndexError, match=r"index_select: index values must lie in \[0, 3\)"):
        x.index_select(0, td.tensor([3]))


def test_gelu_float32_fast_path_is_exact_and_finite():
    """float32 GELU uses a rational erf; it must agree with the float64 (SciPy / reference) path."""
    x = np.concatenate([np.linspace(-12, 12, 5001), [-1e30, -50.0, 0.0, 50.0, 3e38]]).astype(np.float32)
    a = td.tensor(x, requires_grad=True)
    y = td.gelu(a)
    ref = td.gelu(td.tensor(x.astype(np.float64))).numpy()
    assert y.dtype == np.float32 and np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-6, atol=1e-6)
    y.sum().backward()
    b = td.tensor(x.astype(np.float64), requires_grad=True)
    td.gelu(b).sum().backward()
    assert np.isfinite(a.grad.numpy()).all()
    np.testing.assert_allclose(a.grad.numpy()[:5001], b.grad.numpy()[:5001], rtol=1e-5, atol=1e-6)
