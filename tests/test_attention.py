"""Attention and transformer blocks: SDPA (every mask kind, both code paths), MultiheadAttention,
the encoder layer, RMSNorm, position encodings, activation checkpointing, tokenizers.

Each op gets a float64 finite-difference gradcheck and PyTorch parity (values and gradients, float32).
"""
import tracemalloc

import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
import tidu.ops.attention as A
from helpers import check, gradcheck_op, needs_torch, torch

rs = np.random.default_rng(0)


def arr(*shape, scale=1.0):
    return (rs.standard_normal(shape) * scale).astype(np.float32)


def split_in_two(n_lead, n_scores):
    return [slice(0, n_lead // 2), slice(n_lead // 2, n_lead)] if n_lead >= 2 else None


@pytest.fixture(params=["whole", "parallel"])
def path(request, monkeypatch):
    """Run each SDPA case through both code paths: one piece, and the batch split over two threads."""
    if request.param == "parallel":
        monkeypatch.setattr(A, "_parts", split_in_two)
    else:
        monkeypatch.setattr(A, "MIN_PARALLEL_SCORES", 1 << 62)
    return request.param


def tsdpa(*args, **kw):
    return torch.nn.functional.scaled_dot_product_attention(*args, **kw)


# --- scaled_dot_product_attention -----------------------------------------------------------------

MASKS = {
    "none": lambda: {},
    "causal": lambda: {"is_causal": True},
    "bool": lambda: {"attn_mask": rs.random((5, 6)) > 0.3},
    "bool_batched": lambda: {"attn_mask": rs.random((2, 1, 5, 6)) > 0.4},
    "float": lambda: {"attn_mask": arr(5, 6)},
    "float_heads": lambda: {"attn_mask": arr(3, 5, 6)},
    "scale": lambda: {"scale": 0.3},
}


@needs_torch
@pytest.mark.parametrize("kind", list(MASKS))
def test_sdpa_parity(kind, path):
    kw = MASKS[kind]()
    mask = kw.pop("attn_mask", None)
    n_q = 6 if kind == "causal" else 5  # causal also with L != S below
    for lq in {n_q, 5}:
        if mask is not None:
            kw["attn_mask"] = td.tensor(mask)
        tkw = dict(kw, attn_mask=torch.from_numpy(mask)) if mask is not None else kw
        check(lambda q, k, v: td.scaled_dot_product_attention(q, k, v, **kw),
              torch_fn=lambda q, k, v: tsdpa(q, k, v, **tkw),
              inputs=[arr(2, 3, lq, 4), arr(2, 3, 6, 4), arr(2, 3, 6, 7)])


@needs_torch
def test_sdpa_broadcast_batch_and_unbatched(path):
    check(lambda q, k, v: td.scaled_dot_product_attention(q, k, v),
          torch_fn=lambda q, k, v: tsdpa(q, k, v), inputs=[arr(2, 3, 5, 4), arr(1, 3, 6, 4), arr(1, 3, 6, 4)])
    check(lambda q, k, v: td.scaled_dot_product_attention(q, k, v, is_causal=True),
          torch_fn=lambda q, k, v: tsdpa(q, k, v, is_causal=True), inputs=[arr(5, 4), arr(5, 4), arr(5, 3)])


@needs_torch
def test_sdpa_float_mask_gets_a_gradient():
    m = arr(2, 1, 5, 6)
    check(lambda q, k, v, mask: td.scaled_dot_product_attention(q, k, v, attn_mask=mask),
          torch_fn=lambda q, k, v, mask: tsdpa(q, k, v, attn_mask=mask),
          inputs=[arr(2, 3, 5, 4), arr(2, 3, 6, 4), arr(2, 3, 6, 4), m])


@needs_torch
def test_sdpa_fully_masked_rows_give_zeros_as_pytorch(path):
    mask = rs.random((2, 3, 5, 6)) > 0.3
    mask[0, 1, 2] = False  # query 2 of head 1 may attend to nothing
    fmask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    for m in (mask, fmask):
        q, k, v = arr(2, 3, 5, 4), arr(2, 3, 6, 4), arr(2, 3, 6, 4)
        ours = [td.tensor(a, requires_grad=True) for a in (q, k, v)]
        out = td.scaled_dot_product_attention(*ours, attn_mask=td.tensor(m))
        out.sum().backward()
        assert np.isfinite(out.numpy()).all() and not out.numpy()[0, 1, 2].any()
        assert np.isfinite(ours[0].grad.numpy()).all() and not ours[0].grad.numpy()[0, 1, 2].any()
        theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        ref = tsdpa(*theirs, attn_mask=torch.from_numpy(m))
        ref.sum().backward()
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=1e-5)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["none", "causal", "bool", "float"])
def test_sdpa_gradcheck_float64(kind, path):
    kw = MASKS[kind]()
    if "attn_mask" in kw:
        kw["attn_mask"] = td.tensor(kw["attn_mask"].astype(np.float64) if kind == "float" else kw["attn_mask"])
    gradcheck_op(lambda q, k, v: td.scaled_dot_product_attention(q, k, v, **kw),
                 [arr(2, 3, 5, 4).astype(np.float64), arr(2, 3, 6, 4).astype(np.float64),
                  arr(2, 3, 6, 3).astype(np.float64)])


