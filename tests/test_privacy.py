"""tidu.privacy: per-sample gradients equal a loop over samples; DP-SGD reduces to SGD without noise or
clipping; ε agrees with dp-accounting (the reference it is computed with) and with Opacus."""
import math
import warnings

import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
import tidu.nn.functional as F
from tidu.data import DataLoader, Dataset, TensorDataset
from tidu.privacy import (DPOptimizer, GradSampler, PrivacyAccountant, PrivacyBudgetExceeded, compute_epsilon,
                          find_noise_multiplier, make_private, register_grad_sampler)
from tidu.privacy.per_sample import _mha_forward

from helpers import needs_torch, torch

dp_accounting = pytest.importorskip("dp_accounting", reason="dp-accounting (the privacy extra) is not installed")

try:
    from opacus.accountants import RDPAccountant as OpacusRDP
except Exception:  # noqa: BLE001 - any import failure means no reference
    OpacusRDP = None
needs_opacus = pytest.mark.skipif(OpacusRDP is None, reason="opacus is not installed: the comparison of ε with "
                                  "Opacus's RDP accountant is not checked")


# --- per-sample gradients ---

def loop_grads(model, loss_fn, inputs):
    """The reference: one backward per sample."""
    params = dict(model.named_parameters())
    out = {k: [] for k in params}
    for i in range(len(inputs[0])):
        model.zero_grad()
        loss_fn(model, *[x[i:i + 1] for x in inputs], i).backward()
        for k, p in params.items():
            out[k].append(np.zeros(p.shape, np.float32) if p.grad is None else p.grad.numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


def sampled_grads(model, loss_fn, inputs):
    model.zero_grad()
    with GradSampler(model) as sampler:
        n = len(inputs[0])
        loss = loss_fn(model, *inputs, None)
        loss.backward()
        grads, norms = sampler.grad_samples(), sampler.per_sample_norms()
        batch_grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters() if p.grad is not None}
        assert sampler.batch_size == n
    return grads, norms, batch_grads


def check_per_sample(model, loss_fn, inputs, atol=1e-5):
    ref = loop_grads(model, loss_fn, inputs)
    got, norms, batch = sampled_grads(model, loss_fn, inputs)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].dtype == np.float32, k
        np.testing.assert_allclose(got[k], ref[k], atol=atol, rtol=1e-4, err_msg=k)
        np.testing.assert_allclose(got[k].sum(0), batch[k], atol=atol * 10, rtol=1e-4, err_msg=k)
    flat = np.concatenate([ref[k].reshape(len(inputs[0]), -1) for k in ref], 1)
    np.testing.assert_allclose(norms, np.linalg.norm(flat, axis=1), rtol=1e-4)


def weighted_sum_loss(seed, shape_fn):
    """loss = Σ_n Σ (out_n ∘ W_n): a different cotangent per sample (index i picks that sample's)."""
    cache = {}

    def loss(model, x, i):
        out = model(x)
        if "w" not in cache:
            cache["w"] = np.random.default_rng(seed).standard_normal(shape_fn(out.shape)).astype(np.float32)
        w = cache["w"] if i is None else cache["w"][i:i + 1]
        return (out * td.tensor(w)).sum()
    return loss


def rand(*shape, seed=0):
    return td.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def batch_of(n):
    return lambda shape: (n,) + tuple(shape[1:])


def test_linear_2d_and_3d_inputs():
    td.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    check_per_sample(model, weighted_sum_loss(1, batch_of(6)), [rand(6, 5)])
    check_per_sample(model, weighted_sum_loss(2, batch_of(4)), [rand(4, 3, 5)])  # (N, T, features)


def test_linear_with_cross_entropy_and_frozen_bias():
    td.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    model[0].bias.requires_grad_(False)
    y = td.tensor(np.array([0, 2, 1, 1, 0]))

    def loss(m, x, yb, i):
        return F.cross_entropy(m(x), yb, reduction="sum")
    ref = loop_grads(model, loss, [rand(5, 4), y])
    got, _, _ = sampled_grads(model, loss, [rand(5, 4), y])
    assert "0.bias" not in got
    for k in got:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-5, rtol=1e-4)


def test_embedding_with_repeats_and_padding():
    td.manual_seed(2)
    emb = nn.Embedding(11, 4, padding_idx=0)
    model = nn.Sequential(emb, nn.Linear(4, 2))
    ids = td.tensor(np.array([[1, 3, 3, 0], [5, 5, 5, 5], [0, 0, 2, 10]]))  # repeated ids add up within a sample
    check_per_sample(model, weighted_sum_loss(3, batch_of(3)), [ids])


