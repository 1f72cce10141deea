"""Recurrent layers (tidu.nn.RNN / LSTM / GRU and their cells, tidu.ops.rnn_sequence): PyTorch parity of values
and of the gradients of the input, the initial states and every parameter, with the same weights loaded by name,
over all options; float64 finite differences; PyTorch state_dicts; errors."""
import warnings

import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
from helpers import needs_torch, torch
from tidu.nn import recurrent as R

# (class name, constructor kwargs) for every kind of layer
KINDS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("GRU", {}), ("LSTM", {}), ("LSTM", {"proj_size": 3})]
KIND_IDS = ["rnn_tanh", "rnn_relu", "gru", "lstm", "lstm_proj"]
OPTIONS = [
    {},
    {"batch_first": True},
    {"num_layers": 2},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "batch_first": True},
    {"bias": False, "num_layers": 2},
    {"num_layers": 2, "dropout": 0.5},  # compared in eval mode, where dropout is off
]


def test_exported_from_tidu_nn():
    for name in R.__all__:
        assert getattr(nn, name, None) is getattr(R, name), f"tidu.nn.{name} is missing: add " \
            "`from .recurrent import *` to tidu/nn/__init__.py"


def _torch_twin(model, name, kwargs):
    """The PyTorch layer with the same constructor arguments, loaded with ``model``'s weights by name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns about dropout with one layer
        twin = getattr(torch.nn, name)(**kwargs)
    sd = {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
    twin.load_state_dict(sd, strict=True)
    return twin


def _compare(ours, theirs, tensors, name, atol=2e-5):
    """Forward values, then the gradients of a random projection of every output w.r.t. ``tensors``
    (pairs of tidu / torch tensors: inputs, states, and the parameters matched by name)."""
    rs = np.random.default_rng(1)
    loss_o, loss_t = 0, 0
    for o, t in zip(ours, theirs):
        t_np = t.detach().numpy()
        assert tuple(o.shape) == tuple(t_np.shape), f"{name}: shape {tuple(o.shape)} vs torch {tuple(t_np.shape)}"
        assert o.dtype == np.float32
        np.testing.assert_allclose(o.numpy(), t_np, atol=atol, rtol=1e-4, err_msg=f"{name}: values differ")
        v = rs.standard_normal(o.shape).astype(np.float32)
        loss_o = loss_o + (o * td.tensor(v)).sum()
        loss_t = loss_t + (t * torch.from_numpy(v)).sum()
    loss_o.backward()
    loss_t.backward()
    for label, a, b in tensors:
        assert a.grad is not None, f"{name}: no gradient for {label}"
        assert a.grad.dtype == np.float32
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=atol, rtol=1e-4,
                                   err_msg=f"{name}: gradient of {label} differs")


def _run(model, x, states):
    out, state = model(x, states)
    return [out] + (list(state) if isinstance(state, tuple) else [state])


@needs_torch
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_layer_parity_with_pytorch(kind, options):
    name, extra = kind
    kwargs = dict(input_size=4, hidden_size=5, **extra, **options)
    td.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tidu warns too (as PyTorch does) only for dropout with one layer
        model = getattr(R, name)(**kwargs)
    twin = _torch_twin(model, name, kwargs)
    assert list(model.state_dict()) == list(twin.state_dict()), "parameter names and order as in PyTorch"
    model.eval(), twin.eval()
    rs = np.random.default_rng(0)
    T, B = 6, 3
    x = rs.standard_normal((B, T, 4) if options.get("batch_first") else (T, B, 4)).astype(np.float32)
    layers = kwargs.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    h_size = extra.get("proj_size") or 5
    h0 = rs.standard_normal((layers, B, h_size)).astype(np.float32)
    c0 = rs.standard_normal((layers, B, 5)).astype(np.float32)
    ours = [td.tensor(a, requires_grad=True) for a in (x, h0, c0)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, h0, c0)]
    lstm = name == "LSTM"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch: "LSTM with projections is not supported with oneDNN"
        outs_t = _run(twin, theirs[0], tuple(theirs[1:]) if lstm else theirs[1])
    outs_o = _run(model, ours[0], tuple(ours[1:]) if lstm else ours[1])
    params = dict(twin.named_parameters())
    pairs = [("input", ours[0], theirs[0]), ("h0", ours[1], theirs[1])] + ([("c0", ours[2], theirs[2])] if lstm else [])
    pairs += [(n, p, params[n]) for n, p in model.named_parameters()]
    _compare(outs_o, outs_t, pairs, f"{name}{extra}{options}")


@needs_torch
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_unbatched_input_and_default_states(kind):
    name, extra = kind
    kwargs = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, **extra)
    model = getattr(R, name)(**kwargs)
    twin = _torch_twin(model, name, kwargs)
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    xo, xt = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs_t = _run(twin, xt, None)
    outs_o = _run(model, xo, None)
    params = dict(twin.named_parameters())
    _compare(outs_o, outs_t, [("input", xo, xt)] + [(n, p, params[n]) for n, p in model.named_parameters()], name)


@needs_torch
@pytest.mark.parametrize("name,extra", [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}), ("GRUCell", {}),
                                        ("LSTMCell", {}), ("LSTMCell", {"bias": False})])
def test_cell_parity_with_pytorch(name, extra):
    model = getattr(R, name)(4, 5, **extra)
    twin = _torch_twin(model, name, dict(input_size=4, hidden_size=5, **extra))
    rs = np.random.default_rng(3)
    x = rs.standard_normal((3, 4)).astype(np.float32)
    h, c = rs.standard_normal((2, 3, 5)).astype(np.float32)
    ours = [td.tensor(a, requires_grad=True) for a in (x, h, c)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, h, c)]
    lstm = name == "LSTMCell"
    # two steps, so that the state's gradient flows through the cell twice
    so, st = (tuple(ours[1:]) if lstm else ours[1]), (tuple(theirs[1:]) if lstm else theirs[1])
    for _ in range(2):
        so, st = model(ours[0], so), twin(theirs[0], st)
    outs_o, outs_t = (list(so), list(st)) if lstm else ([so], [st])
    params = dict(twin.named_parameters())
    pairs = [("input", ours[0], theirs[0]), ("h", ours[1], theirs[1])] + ([("c", ours[2], theirs[2])] if lstm else [])
    _compare(outs_o, outs_t, pairs + [(n, p, params[n]) for n, p in model.named_parameters()], name)
    # unbatched and without a state
    x1 = x[0]
    got = model(td.tensor(x1))
    want = twin(torch.from_numpy(x1))
    for g, w in zip(got if lstm else [got], want if lstm else [want]):
        assert g.shape == (5,)
        np.testing.assert_allclose(g.numpy(), w.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("mode,reverse,proj", [("RNN_TANH", False, False), ("RNN_RELU", True, False),
                                                ("GRU", False, False), ("GRU", True, False),
                                                ("LSTM", False, False), ("LSTM", True, True)])
def test_rnn_sequence_gradcheck_float64(mode, reverse, proj):
    G = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}[mode]
    T, B, H, P = 4, 2, 3, 2 if proj else 3
    rs = np.random.default_rng(4)

    def t(*shape):
        return td.tensor(rs.uniform(-1, 1, shape), dtype=td.float64, requires_grad=True)
    gi, h0, w_hh, b_hh = t(T, B, G * H), t(B, P), t(G * H, P), t(G * H)
    extra = [t(B, H)] + ([t(P, H)] if proj else []) if mode == "LSTM" else []

    def fn(gi, h0, w_hh, b_hh, *extra):
        c0 = extra[0] if extra else None
        w_hr = extra[1] if len(extra) > 1 else None
        out, state = td.rnn_sequence(mode, gi, h0, w_hh, b_hh, c0=c0, w_hr=w_hr, reverse=reverse)
        return (out,) + (tuple(state) if isinstance(state, tuple) else (state,))
    assert td.gradcheck(fn, gi, h0, w_hh, b_hh, *extra)


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
def test_layer_gradcheck_float64(name):
    """Every parameter of a two-layer bidirectional float64 layer, through finite differences."""
    td.manual_seed(1)
    model = getattr(R, name)(2, 2, num_layers=2, bidirectional=True, batch_first=True, dtype=td.float64)
    x = td.randn(2, 3, 2, dtype=td.float64, requires_grad=True)
    params = list(model.parameters())
    assert all(p.dtype == np.float64 for p in params)

    def fn(x, *params):  # the parameters are perturbed in place, so the model sees them
        out, state = model(x)
        return (out,) + (tuple(state) if isinstance(state, tuple) else (state,))
    assert td.gradcheck(fn, x, *params)


@needs_torch
def test_loads_a_pytorch_state_dict_by_name():
    torch.manual_seed(0)
    twin = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    model = R.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    result = model.load_state_dict({k: td.tensor(v.numpy()) for k, v in twin.state_dict().items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = np.random.default_rng(5).standard_normal((2, 7, 3)).astype(np.float32)
    out, (h, c) = model(td.tensor(x))
    out_t, (h_t, c_t) = twin(torch.from_numpy(x))
    for a, b in [(out, out_t), (h, h_t), (c, c_t)]:
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=1e-5)
    # a GRU's weights do not fit an LSTM: refused, naming the key and both shapes
    gru = torch.nn.GRU(3, 4)
    with pytest.raises(ValueError, match=r"weight_ih_l0.*\(12, 3\).*\(16, 3\)|weight_ih_l0.*\(16, 3\).*\(12, 3\)"):
        R.LSTM(3, 4).load_state_dict({k: td.tensor(v.numpy()) for k, v in gru.state_dict().items()})


def test_init_is_uniform_within_one_over_sqrt_hidden():
    td.manual_seed(0)
    model = R.GRU(10, 16, num_layers=2)
    bound = 1 / np.sqrt(16)
    for name, p in model.named_parameters():
        a = p.numpy()
        assert a.dtype == np.float32 and abs(a).max() <= bound, name
        assert abs(a).max() > 0.8 * bound, name  # actually spread over the interval
    assert model.weight_ih_l1.shape == (48, 16) and model.weight_hh_l0.shape == (48, 16)


def test_dropout_between_layers_only_while_training():
    td.manual_seed(0)
    model = R.LSTM(3, 8, num_layers=2, dropout=0.5)
    x = td.randn(5, 2, 3)
    train1 = model(x)[0].numpy()
    model.eval()
    ev1, ev2 = model(x)[0].numpy(), model(x)[0].numpy()
    np.testing.assert_array_equal(ev1, ev2)
    assert not np.allclose(train1, ev1)
    with pytest.warns(UserWarning, match="dropout=0.2 acts between layers only"):
        R.GRU(3, 4, dropout=0.2)


def test_backward_twice_with_retain_graph_and_no_grad_forward():
    td.manual_seed(0)
    model = R.LSTM(3, 4, bidirectional=True)
    x = td.randn(5, 2, 3, requires_grad=True)
    out, (h, c) = model(x)
    loss = out.sum() + h.sum() + c.sum()
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    x.grad = None
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), first, rtol=1e-6)  # the backward leaves its saved arrays intact
    with td.no_grad():
        out, _ = model(x)
    assert not out.requires_grad


def test_learns_to_sum_a_sequence():
    """A GRU trained a few dozen steps to output the running sum of its input."""
    td.manual_seed(0)
    model, head = R.GRU(1, 16, batch_first=True), nn.Linear(16, 1)
    opt = td.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=0.02)
    rs = np.random.default_rng(0)
    losses = []
    for _ in range(60):
        x = rs.uniform(-1, 1, (16, 8, 1)).astype(np.float32)
        y = td.tensor(np.cumsum(x, axis=1))
        loss = ((head(model(td.tensor(x))[0]) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.1 * np.mean(losses[:5])


# --- errors ---
def test_wrong_input_size_names_the_layer_and_both_sizes():
    with pytest.raises(ValueError, match=r"LSTM\(4, 5\).*input_size=4.*got shape \(6, 2, 3\)"):
        R.LSTM(4, 5)(td.randn(6, 2, 3))
    with pytest.raises(ValueError, match=r"\(batch, seq_len, input_size\).*got shape \(2, 3\)"):
        R.GRU(4, 5, batch_first=True)(td.randn(2, 3))
    with pytest.raises(ValueError, match=r"got shape \(1, 2, 3, 4\)"):
        R.RNN(4, 5)(td.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"GRUCell\(4, 5\).*input_size=4.*got shape \(2, 3\)"):
        R.GRUCell(4, 5)(td.randn(2, 3))
    with pytest.raises(TypeError, match="LSTM: input is float64 but the layer's weights are float32"):
        R.LSTM(4, 5)(td.randn(6, 2, 4, dtype=td.float64))


def test_wrong_state_shapes_say_expected_and_got():
    with pytest.raises(ValueError, match=r"GRU: h0 has shape \(1, 2, 5\), expected \(4, 2, 5\)"):
        R.GRU(3, 5, num_layers=2, bidirectional=True)(td.randn(6, 2, 3), td.zeros(1, 2, 5))
    with pytest.raises(ValueError, match=r"LSTM: c0 has shape \(1, 2, 2\), expected \(1, 2, 5\)"):
        R.LSTM(3, 5, proj_size=2)(td.randn(6, 2, 3), (td.zeros(1, 2, 2), td.zeros(1, 2, 2)))
    with pytest.raises(ValueError, match=r"h0 has shape \(1, 5\), expected \(1, 2, 5\)"):
        R.RNN(3, 5)(td.randn(6, 2, 3), td.zeros(1, 5))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h0, c0\)"):
        R.LSTM(3, 5)(td.randn(6, 2, 3), td.zeros(1, 2, 5))
    with pytest.raises(ValueError, match=r"LSTMCell: c has shape \(2, 4\), expected \(2, 5\)"):
        R.LSTMCell(3, 5)(td.randn(2, 3), (td.zeros(2, 5), td.zeros(2, 4)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        R.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        R.GRU(3, 0)
    with pytest.raises(ValueError, match=r"proj_size \(4\) must be smaller than hidden_size \(4\)"):
        R.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\]"):
        R.LSTM(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="rnn_sequence: h0 has shape \\(2, 4\\), expected \\(2, 3\\)"):
        td.rnn_sequence("GRU", td.randn(5, 2, 9), td.zeros(2, 4), td.randn(9, 3))


def test_repr_like_pytorch():
    assert repr(R.LSTM(10, 20, num_layers=2, batch_first=True)) == "LSTM(10, 20, num_layers=2, batch_first=True)"
    assert repr(R.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"
    assert repr(R.GRUCell(3, 4, bias=False)) == "GRUCell(3, 4, bias=False)"