def test_sdpa_dropout_gradcheck_and_statistics(path):
    def fn(q, k, v):
        td.manual_seed(3)  # the same dropout mask at every evaluation
        return td.scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True)
    gradcheck_op(fn, [arr(2, 2, 4, 3).astype(np.float64) for _ in range(3)])
    # inverted dropout keeps the expectation: averaging many draws approaches the undropped output
    q, k, v = td.tensor(arr(2, 2, 8, 4)), td.tensor(arr(2, 2, 8, 4)), td.tensor(np.eye(8, 4, dtype=np.float32))
    exact = td.scaled_dot_product_attention(q, k, v).numpy()
    td.manual_seed(0)
    mean = np.mean([td.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy() for _ in range(400)], axis=0)
    assert np.abs(mean - exact).max() < 0.08
    assert not np.allclose(td.scaled_dot_product_attention(q, k, v, dropout_p=0.5).numpy(), exact)


def test_sdpa_parallel_path_from_several_threads(monkeypatch):
    """Calls from user threads at once: the same answers, and BLAS keeps its thread count."""
    from concurrent.futures import ThreadPoolExecutor
    monkeypatch.setattr(A, "_parts", split_in_two)
    blas = td.backend.blas_controller()
    before = blas.get_num_threads() if blas is not None else None
    q, k, v = (td.tensor(arr(4, 2, 16, 8)) for _ in range(3))
    want = td.scaled_dot_product_attention(q, k, v, is_causal=True).numpy()
    with ThreadPoolExecutor(3) as ex:
        outs = list(ex.map(lambda _: td.scaled_dot_product_attention(q, k, v, is_causal=True).numpy(), range(12)))
    for out in outs:
        np.testing.assert_array_equal(out, want)
    if blas is not None:
        assert blas.get_num_threads() == before


def test_sdpa_long_input_is_stable():
    """T = 2048 with scores in the hundreds: no overflow, no NaN, and the float64 answer."""
    q, k, v = arr(1, 2, 2048, 16, scale=12.0), arr(1, 2, 2048, 16, scale=12.0), arr(1, 2, 2048, 16)
    out = td.scaled_dot_product_attention(td.tensor(q), td.tensor(k), td.tensor(v), is_causal=True).numpy()
    assert np.isfinite(out).all()
    s = (q[0, 0, -3:].astype(np.float64) @ k[0, 0].T.astype(np.float64)) / 4.0
    assert np.abs(s).max() > 300  # exp overflows float32 past 88 (and float64 past 709) without the max shift
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    ref = (p / p.sum(-1, keepdims=True)) @ v[0, 0].astype(np.float64)
    np.testing.assert_allclose(out[0, 0, -3:], ref, atol=1e-4)