def test_embedding_rows_never_densify_for_clipping():
    td.manual_seed(3)
    model = nn.Embedding(50, 3)
    ids = td.tensor(np.random.default_rng(0).integers(0, 50, (6, 9)))
    with GradSampler(model) as s:
        (model(ids) * rand(6, 9, 3)).sum().backward()
        rows = s._store[model.weight]
        dense = rows.dense()
        np.testing.assert_allclose(np.sqrt(rows.sq_norms()), np.linalg.norm(dense.reshape(6, -1), axis=1), rtol=1e-5)
        c = np.linspace(0.1, 1.0, 6)
        np.testing.assert_allclose(rows.weighted_sum(c), np.tensordot(c, dense, 1), rtol=1e-5, atol=1e-6)


def test_layer_norm_and_group_norm():
    td.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    ln = model[1]
    ln.weight.data[...] = np.random.default_rng(0).uniform(0.5, 1.5, 6)
    check_per_sample(model, weighted_sum_loss(4, batch_of(5)), [rand(5, 3, 6)])
    gn = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4))
    check_per_sample(gn, weighted_sum_loss(5, batch_of(3)), [rand(3, 2, 6, 6)])


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=1, dilation=(1, 2), groups=2),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding="same", padding_mode="reflect", bias=False),
])
def test_conv2d(kwargs):
    td.manual_seed(5)
    conv = nn.Conv2d(**kwargs)
    check_per_sample(conv, weighted_sum_loss(6, batch_of(3)), [rand(3, kwargs["in_channels"], 7, 8)])


def test_conv1d():
    td.manual_seed(6)
    model = nn.Sequential(nn.Conv1d(3, 5, 3, stride=2, padding=1), nn.ReLU(), nn.Conv1d(5, 2, 2, dilation=2))
    check_per_sample(model, weighted_sum_loss(7, batch_of(4)), [rand(4, 3, 11)])


def test_shared_layer_called_twice_adds_up():
    td.manual_seed(7)
    lin = nn.Linear(3, 3)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(self.lin(x).tanh())
    check_per_sample(Twice(), weighted_sum_loss(8, batch_of(4)), [rand(4, 3)])


class StandInMHA(nn.Module):
    """PyTorch's MultiheadAttention parameter layout; its forward is the per-sample rule's."""

    def __init__(self, embed_dim, num_heads, batch_first=True, kdim=None, vdim=None):
        super().__init__()
        self.embed_dim, self.num_heads, self.batch_first, self.dropout = embed_dim, num_heads, batch_first, 0.0
        kdim, vdim = kdim or embed_dim, vdim or embed_dim
        self._qkv_same_embed_dim = kdim == embed_dim and vdim == embed_dim
        rs = np.random.default_rng(0)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(rs.normal(0, 0.3, (3 * embed_dim, embed_dim)).astype(np.float32))
        else:
            self.q_proj_weight = nn.Parameter(rs.normal(0, 0.3, (embed_dim, embed_dim)).astype(np.float32))
            self.k_proj_weight = nn.Parameter(rs.normal(0, 0.3, (embed_dim, kdim)).astype(np.float32))
            self.v_proj_weight = nn.Parameter(rs.normal(0, 0.3, (embed_dim, vdim)).astype(np.float32))
        self.in_proj_bias = nn.Parameter(rs.normal(0, 0.1, 3 * embed_dim).astype(np.float32))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False

    def forward(self, *args, **kwargs):
        raise AssertionError("GradSampler replaces this forward")


register_grad_sampler(StandInMHA, _mha_forward)


