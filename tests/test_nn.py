"""tidu.nn: Module registration and state, containers, layers, activations, init, functional, utils —
with PyTorch's keys, reprs and numbers where PyTorch has them."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidu as td
import tidu.nn as nn
import tidu.nn.functional as F
from helpers import check, needs_torch, torch
from tidu.nn import init


def _both(build):
    """The same architecture in tidu and in PyTorch: ``build`` takes the nn module of either."""
    torch.manual_seed(0)
    return build(nn), build(torch.nn)


def _mlp(nn_):
    return nn_.Sequential(nn_.Linear(4, 8), nn_.ReLU(), nn_.Linear(8, 3))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.register_buffer("running", td.zeros(3))
        self.register_buffer("cache", td.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc(x) + self.running


# --- registration ---
def test_assignment_registers_parameters_modules_and_buffers():
    b = Block()
    assert [n for n, _ in b.named_parameters()] == ["fc.weight", "fc.bias"]
    assert [n for n, _ in b.named_buffers()] == ["running", "cache"]
    # PyTorch's order: a module's own parameters and buffers, then its children's; non-persistent buffers stay out
    assert list(b.state_dict()) == ["running", "fc.weight", "fc.bias"]
    assert [n for n, _ in b.named_children()] == ["fc"]
    assert [n for n, _ in b.named_modules()] == ["", "fc"]
    b.extra = nn.Parameter(td.ones(2))
    assert "extra" in dict(b.named_parameters())
    del b.extra
    assert "extra" not in dict(b.named_parameters()) and not hasattr(b, "extra")
    b.fc = None  # a submodule slot set to None is skipped
    assert list(b.state_dict()) == ["running"]
    b.fc = nn.Linear(3, 3)
    assert [n for n, _ in b.named_children()] == ["fc"]


def test_parameters_without_recurse_and_get_submodule():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 1)))
    assert len(list(m.parameters())) == 4 and len(list(m.parameters(recurse=False))) == 0
    assert m.get_submodule("1.0") is m[1][0]
    assert m.get_parameter("1.0.bias") is m[1][0].bias
    with pytest.raises(AttributeError, match="has no submodule 'x'"):
        m.get_submodule("1.x")


def test_registration_errors():
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(td.ones(1))  # before super().__init__()
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()
    fc = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign Tensor to parameter 'weight' of Linear"):
        fc.weight = td.ones(2, 2)
    with pytest.raises(TypeError, match="register_buffer: 'b' must be a Tensor or None, got list"):
        fc.register_buffer("b", [1.0])
    with pytest.raises(KeyError, match="contain no '.'"):
        fc.register_parameter("a.b", None)
    with pytest.raises(NotImplementedError, match="Module has no forward"):
        nn.Module()(td.ones(1))


def test_shared_parameters_are_yielded_once():
    a = nn.Linear(3, 3)
    m = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(m.parameters())) == 2
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias"]
    assert list(m.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as PyTorch: both names


def test_plain_attributes_and_properties_are_not_registered():
    class P(nn.Module):
        def __init__(self):
            super().__init__()
            self.size = 3
            self._scale = 1.0

        @property
        def scale(self):
            return self._scale

        @scale.setter
        def scale(self, v):
            self._scale = 2 * v
    p = P()
    p.scale = 2.0
    assert p.scale == 4.0 and p.size == 3 and list(p.state_dict()) == []


# --- state_dict ---
@needs_torch
def test_state_dict_keys_equal_pytorchs():
    ours, theirs = _both(_mlp)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]

    def nested(nn_):
        class Net(nn_.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn_.Embedding(10, 4, padding_idx=0)
                self.layers = nn_.ModuleList([nn_.Linear(4, 4), nn_.Linear(4, 4, bias=False)])
                self.heads = nn_.ModuleDict({"a": nn_.Linear(4, 2), "b": nn_.Identity()})
                self.scales = nn_.ParameterList([nn_.Parameter(td.ones(2) if nn_ is nn else torch.ones(2))])
        return Net()
    ours, theirs = _both(nested)
    assert list(ours.state_dict()) == list(theirs.state_dict())


@needs_torch
def test_loading_a_pytorch_state_dict_gives_identical_outputs():
    ours, theirs = _both(_mlp)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(ours(td.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-6,
                               atol=1e-6)
    ours2 = _mlp(nn)
    ours2.load_state_dict(theirs.state_dict())  # PyTorch tensors directly, through np.asarray
    np.testing.assert_array_equal(ours2[0].weight.numpy(), theirs[0].weight.detach().numpy())


def test_state_dict_values_are_detached_and_share_memory():
    fc = nn.Linear(2, 2)
    sd = fc.state_dict()
    assert type(sd["weight"]) is td.Tensor and not sd["weight"].requires_grad
    assert np.shares_memory(sd["weight"].numpy(), fc.weight.numpy())
    assert fc.state_dict(keep_vars=True)["weight"] is fc.weight


def test_load_state_dict_copies_in_place_and_keeps_dtype():
    fc = nn.Linear(2, 2)
    w = fc.weight
    result = fc.load_state_dict({"weight": np.ones((2, 2)), "bias": td.tensor([1.0, 2.0])})  # float64 array
    assert fc.weight is w and w.dtype == np.float32 and w.numpy().sum() == 4
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []


def test_load_state_dict_strict_errors_name_keys_and_shapes():
    m = _mlp(nn)
    sd = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    missing = dict(sd)
    del missing["2.bias"]
    with pytest.raises(ValueError, match=r"load_state_dict for Sequential: missing keys \['2.bias'\]"):
        m.load_state_dict(missing)
    with pytest.raises(RuntimeError, match=r"unexpected keys \['extra.weight'\]"):  # PyTorch habit works too
        m.load_state_dict({**sd, "extra.weight": np.zeros(1)})
    bad = {**sd, "0.weight": np.zeros((5, 4))}
    with pytest.raises(ValueError, match=r"Sequential: size mismatch for 0.weight: the checkpoint has shape \(5, 4\), "
                                         r"the model has shape \(8, 4\)"):
        m.load_state_dict(bad)
    with pytest.raises(nn.StateDictError, match="size mismatch for 0.weight"):
        m.load_state_dict(bad, strict=False)  # a shape mismatch is an error even when not strict
    bad["0.bias"] = np.full(8, 7.0, np.float32)
    with pytest.raises(ValueError):
        m.load_state_dict(bad)
    assert not (m[0].bias.numpy() == 7).any()  # a failed load changes nothing
    result = m.load_state_dict({**missing, "extra": np.zeros(1)}, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(m[0].weight.numpy(), sd["0.weight"])


def test_load_state_dict_rejects_non_dicts():
    with pytest.raises(TypeError, match="load_state_dict: expected a dict of tensors, got list"):
        nn.Linear(2, 2).load_state_dict([1, 2])


# --- modes, gradients, apply, hooks ---
def test_train_eval_switches_dropout():
    td.manual_seed(0)
    m = nn.Sequential(nn.Linear(10, 10), nn.Dropout(0.5))
    x = td.ones(4, 10)
    assert m.training and m[1].training
    assert (m(x).numpy() == 0).any()
    assert m.eval() is m and not m[1].training
    np.testing.assert_array_equal(m(x).numpy(), m[0](x).numpy())
    m.train()
    assert m[1].training
    with pytest.raises(ValueError, match="train: mode must be a bool"):
        m.train("yes")


def test_zero_grad_apply_requires_grad_freeze():
    m = _mlp(nn)
    F.cross_entropy(m(td.randn(3, 4)), td.tensor([0, 1, 2])).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())

    def fill(mod):
        if isinstance(mod, nn.Linear):
            init.constant_(mod.weight, 0.5)
    assert m.apply(fill) is m and (m[2].weight.numpy() == 0.5).all()

    assert m.num_parameters() == 4 * 8 + 8 + 8 * 3 + 3
    m.freeze(keys="bias")
    assert m.num_parameters(trainable_only=True) == 4 * 8 + 8 * 3
    m.unfreeze()
    m.requires_grad_(False)
    assert m.num_parameters(trainable_only=True) == 0
    m[0].unfreeze()
    assert m.num_parameters(trainable_only=True) == 40


def test_forward_hooks():
    fc = nn.Linear(2, 2)
    seen = []
    h1 = fc.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    h2 = fc.register_forward_hook(lambda mod, args, out: seen.append(out.shape) or out + 1)
    out = fc(td.ones(3, 2))
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(fc.bias.numpy() + 1, (3, 2)), rtol=1e-6)
    assert seen == [(3, 2)]
    h1.remove()
    h2.remove()
    np.testing.assert_allclose(fc(td.ones(3, 2)).numpy(), F.linear(td.ones(3, 2), fc.weight, fc.bias).numpy())


@needs_torch
def test_repr_matches_pytorch():
    def build(nn_):
        return nn_.Sequential(nn_.Linear(2, 3), nn_.ReLU(), nn_.Dropout(0.1), nn_.GELU(approximate="tanh"),
                              nn_.Sequential(nn_.Linear(3, 1, bias=False), nn_.Sigmoid()),
                              nn_.Embedding(10, 4, padding_idx=0), nn_.Flatten(), nn_.LeakyReLU(0.2),
                              nn_.Softmax(dim=-1), nn_.ELU(), nn_.Softplus(), nn_.Identity(), nn_.Tanh())
    ours, theirs = _both(build)
    assert repr(ours) == repr(theirs)
    assert repr(nn.ModuleList([nn.ReLU()])) == repr(torch.nn.ModuleList([torch.nn.ReLU()]))


def test_deepcopy_keeps_registries_consistent():
    m = _mlp(nn)
    c = copy.deepcopy(m)
    assert c[0].weight is not m[0].weight
    assert c[0].weight is dict(c.named_parameters())["0.weight"]
    np.testing.assert_array_equal(c[0].weight.numpy(), m[0].weight.numpy())


def test_to_dtype_keeps_parameter_objects():
    m = Block()
    w = m.fc.weight
    m.double()
    assert m.fc.weight is w and w.dtype == np.float64 and m.running.dtype == np.float64
    assert m(td.ones(1, 3, dtype=td.float64)).dtype == np.float64
    m.float()
    assert w.dtype == np.float32
    with pytest.raises(TypeError, match="only floating dtypes"):
        m.to(td.int64)


# --- containers ---
def test_sequential_indexing_and_editing():
    layers = [nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)]
    s = nn.Sequential(*layers)
    assert len(s) == 3 and s[0] is layers[0] and s[-1] is layers[2] and list(s) == layers
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub._modules) == ["1", "2"]  # slices keep keys (PyTorch)
    with pytest.raises(IndexError, match="index 3 is out of range for 3 modules"):
        s[3]
    s.append(nn.Sigmoid())
    assert len(s) == 4 and isinstance(s[3], nn.Sigmoid)
    del s[1]
    assert list(s._modules) == ["0", "1", "2"] and isinstance(s[1], nn.Linear)
    s.insert(1, nn.Tanh())
    assert isinstance(s[1], nn.Tanh) and len(s) == 4
    s[0] = nn.Linear(2, 2, bias=False)
    assert s[0].bias is None
    from collections import OrderedDict
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"] and named.fc is named[0]
    assert named(td.ones(1, 2)).shape == (1, 2)


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(ml) == 3 and len(list(ml.parameters())) == 6
    ml.append(nn.ReLU())
    ml += [nn.Tanh()]
    assert isinstance(ml[-1], nn.Tanh) and isinstance(ml[1:3], nn.ModuleList)
    del ml[0]
    assert list(ml._modules) == ["0", "1", "2", "3"]
    md = nn.ModuleDict({"a": nn.Linear(2, 2)})
    md["b"] = nn.ReLU()
    assert "a" in md and list(md.keys()) == ["a", "b"] and len(md) == 2
    assert list(md.state_dict()) == ["a.weight", "a.bias"]
    md.pop("a")
    assert list(md) == ["b"]
    pd = nn.ParameterDict({"x": td.ones(2)})
    assert isinstance(pd["x"], nn.Parameter) and list(pd.state_dict()) == ["x"]


# --- layers ---
def test_linear_init_bounds_and_statistics():
    td.manual_seed(0)
    fc = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    w, b = fc.weight.numpy(), fc.bias.numpy()
    assert w.dtype == np.float32 and w.shape == (300, 400)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)  # U(-a, a) has std a/√3
    assert abs(w.mean()) < 0.01 * bound
    td.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.numpy(), w)  # seeded: reproducible
    assert nn.Linear(3, 2, dtype=td.float64).weight.dtype == np.float64


@needs_torch
@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=2), st.booleans(), st.integers(0, 99))
def test_linear_matches_pytorch(lead, bias, seed):
    ours, theirs = _both(lambda nn_: nn_.Linear(5, 3, bias=bias))
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(seed).standard_normal(tuple(lead) + (5,)).astype(np.float32)
    a, b = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out_a, out_b = ours(a), theirs(b)
    np.testing.assert_allclose(out_a.numpy(), out_b.detach().numpy(), rtol=1e-5, atol=1e-6)
    (out_a * out_a).sum().backward()
    (out_b * out_b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
    if bias:
        np.testing.assert_allclose(ours.bias.grad.numpy(), theirs.bias.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_linear_gradcheck():
    fc = nn.Linear(4, 3).double()
    x = td.randn(2, 4, dtype=td.float64, requires_grad=True)
    assert td.gradcheck(fc, x)
    assert td.gradcheck(lambda w, b: F.linear(x, w, b), fc.weight, fc.bias)


def test_linear_wrong_input_size_names_layer_shape_and_in_features():
    fc = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"Linear\(in_features=4, out_features=3, bias=True\): input of shape "
                                         r"\(2, 5\) has last dimension 5, but in_features is 4"):
        fc(td.ones(2, 5))


def test_embedding_padding_row_and_gradient():
    td.manual_seed(0)
    emb = nn.Embedding(6, 3, padding_idx=-1)
    assert emb.padding_idx == 5 and not emb.weight.numpy()[5].any()
    assert emb.weight.numpy()[:5].std() == pytest.approx(1.0, abs=0.5)
    idx = td.tensor([[0, 5, 2], [2, 5, 1]])
    out = emb(idx)
    assert out.shape == (2, 3, 3)
    out.sum().backward()
    g = emb.weight.grad.numpy()
    np.testing.assert_array_equal(g[:, 0], [1, 1, 2, 0, 0, 0])  # padding row 5 gets no gradient; 2 used twice
    with pytest.raises(ValueError, match="padding_idx 6 is out of range for 6 embeddings"):
        nn.Embedding(6, 3, padding_idx=6)
    frozen = nn.Embedding.from_pretrained(td.ones(4, 2))
    assert not frozen.weight.requires_grad and frozen(td.tensor([3])).shape == (1, 2)


@needs_torch
def test_embedding_matches_pytorch():
    ours, theirs = _both(lambda nn_: nn_.Embedding(7, 4, padding_idx=2))
    ours.load_state_dict(theirs.state_dict())
    idx = np.array([[1, 2, 6], [2, 2, 0]])
    a, b = ours(td.tensor(idx)), theirs(torch.tensor(idx))
    np.testing.assert_array_equal(a.numpy(), b.detach().numpy())
    v = np.random.default_rng(0).standard_normal(a.shape).astype(np.float32)
    (a * td.tensor(v)).sum().backward()
    (b * torch.tensor(v)).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-6)


def test_identity_flatten_unflatten_dropout():
    x = td.randn(2, 3, 4, 5)
    assert nn.Identity(7, key=1)(x) is x
    assert nn.Flatten()(x).shape == (2, 60) and nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Unflatten(1, (3, 20))(nn.Flatten()(x)).shape == (2, 3, 20)
    with pytest.raises(ValueError, match=r"Dropout: probability p must lie in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)
    td.manual_seed(1)
    d = nn.Dropout(0.25)
    y = d(td.ones(1000))
    kept = y.numpy() != 0
    assert 0.65 < kept.mean() < 0.85 and np.allclose(y.numpy()[kept], 1 / 0.75)


ACTIVATIONS = [  # (tidu module, PyTorch module) built from the same arguments
    ("ReLU", (), {}), ("ReLU6", (), {}), ("LeakyReLU", (0.2,), {}), ("ELU", (0.7,), {}), ("GELU", (), {}),
    ("GELU", (), {"approximate": "tanh"}), ("SiLU", (), {}), ("Mish", (), {}), ("Sigmoid", (), {}),
    ("LogSigmoid", (), {}), ("Tanh", (), {}), ("Hardtanh", (-0.5, 0.8), {}), ("Softplus", (2.0, 5.0), {}),
    ("Softmax", (), {"dim": 1}), ("LogSoftmax", (), {"dim": -1}), ("Softmin", (), {"dim": 0}),
]


@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS, ids=[f"{a[0]}{a[2] or ''}" for a in ACTIVATIONS])
def test_activation_modules(name, args, kwargs):
    ours = getattr(nn, name)(*args, **kwargs)
    check(lambda x: ours(x), shapes=[(3, 4)], seed=3,
          torch_fn=lambda x: getattr(torch.nn, name)(*args, **kwargs)(x))


def test_prelu_matches_pytorch():
    ours = nn.PReLU(3, init=0.1).double()
    ours.weight.data[...] = [0.1, 0.3, -0.2]
    check(lambda x, w: F.prelu(x, w), inputs=[np.random.default_rng(0).standard_normal((2, 3, 4)),
                                             np.array([0.1, 0.3, -0.2])],
          torch_fn=lambda x, w: torch.nn.functional.prelu(x, w))
    assert ours(td.randn(2, 3, dtype=td.float64)).shape == (2, 3)


FUNCTIONAL_EXTRAS = [
    ("relu6", lambda x: F.relu6(x * 4), lambda x: torch.nn.functional.relu6(x * 4)),
    ("hardtanh", lambda x: F.hardtanh(x), lambda x: torch.nn.functional.hardtanh(x)),
    ("normalize", lambda x: F.normalize(x, dim=1), lambda x: torch.nn.functional.normalize(x, dim=1)),
    ("normalize_p1", lambda x: F.normalize(x, p=1.0, dim=0), lambda x: torch.nn.functional.normalize(x, p=1.0, dim=0)),
]


@pytest.mark.parametrize("name,fn,torch_fn", FUNCTIONAL_EXTRAS, ids=[f[0] for f in FUNCTIONAL_EXTRAS])
def test_functional_extras(name, fn, torch_fn):
    check(fn, shapes=[(3, 4)], seed=5, torch_fn=torch_fn)


def test_cosine_similarity():
    check(lambda a, b: F.cosine_similarity(a, b), shapes=[(3, 5), (3, 5)],
          torch_fn=lambda a, b: torch.nn.functional.cosine_similarity(a, b))


def test_functional_reexports_the_ops():
    import tidu.ops
    for name in tidu.ops.__all__:
        assert getattr(F, name) is getattr(tidu.ops, name)
    for name in ["relu", "cross_entropy", "linear", "softmax", "dropout", "layer_norm", "one_hot", "embedding"]:
        assert callable(getattr(F, name))


# --- init ---
@needs_torch
def test_calculate_gain_and_fans_match_pytorch():
    from torch.nn import init as tinit
    for nl, p in [("relu", None), ("tanh", None), ("sigmoid", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                  ("selu", None), ("conv2d", None), ("linear", None)]:
        assert init.calculate_gain(nl, p) == pytest.approx(tinit.calculate_gain(nl, p))
    for shape in [(3, 4), (8, 3, 5, 5), (2, 6, 7)]:
        assert init._calculate_fan_in_and_fan_out(td.empty(*shape)) == \
            tinit._calculate_fan_in_and_fan_out(torch.empty(*shape))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("fn,kwargs,kind,scale", [
    (init.xavier_uniform_, {"gain": 2.0}, "uniform", lambda fi, fo: 2.0 * np.sqrt(6 / (fi + fo))),
    (init.xavier_normal_, {}, "normal", lambda fi, fo: np.sqrt(2 / (fi + fo))),
    (init.kaiming_uniform_, {"nonlinearity": "relu"}, "uniform", lambda fi, fo: np.sqrt(2) * np.sqrt(3 / fi)),
    (init.kaiming_uniform_, {"mode": "fan_out", "a": 0.1}, "uniform",
     lambda fi, fo: np.sqrt(2 / 1.01) * np.sqrt(3 / fo)),
    (init.kaiming_normal_, {"nonlinearity": "relu"}, "normal", lambda fi, fo: np.sqrt(2 / fi)),
    (init.kaiming_normal_, {"mode": "fan_out"}, "normal", lambda fi, fo: np.sqrt(2 / 1.0001 / fo)),
])
def test_init_distributions(fn, kwargs, kind, scale):
    td.manual_seed(0)
    t = td.empty(64, 32, 3, 3)  # fan_in 288, fan_out 576
    assert fn(t, **kwargs) is t
    s = scale(288, 576)
    w = t.numpy()
    assert w.dtype == np.float32
    if kind == "uniform":
        assert np.abs(w).max() <= s and w.std() == pytest.approx(s / np.sqrt(3), rel=0.03)
    else:
        assert w.std() == pytest.approx(s, rel=0.03)


def test_init_simple_fillers():
    t = td.empty(3, 4)
    assert (init.zeros_(t).numpy() == 0).all() and (init.ones_(t).numpy() == 1).all()
    assert (init.constant_(t, 0.3).numpy() == np.float32(0.3)).all()
    np.testing.assert_array_equal(init.eye_(t).numpy(), np.eye(3, 4))
    td.manual_seed(0)
    u = init.uniform_(td.empty(1000), -0.5, 0.25).numpy()
    assert u.min() >= -0.5 and u.max() < 0.25
    n = init.normal_(td.empty(5000), 2.0, 0.5).numpy()
    assert n.mean() == pytest.approx(2.0, abs=0.05) and n.std() == pytest.approx(0.5, rel=0.05)
    tn = init.trunc_normal_(td.empty(5000), std=1.0, a=-0.5, b=1.0).numpy()
    assert tn.min() >= -0.5 and tn.max() <= 1.0 and tn.std() > 0.3
    q = init.orthogonal_(td.empty(4, 6), gain=2.0).numpy()
    np.testing.assert_allclose(q @ q.T, 4 * np.eye(4), atol=1e-5)
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(5,\)"):
        init.xavier_uniform_(td.empty(5))
    w = nn.Linear(3, 3).weight
    init.normal_(w)  # a parameter that requires grad is filled without complaint (no graph)
    assert w.requires_grad and w.grad is None


# --- utils ---
def test_parameters_to_vector_and_back():
    from tidu.nn.utils import parameters_to_vector, vector_to_parameters
    m = _mlp(nn)
    v = parameters_to_vector(m.parameters())
    assert v.shape == (m.num_parameters(),)
    np.testing.assert_array_equal(v.numpy()[:32], m[0].weight.numpy().reshape(-1))
    ids = [id(p) for p in m.parameters()]
    vector_to_parameters(td.arange(float(v.shape[0])), m.parameters())
    assert [id(p) for p in m.parameters()] == ids and m[0].bias.numpy()[0] == 32
    with pytest.raises(ValueError, match="the vector has 3 elements but the parameters hold 67"):
        vector_to_parameters(td.zeros(3), m.parameters())


def test_clip_grad_reexported_from_optim():
    from tidu.nn.utils import clip_grad_norm_, clip_grad_value_
    import tidu.optim
    assert clip_grad_norm_ is tidu.optim.clip_grad_norm_ and clip_grad_value_ is tidu.optim.clip_grad_value_
    assert nn.utils.clip_grad_norm_ is clip_grad_norm_


@needs_torch
def test_bilinear_matches_pytorch():
    ours, theirs = _both(lambda nn_: nn_.Bilinear(3, 4, 2))
    ours.load_state_dict(theirs.state_dict())
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    a1, a2 = td.tensor(x1, requires_grad=True), td.tensor(x2, requires_grad=True)
    b1, b2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    out_a, out_b = ours(a1, a2), theirs(b1, b2)
    np.testing.assert_allclose(out_a.numpy(), out_b.detach().numpy(), rtol=1e-5, atol=1e-6)
    out_a.sum().backward()
    out_b.sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a2.grad.numpy(), b2.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert repr(ours) == repr(theirs)