def test_sdpa_keeps_float32_and_saves_no_copies():
    q = td.tensor(arr(2, 2, 5, 4), requires_grad=True)
    out = td.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert out.dtype == np.float32
    out.sum().backward()
    assert q.grad.dtype == np.float32


def test_sdpa_errors():
    q, k, v = td.randn(2, 3, 5, 4), td.randn(2, 3, 6, 4), td.randn(2, 3, 6, 4)
    f = td.scaled_dot_product_attention
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 6\) does not broadcast .*\(2, 3, 5, 6\)"):
        f(q, k, v, attn_mask=td.ones(4, 6).bool())
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        f(q, k, v, attn_mask=td.ones(5, 6).bool(), is_causal=True)
    with pytest.raises(ValueError, match=r"query of shape \(2, 3, 5, 4\) and key of shape \(2, 3, 6, 3\)"):
        f(q, td.randn(2, 3, 6, 3), v)
    with pytest.raises(ValueError, match=r"key of shape \(2, 3, 6, 4\) and value of shape \(2, 3, 7, 4\)"):
        f(q, k, td.randn(2, 3, 7, 4))
    with pytest.raises(ValueError, match="batch dimensions .* do not broadcast"):
        f(q, td.randn(3, 3, 6, 4), td.randn(3, 3, 6, 4))
    with pytest.raises(TypeError, match="attn_mask must be bool .* or float"):
        f(q, k, v, attn_mask=td.ones(5, 6).long())
    with pytest.raises(TypeError, match="one dtype"):
        f(q, k.double(), v)
    with pytest.raises(ValueError, match="dropout_p must lie in"):
        f(q, k, v, dropout_p=1.0)


# --- rms_norm, rotary --------------------------------------------------------------------------------

@needs_torch
def test_rms_norm():
    check(lambda x, w: td.rms_norm(x, (4,), w, eps=1e-6),
          torch_fn=lambda x, w: torch.nn.functional.rms_norm(x, (4,), w, eps=1e-6), shapes=[(3, 5, 4), (4,)])
    check(lambda x: td.rms_norm(x, (5, 4)), torch_fn=lambda x: torch.nn.functional.rms_norm(x, (5, 4)),
          shapes=[(3, 5, 4)])
    with pytest.raises(ValueError, match=r"does not end with normalized_shape \(3,\)"):
        td.rms_norm(td.randn(2, 4), 3)


@needs_torch
def test_rmsnorm_module_matches_pytorch():
    x = arr(3, 6)
    ours, theirs = nn.RMSNorm(6), torch.nn.RMSNorm(6)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(arr(6)))
    ours.load_state_dict(theirs.state_dict())
    np.testing.assert_allclose(ours(td.tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    assert nn.RMSNorm(6, elementwise_affine=False).weight is None


def test_apply_rotary_emb_gradcheck_and_norm():
    ang = rs.random((5, 2))
    cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))
    gradcheck_op(lambda x: td.apply_rotary_emb(x, cos, sin), [arr(2, 3, 5, 4).astype(np.float64)])
    x = td.tensor(arr(2, 5, 4))
    y = td.apply_rotary_emb(x, cos.astype(np.float32), sin.astype(np.float32))
    np.testing.assert_allclose(np.linalg.norm(y.numpy(), axis=-1), np.linalg.norm(x.numpy(), axis=-1), rtol=1e-5)
    with pytest.raises(ValueError, match="must be even"):
        td.apply_rotary_emb(td.randn(2, 3), cos[:, :3], sin[:, :3])