def _torch_mha(ours):
    kdim = None if ours._qkv_same_embed_dim else ours.k_proj_weight.shape[1]
    vdim = None if ours._qkv_same_embed_dim else ours.v_proj_weight.shape[1]
    theirs = torch.nn.MultiheadAttention(ours.embed_dim, ours.num_heads, batch_first=ours.batch_first,
                                         kdim=kdim, vdim=vdim)
    sd = {k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(sd)
    return theirs


@needs_torch
@pytest.mark.parametrize("cross", [False, True])
def test_multihead_attention_projections_match_torch(cross):
    """Our rule's forward equals PyTorch's MultiheadAttention, and its per-sample gradients equal a
    per-sample loop of PyTorch's backward (same weights)."""
    e, h, n, L, S = 8, 2, 3, 4, 5
    rs = np.random.default_rng(1)
    if cross:  # cross-attention, separate projection weights, sequence-first layout
        ours = StandInMHA(e, h, batch_first=False, kdim=6, vdim=5)
        q = rs.standard_normal((L, n, e)).astype(np.float32)
        k = rs.standard_normal((S, n, 6)).astype(np.float32)
        v = rs.standard_normal((S, n, 5)).astype(np.float32)
        kwargs = dict(key_padding_mask=np.array([[False] * S, [False] * 3 + [True] * 2, [True] + [False] * 4]))
        out_shape, batch_dim = (L, n, e), 1
    else:  # self-attention with a causal mask
        ours = StandInMHA(e, h)
        q = k = v = rs.standard_normal((n, L, e)).astype(np.float32)
        kwargs = dict(attn_mask=np.triu(np.ones((L, L), dtype=bool), 1))
        out_shape, batch_dim = (n, L, e), 0
    theirs = _torch_mha(ours)
    w = rs.standard_normal(out_shape).astype(np.float32)

    with GradSampler(ours) as sampler:
        out, weights = ours(td.tensor(q), td.tensor(k), td.tensor(v), **{a: td.tensor(b) for a, b in kwargs.items()})
        (out * td.tensor(w)).sum().backward()
        got = sampler.grad_samples()
    t_out, t_weights = theirs(*(torch.from_numpy(a) for a in (q, k, v)),
                              **{a: torch.from_numpy(b) for a, b in kwargs.items()})
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(weights.numpy(), t_weights.detach().numpy(), atol=1e-6, rtol=1e-4)

    ref = {name: [] for name, _ in theirs.named_parameters()}
    for i in range(n):
        theirs.zero_grad()
        pick = [slice(None)] * 3
        pick[batch_dim] = slice(i, i + 1)
        sample = [torch.from_numpy(np.ascontiguousarray(a[tuple(pick)])) for a in (q, k, v)]
        kw = {a: torch.from_numpy(b[i:i + 1]) for a, b in kwargs.items() if a == "key_padding_mask"}
        kw.update({a: torch.from_numpy(b) for a, b in kwargs.items() if a == "attn_mask"})
        o, _ = theirs(*sample, **kw)
        (o * torch.from_numpy(np.ascontiguousarray(w[tuple(pick)]))).sum().backward()
        for name, p in theirs.named_parameters():
            ref[name].append(p.grad.numpy().copy())
    assert set(got) == set(ref)
    for name in ref:
        np.testing.assert_allclose(got[name], np.stack(ref[name]), atol=1e-5, rtol=1e-4, err_msg=name)


@pytest.mark.skipif(not hasattr(nn, "MultiheadAttention"), reason="tidu.nn.MultiheadAttention has not landed yet")
def test_tidu_multihead_attention_forward_is_unchanged():
    td.manual_seed(8)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = rand(3, 4, 8)
    mask = td.tensor(np.triu(np.ones((4, 4), dtype=bool), 1))
    with td.no_grad():
        expected = mha(x, x, x, attn_mask=mask)[0].numpy()
    with GradSampler(mha) as sampler:
        out = mha(x, x, x, attn_mask=mask)[0]
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-5, rtol=1e-4)
        (out * out).sum().backward()
        assert sampler.grad_samples()["in_proj_weight"].shape == (3, 24, 8)


def test_unsupported_layers_are_named():
    with pytest.raises(ValueError, match=r"not known for Bilinear at '1'.*supported layers: .*Linear"):
        GradSampler(nn.Sequential(nn.Linear(2, 2), nn.Bilinear(2, 2, 2)))
    with pytest.raises(ValueError, match="BatchNorm1d mixes the samples of a batch.*GroupNorm or LayerNorm"):
        GradSampler(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)))

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(td.ones(2))
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x) * self.scale
    with pytest.raises(ValueError, match=r"not known for Scaled, which has trainable parameters \['scale'\]"):
        GradSampler(Scaled())
    frozen = Scaled()
    frozen.scale.requires_grad_(False)
    GradSampler(frozen).remove()  # a frozen parameter needs no per-sample gradient
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="need a leading batch dimension"):
        with GradSampler(model):
            model(rand(3)).sum().backward()


def test_remove_restores_the_model():
    model = nn.Linear(3, 2)
    sampler = GradSampler(model)
    sampler.remove()
    model(rand(4, 3)).sum().backward()
    assert sampler.grad_samples() == {} and not model._forward_hooks


# --- DP-SGD ---

def _data(n=64, f=5, seed=0):
    rs = np.random.default_rng(seed)
    X = rs.standard_normal((n, f)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    return X, y


def _mlp(seed):
    td.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))