def test_rotary_scores_depend_only_on_relative_position():
    rope = nn.RotaryEmbedding(8, max_len=64)
    q, k = td.tensor(arr(1, 8)), td.tensor(arr(1, 8))

    def score(m, n):  # <rope(q) at position m, rope(k) at position n>
        return (rope(q, offset=m) * rope(k, offset=n)).sum().item()
    assert score(3, 1) == pytest.approx(score(12, 10), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    # the Hugging Face LLaMA layout: rotate_half([x1, x2]) = [-x2, x1], angle p / base^(2i/d)
    x = arr(1, 8)
    theta = 5 * 10000.0 ** (-np.arange(0, 8, 2) / 8)
    c, s = np.cos(np.concatenate([theta, theta])), np.sin(np.concatenate([theta, theta]))
    ref = x * c + np.concatenate([-x[:, 4:], x[:, :4]], 1) * s
    np.testing.assert_allclose(rope(td.tensor(x), offset=5).numpy(), ref, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit the position table of max_len 64"):
        rope(td.randn(1, 10, 8), offset=60)


def test_position_encodings():
    pe = nn.SinusoidalPositionalEncoding(6, max_len=20)
    out = pe(td.zeros(2, 4, 6), offset=3).numpy()
    pos = np.arange(3, 7)[:, None]
    freq = 10000.0 ** (-np.arange(0, 6, 2) / 6)
    np.testing.assert_allclose(out[0, :, 0::2], np.sin(pos * freq), atol=1e-6)
    np.testing.assert_allclose(out[1, :, 1::2], np.cos(pos * freq), atol=1e-6)
    assert list(pe.state_dict()) == []
    seq_first = nn.SinusoidalPositionalEncoding(6, max_len=20, batch_first=False)(td.zeros(4, 2, 6)).numpy()
    np.testing.assert_allclose(seq_first[:, 1], nn.SinusoidalPositionalEncoding(6, 20)(td.zeros(4, 6)).numpy())
    learned = nn.LearnedPositionalEmbedding(10, 6)
    x = td.zeros(2, 3, 6, requires_grad=True)
    y = learned(x, offset=2)
    np.testing.assert_allclose(y.numpy()[1], learned.weight.numpy()[2:5])
    y.sum().backward()
    assert learned.weight.grad.numpy()[2:5].sum() == pytest.approx(2 * 3 * 6)
    assert not learned.weight.grad.numpy()[[0, 1, 5]].any()
    with pytest.raises(ValueError, match=r"positions 8..10 .* max_len 10"):
        learned(td.zeros(1, 3, 6), offset=8)


# --- MultiheadAttention --------------------------------------------------------------------------------

def _pair_mha(embed, heads, **kw):
    theirs = torch.nn.MultiheadAttention(embed, heads, **kw)
    ours = nn.MultiheadAttention(embed, heads, **kw)
    sd = {k: v.detach().clone() for k, v in theirs.state_dict().items()}
    for k in sd:
        if k.endswith("bias"):  # PyTorch initializes them to zero: make them count
            sd[k] = torch.from_numpy(arr(*sd[k].shape, scale=0.1))
    theirs.load_state_dict(sd)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _compare(ours_out, theirs_out, ours_params, theirs_params, inputs, atol=2e-5):
    o, t = ours_out, theirs_out
    np.testing.assert_allclose(o.numpy(), t.detach().numpy(), atol=atol, rtol=1e-4)
    v = arr(*o.shape)
    (o * td.tensor(v)).sum().backward()
    (t * torch.from_numpy(v)).sum().backward()
    for name, p in theirs_params:
        np.testing.assert_allclose(ours_params[name].grad.numpy(), p.grad.numpy(), atol=atol, rtol=1e-4,
                                   err_msg=f"gradient of {name}")
    for a, b in inputs:
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=atol, rtol=1e-4)


MHA_CASES = {
    "self": dict(),
    "need_weights_per_head": dict(average_attn_weights=False),
    "fast_path": dict(need_weights=False),
    "key_padding_bool": dict(key_padding_mask="bool"),
    "key_padding_float": dict(key_padding_mask="float", need_weights=False),
    "attn_mask_bool": dict(attn_mask="bool"),
    "attn_mask_3d_float": dict(attn_mask="float3d", need_weights=False),
    "both_masks": dict(attn_mask="bool", key_padding_mask="bool", need_weights=False),
    "causal": dict(is_causal=True, attn_mask="causal", need_weights=False),
    "cross_kdim_vdim": dict(cross=True),
}


@needs_torch
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multihead_attention_matches_pytorch(case, batch_first):
    kw = dict(MHA_CASES[case])
    cross = kw.pop("cross", False)
    n, lq, s, e, h = 3, 4, 5 if cross else 4, 8, 2
    extra = dict(kdim=6, vdim=5) if cross else {}
    ours, theirs = _pair_mha(e, h, batch_first=batch_first, **extra)
    shape = lambda length, dim: (n, length, dim) if batch_first else (length, n, dim)
    q = arr(*shape(lq, e))
    k, v = (arr(*shape(s, 6)), arr(*shape(s, 5))) if cross else (q, q)
    masks = {}
    kpm = kw.pop("key_padding_mask", None)
    if kpm:
        m = rs.random((n, s)) > 0.7
        m[:, 0] = False  # every query keeps one key
        masks["key_padding_mask"] = m if kpm == "bool" else np.where(m, -1e9, 0.0).astype(np.float32)
    am = kw.pop("attn_mask", None)
    if am == "bool":
        m = rs.random((lq, s)) > 0.7
        m[:, 0] = False
        masks["attn_mask"] = m
    elif am == "float3d":
        masks["attn_mask"] = arr(n * h, lq, s)
    elif am == "causal":
        masks["attn_mask"] = np.triu(np.ones((lq, s), dtype=bool), 1)
    tq = td.tensor(q, requires_grad=True)
    Tq = torch.tensor(q, requires_grad=True)
    tk, tv = (td.tensor(k, requires_grad=True), td.tensor(v, requires_grad=True)) if cross else (tq, tq)
    Tk, Tv = (torch.tensor(k, requires_grad=True), torch.tensor(v, requires_grad=True)) if cross else (Tq, Tq)
    o, w = ours(tq, tk, tv, **{a: td.tensor(b) for a, b in masks.items()}, **kw)
    t, tw = theirs(Tq, Tk, Tv, **{a: torch.from_numpy(b) for a, b in masks.items()}, **kw)
    if tw is None:
        assert w is None
    else:
        np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), atol=1e-5)
    inputs = [(tq, Tq)] + ([(tk, Tk), (tv, Tv)] if cross else [])
    _compare(o, t, dict(ours.named_parameters()), list(theirs.named_parameters()), inputs)