def test_no_noise_and_huge_clip_is_plain_sgd():
    X, y = _data()
    plain, private = _mlp(0), _mlp(0)
    opt = td.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    dp = DPOptimizer(td.optim.SGD(private.parameters(), lr=0.1, momentum=0.9), GradSampler(private),
                     noise_multiplier=0.0, max_grad_norm=1e6, expected_batch_size=16, sample_rate=0.25)
    for step in range(4):
        xb, yb = td.tensor(X[16 * step:16 * step + 16]), td.tensor(y[16 * step:16 * step + 16])
        for model, o in ((plain, opt), (private, dp)):
            o.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            o.step()
    for (k, a), (_, b) in zip(plain.named_parameters(), private.named_parameters()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6, rtol=1e-5, err_msg=k)
    assert dp.accountant.steps == 4 and math.isinf(dp.epsilon(1e-5))  # no noise: no privacy


def test_clipping_and_noise():
    X, y = _data(8)
    model = _mlp(1)
    sampler = GradSampler(model)
    dp = DPOptimizer(td.optim.SGD(model.parameters(), lr=0.0), sampler, noise_multiplier=0.0, max_grad_norm=0.05,
                     expected_batch_size=10, sample_rate=0.1)
    ref = loop_grads(model, lambda m, xb, yb, i: F.cross_entropy(m(xb), yb), [td.tensor(X), td.tensor(y)])
    flat = np.concatenate([v.reshape(8, -1) for v in ref.values()], 1)
    factor = np.minimum(1, 0.05 / (np.linalg.norm(flat, axis=1) + 1e-6))
    dp.zero_grad()
    F.cross_entropy(model(td.tensor(X)), td.tensor(y)).backward()  # a mean: per-sample grads are scaled by N
    dp.step()
    np.testing.assert_allclose(dp.last_norms, np.linalg.norm(flat, axis=1), rtol=1e-4)
    for k, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), np.tensordot(factor, ref[k], 1) / 10, atol=1e-7, rtol=1e-4)
    # an empty batch: a step of noise alone, std σ·C / expected batch size
    dp.noise_multiplier = 2.0
    dp.zero_grad()
    dp.step()
    noise = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    assert abs(noise.std() - 2.0 * 0.05 / 10) < 0.25 * 0.01


def test_make_private_trains_and_counts_epsilon():
    X, y = _data(400, seed=1)
    model = _mlp(2)
    opt = td.optim.SGD(model.parameters(), lr=0.5)
    model, opt, loader = make_private(model, opt, DataLoader(TensorDataset(X, y), batch_size=40),
                                      noise_multiplier=0.8, max_grad_norm=1.0, seed=0)
    assert isinstance(opt, DPOptimizer) and opt.sample_rate == 0.1 and opt.expected_batch_size == 40
    sizes = []
    for _ in range(4):
        for xb, yb in loader:
            sizes.append(len(xb))
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    assert len(set(sizes)) > 3 and abs(np.mean(sizes) - 40) < 5  # Poisson: sizes vary around q·n
    with td.no_grad():
        acc = (model(td.tensor(X)).argmax(1).numpy() == y).mean()
    assert acc > 0.85
    expected = compute_epsilon(0.8, 0.1, 40, 1e-5)
    assert opt.accountant.steps == 40 and opt.epsilon(1e-5) == pytest.approx(expected)
    state = opt.state_dict()
    assert state["privacy"]["accountant"]["history"] == [[0.8, 0.1, 40]]
    opt.accountant.history = []
    opt.load_state_dict(state)
    assert opt.epsilon(1e-5) == pytest.approx(expected)
    sched = td.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # schedulers drive the wrapped optimizer
    sched.step()
    assert opt.original_optimizer.param_groups[0]["lr"] == 0.25


class Points(Dataset):  # map-style, no batch fetch: the loader collates sample by sample
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], int(self.y[i])


@pytest.mark.parametrize("dataset", ["tensor", "plain"])
def test_poisson_loader_yields_empty_batches(dataset):
    X, y = _data(30)
    ds = TensorDataset(X, y) if dataset == "tensor" else Points(X, y)
    model = _mlp(3)
    _, opt, loader = make_private(model, td.optim.SGD(model.parameters(), lr=0.1), DataLoader(ds, batch_size=1),
                                  noise_multiplier=1.0, seed=1)
    assert len(loader) == 30 and opt.sample_rate == pytest.approx(1 / 30)
    batches = [b for _ in range(3) for b in loader]
    empty = [b for b in batches if len(b[0]) == 0]
    assert empty, "with q = 1/30, about a third of the batches are empty"
    xb, yb = empty[0]
    assert xb.shape == (0, 5) and xb.dtype == np.float32 and yb.shape == (0,) and yb.dtype == np.int64
    before = model[0].weight.numpy().copy()
    opt.zero_grad()
    opt.step()  # no backward: a step of noise alone
    assert not np.allclose(model[0].weight.numpy(), before)