@needs_torch
def test_multihead_attention_unbatched_and_state_dict_names():
    ours, theirs = _pair_mha(8, 4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = arr(5, 8)
    o, w = ours(td.tensor(x), td.tensor(x), td.tensor(x))
    t, tw = theirs(*(torch.from_numpy(x),) * 3)
    np.testing.assert_allclose(o.numpy(), t.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), atol=1e-5)
    cross, tcross = _pair_mha(8, 2, kdim=3, vdim=4)
    assert list(cross.state_dict()) == list(tcross.state_dict())
    assert cross.in_proj_weight is None and cross.q_proj_weight.shape == (8, 8)


def test_multihead_attention_fully_masked_query_gives_zeros_not_nan():
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    x = td.randn(2, 3, 4)
    kpm = td.tensor([[False, False, False], [True, True, True]])
    for need in (True, False):
        out, _ = mha(x, x, x, key_padding_mask=kpm, need_weights=need)
        assert np.isfinite(out.numpy()).all()
        np.testing.assert_allclose(out.numpy()[1], np.broadcast_to(mha.out_proj.bias.numpy(), (3, 4)))


def test_multihead_attention_errors():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = td.randn(3, 4, 8)
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(3, 5\) .* expected \(3, 4\)"):
        mha(x, x, x, key_padding_mask=td.zeros(3, 5).bool())
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 5\) does not fit .* \(4, 4\) or \(6, 4, 4\)"):
        mha(x, x, x, attn_mask=td.zeros(4, 5).bool())
    with pytest.raises(ValueError, match=r"query of shape \(3, 4, 7\) should be \(N, L, E\) .* E = 8"):
        mha(td.randn(3, 4, 7), x, x)
    with pytest.raises(ValueError, match="different batch sizes"):
        mha(x, td.randn(2, 4, 8), td.randn(2, 4, 8))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(TypeError, match="key_padding_mask must be bool"):
        mha(x, x, x, key_padding_mask=td.zeros(3, 4).long())