def test_target_epsilon_chooses_noise_and_guards_the_budget():
    X, y = _data(100)
    model = _mlp(4)
    _, opt, loader = make_private(model, td.optim.SGD(model.parameters(), lr=0.1), DataLoader(TensorDataset(X, y),
                                  batch_size=10), target_epsilon=3.0, target_delta=1e-5, epochs=2, seed=2)
    eps_planned = compute_epsilon(opt.noise_multiplier, 0.1, 20, 1e-5)
    assert 2.95 < eps_planned <= 3.0
    for _ in range(2):
        for xb, yb in loader:
            opt.zero_grad()
            if len(xb):
                F.cross_entropy(model(xb), yb).backward()
            opt.step()
    assert opt.accountant.steps == 20 and opt.epsilon() <= 3.0
    with pytest.raises(PrivacyBudgetExceeded, match=r"20 steps have used ε = 2\.9\d* \(δ = 1e-05\) and one more "
                                                    r"would use ε = 3\.\d+, past target_epsilon = 3"):
        opt.step()
    assert opt.accountant.steps == 20


def test_make_private_argument_errors():
    X, y = _data(20)
    model = _mlp(5)
    loader = DataLoader(TensorDataset(X, y), batch_size=5)
    opt = td.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="exactly one of noise_multiplier= and target_epsilon="):
        make_private(model, opt, loader)
    with pytest.raises(ValueError, match="needs epochs="):
        make_private(model, opt, loader, target_epsilon=1.0)
    with pytest.raises(ValueError, match="accountant must be one of"):
        make_private(model, opt, loader, noise_multiplier=1.0, accountant="gdp")
    with pytest.raises(ValueError, match="is not a parameter of the model"):
        make_private(model, td.optim.SGD([td.zeros(2, requires_grad=True)], lr=0.1), loader, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="max_grad_norm must be a positive number"):
        make_private(model, opt, loader, noise_multiplier=1.0, max_grad_norm=0)


# --- accounting ---

GRID = [(q, s, t) for q in (0.004, 0.02, 0.1) for s in (0.7, 1.1, 3.0) for t in (50, 2000)]
DELTAS = (1e-5, 1e-7)


def test_epsilon_matches_dp_accounting():
    for q, sigma, steps in GRID:
        ref = dp_accounting.rdp.RdpAccountant()
        ref.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
        for delta in DELTAS:
            assert compute_epsilon(sigma, q, steps, delta) == pytest.approx(ref.get_epsilon(delta), rel=1e-9)


def test_pld_matches_dp_accounting():
    q, sigma, steps, delta = 0.05, 2.0, 300, 1e-5
    ref = dp_accounting.pld.PLDAccountant()
    ref.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    ours = compute_epsilon(sigma, q, steps, delta, accountant="pld")
    assert ours == pytest.approx(ref.get_epsilon(delta), rel=1e-9)
    assert ours < compute_epsilon(sigma, q, steps, delta)  # PLD is the tighter analysis


@needs_opacus
def test_epsilon_within_two_percent_of_opacus():
    compared = 0
    for q, sigma, steps in GRID:
        acc = OpacusRDP()
        acc.history = [(sigma, q, steps)]
        for delta in DELTAS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Opacus warns when its best order is at the grid's edge
                theirs = acc.get_epsilon(delta)
            if 0.5 <= theirs <= 20:
                compared += 1
                assert compute_epsilon(sigma, q, steps, delta) == pytest.approx(theirs, rel=0.02), (q, sigma, steps)
    assert compared >= 10


def test_accountant_history_and_noise_search():
    acc = PrivacyAccountant()
    for _ in range(3):
        acc.step(1.0, 0.01)
    acc.step(2.0, 0.01, steps=5)
    assert acc.history == [[1.0, 0.01, 3], [2.0, 0.01, 5]] and acc.steps == 8
    ref = dp_accounting.rdp.RdpAccountant()
    ref.compose(dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.0)), 3)
    ref.compose(dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(2.0)), 5)
    assert acc.epsilon(1e-5) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-9)
    sigma = find_noise_multiplier(1.0, 1e-5, sample_rate=0.02, epochs=5)
    assert 0.99 <= compute_epsilon(sigma, 0.02, 250, 1e-5) <= 1.0
    with pytest.raises(ValueError, match="exactly one of steps= and epochs="):
        find_noise_multiplier(1.0, 1e-5, 0.02)
    with pytest.raises(ValueError, match="delta must lie in"):
        compute_epsilon(1.0, 0.01, 10, 0.0)