# --- encoder layer -----------------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation,batch_first", [("relu", False), ("gelu", True)])
def test_encoder_layer_matches_pytorch(norm_first, activation, batch_first):
    kw = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, activation=activation, batch_first=batch_first,
              norm_first=norm_first)
    theirs = torch.nn.TransformerEncoderLayer(**kw)
    sd = {k: torch.from_numpy(arr(*v.shape, scale=0.3)) if v.ndim == 1 else v for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(sd)
    ours = nn.TransformerEncoderLayer(**kw)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = arr(3, 5, 8) if batch_first else arr(5, 3, 8)  # N = 3 sequences of length 5
    kpm = np.zeros((3, 5), dtype=bool)
    kpm[1, 3:] = True  # (N, S) in both layouts
    tx, Tx = td.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    o = ours(tx, src_key_padding_mask=td.tensor(kpm))
    theirs.train()  # PyTorch's inference fast path would be a different kernel; compare the reference path
    t = theirs(Tx, src_key_padding_mask=torch.from_numpy(kpm))
    _compare(o, t, dict(ours.named_parameters()), list(theirs.named_parameters()), [(tx, Tx)], atol=5e-5)


@needs_torch
def test_transformer_encoder_stack_matches_pytorch():
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    theirs = torch.nn.TransformerEncoder(layer, num_layers=2, norm=torch.nn.LayerNorm(8), enable_nested_tensor=False)
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 2,
                                 norm=nn.LayerNorm(8))
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    assert ours.layers[0].linear1.weight is not ours.layers[1].linear1.weight  # deep copies
    x = arr(2, 5, 8)
    mask = np.triu(np.ones((5, 5), dtype=bool), 1)
    o = ours(td.tensor(x), mask=td.tensor(mask))
    t = theirs(torch.from_numpy(x), mask=torch.from_numpy(mask))
    np.testing.assert_allclose(o.numpy(), t.detach().numpy(), atol=5e-5)


def test_encoder_layer_dropout_and_bad_activation():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, batch_first=True)
    x = td.randn(2, 4, 8)
    assert not np.allclose(layer(x).numpy(), layer(x).numpy())  # training: dropout
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())
    with pytest.raises(ValueError, match="activation should be one of"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")


# --- activation checkpointing ------------------------------------------------------------------------------

def _stack(n_layers=4, d=64):
    td.manual_seed(0)
    return nn.ModuleList([nn.DecoderBlock(d, 4, dropout=0.1) for _ in range(n_layers)])


def _run(blocks, x, use_checkpoint):
    from tidu.utils import checkpoint
    for b in blocks:
        x = checkpoint(b, x) if use_checkpoint else b(x)
    return x.square().mean()


def test_checkpoint_gives_the_same_gradients():
    blocks = _stack()
    grads, x0 = [], arr(2, 16, 64)
    for use in (False, True):
        x = td.tensor(x0, requires_grad=True)
        td.manual_seed(7)  # dropout inside: the recomputation must replay the same masks
        loss = _run(blocks, x, use)
        for p in blocks.parameters():
            p.grad = None
        loss.backward()
        grads.append([x.grad.numpy().copy()] + [p.grad.numpy().copy() for p in blocks.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_checkpoint_saves_memory():
    """tracemalloc peak of forward + backward on a 4-block stack: checkpointing keeps one block's activations."""
    blocks = _stack(4, 128)
    peaks = {}
    for use in (False, True):
        x = td.tensor(arr(4, 64, 128), requires_grad=True)
        tracemalloc.start()
        _run(blocks, x, use).backward()
        peaks[use] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[True] < 0.6 * peaks[False], peaks


def test_checkpoint_module_params_without_grad_inputs_and_errors():
    from tidu.utils import checkpoint, checkpoint_sequential
    lin = nn.Linear(3, 2)
    checkpoint(lin, td.randn(4, 3)).sum().backward()  # the input needs no grad, the module's parameters do
    assert lin.weight.grad is not None
    with td.no_grad():
        assert not checkpoint(lin, td.randn(4, 3)).requires_grad
    with pytest.raises(TypeError, match="must return one Tensor"):
        checkpoint(lambda x: (x, x), td.randn(2, requires_grad=True))
    seq = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)])
    x = td.randn(3, 4, requires_grad=True)
    seq(x).sum().backward()
    ref = [p.grad.numpy().copy() for p in seq.parameters()] + [x.grad.numpy().copy()]
    seq.zero_grad()
    x.grad = None
    checkpoint_sequential(seq, 2, x).sum().backward()
    for a, b in zip(ref, [p.grad.numpy() for p in seq.parameters()] + [x.grad.numpy()]):
        np.testing.assert_allclose(a, b, rtol=1e-5)


# --- tokenizers -------------------------------------------------------------------------------------------

def test_char_tokenizer(tmp_path):
    from tidu.text import CharTokenizer
    tok = CharTokenizer.from_text("To be, or not to be: that is the question. 梯度")
    ids = tok.encode("to be 梯度")
    assert tok.decode(ids) == "to be 梯度"
    assert tok.encode("question", as_array=True).dtype == np.int64
    tok.save(tmp_path / "tok.json")
    assert CharTokenizer.load(tmp_path / "tok.json").encode("to be") == tok.encode("to be")
    with pytest.raises(ValueError, match=r"character 'z' at position 3 is not in the vocabulary"):
        tok.encode("to z")
    with pytest.raises(ValueError, match=f"token id 99 is out of range for vocab_size {tok.vocab_size}"):
        tok.decode([1, 99])


def test_bpe_tokenizer(tmp_path):
    pytest.importorskip("tokenizers", reason="the `tokenizers` package (tidu[text]) is not installed")
    from tidu.text import BPETokenizer
    text = ["the quick brown fox jumps over the lazy dog"] * 50 + ["ünïcödé 梯度 text"]
    tok = BPETokenizer.train(text, vocab_size=300)
    ids = tok.encode("the lazy fox")
    assert len(ids) < len("the lazy fox")  # merges learned
    assert tok.decode(ids) == "the lazy fox"
    assert tok.decode(tok.encode("unseen ✓ chars")) == "unseen ✓ chars"  # byte level: nothing is unknown
    tok.save(tmp_path / "tokenizer.json")
    again = BPETokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode("the quick dog") == tok.encode("the quick dog") and again.vocab_size == tok.vocab_size


def test_mha_is_causal_with_only_a_key_padding_mask_stays_causal():
    """is_causal=True plus a key padding mask (no attn_mask): both apply, as an explicit causal mask would."""
    td.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = td.randn(2, 5, 8)
    pad = td.tensor(np.array([[False] * 5, [False] * 3 + [True] * 2]))
    causal = td.tensor(np.triu(np.ones((5, 5), dtype=bool), k=1))
    got, _ = mha(x, x, x, key_padding_mask=pad, is_causal=True, need_weights=False)
    want, _ = mha(x, x, x, key_padding_mask=pad, attn_mask=causal, need_weights=False)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
