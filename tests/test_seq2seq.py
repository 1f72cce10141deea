"""The encoder-decoder transformer (tidu/nn/seq2seq.py) against PyTorch's, with the same weights loaded by name:
values and gradients (inputs and every parameter) for the decoder layer, the decoder and the whole
``Transformer``, with causal and padding masks, post- and pre-norm; and the decoding helpers (tidu/text/decoding.py)."""
import numpy as np
import pytest

import tidu as td
from helpers import needs_torch, torch
from tidu.nn.seq2seq import Transformer, TransformerDecoder, TransformerDecoderLayer
from tidu.text.decoding import beam_search, greedy_decode

rs = np.random.default_rng(0)


def arr(*shape):
    return rs.standard_normal(shape).astype(np.float32)


def load_from_torch(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def run_both(ours, theirs, inputs, kwargs, t_kwargs=None):
    """Forward both models on the same inputs, backward sum(out * w), compare outputs and all gradients."""
    t_kwargs = kwargs if t_kwargs is None else t_kwargs
    a = [td.tensor(x, requires_grad=True) for x in inputs]
    b = [torch.tensor(x, requires_grad=True) for x in inputs]
    out_a = ours(*a, **{k: td.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})
    out_b = theirs(*b, **{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in t_kwargs.items()})
    assert out_a.dtype == td.float32
    np.testing.assert_allclose(out_a.numpy(), out_b.detach().numpy(), rtol=1e-4, atol=2e-5)
    w = arr(*out_a.shape)
    (out_a * td.tensor(w)).sum().backward()
    (out_b * torch.from_numpy(w)).sum().backward()
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-3, atol=1e-4)
    grads_b = {k: p.grad for k, p in theirs.named_parameters()}
    for k, p in ours.named_parameters():
        assert grads_b[k] is not None, k
        np.testing.assert_allclose(p.grad.numpy(), grads_b[k].numpy(), rtol=1e-3, atol=1e-4, err_msg=k)
    return out_a


def lengths_mask(lengths, total):
    """Key padding mask: True at the padded positions."""
    return np.arange(total)[None, :] >= np.asarray(lengths)[:, None]


@needs_torch
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masks", ["none", "causal_float", "causal_bool", "causal_flag", "padding"])
def test_decoder_layer_parity(norm_first, batch_first, masks):
    kw = dict(d_model=12, nhead=3, dim_feedforward=20, dropout=0.0, batch_first=batch_first, norm_first=norm_first)
    torch.manual_seed(0)
    theirs = torch.nn.TransformerDecoderLayer(**kw)
    ours = TransformerDecoderLayer(**kw)
    load_from_torch(ours, theirs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    n, t, s = 3, 5, 7
    tgt, mem = (arr(n, t, 12), arr(n, s, 12)) if batch_first else (arr(t, n, 12), arr(s, n, 12))
    kwargs, t_kwargs = {}, None
    if masks == "causal_float":
        kwargs = {"tgt_mask": Transformer.generate_square_subsequent_mask(t).numpy()}
    elif masks == "causal_bool":
        kwargs = {"tgt_mask": np.triu(np.ones((t, t), bool), 1), "tgt_is_causal": True}
    elif masks == "causal_flag":  # tidu: the flag alone; PyTorch needs the mask spelled out
        kwargs = {"tgt_is_causal": True}
        t_kwargs = {"tgt_mask": np.triu(np.ones((t, t), bool), 1), "tgt_is_causal": True}
    elif masks == "padding":  # causal by flag, with target and memory padding
        kwargs = {"tgt_key_padding_mask": lengths_mask([5, 3, 4], t),
                  "memory_key_padding_mask": lengths_mask([7, 2, 5], s), "tgt_is_causal": True}
        t_kwargs = {**kwargs, "tgt_mask": np.triu(np.ones((t, t), bool), 1)}
    run_both(ours, theirs, [tgt, mem], kwargs, t_kwargs)


@needs_torch
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_parity_with_gelu_and_no_bias(norm_first):
    kw = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True, norm_first=norm_first,
              activation="gelu", bias=False)
    torch.manual_seed(1)
    theirs = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(**kw), num_layers=2,
                                         norm=torch.nn.LayerNorm(8, bias=False))
    ours = TransformerDecoder(TransformerDecoderLayer(**kw), num_layers=2, norm=td.nn.LayerNorm(8, bias=False))
    load_from_torch(ours, theirs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    run_both(ours, theirs, [arr(2, 4, 8), arr(2, 6, 8)],
             {"tgt_mask": Transformer.generate_square_subsequent_mask(4).numpy()})


@needs_torch
@pytest.mark.filterwarnings("ignore:enable_nested_tensor")  # PyTorch: its fast path is off with norm_first
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("padding", [False, True])
def test_transformer_parity(norm_first, batch_first, padding):
    kw = dict(d_model=16, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=24, dropout=0.0,
              batch_first=batch_first, norm_first=norm_first)
    torch.manual_seed(2)
    theirs = torch.nn.Transformer(**kw)
    ours = Transformer(**kw)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    load_from_torch(ours, theirs)
    n, s, t = 3, 6, 5
    src, tgt = (arr(n, s, 16), arr(n, t, 16)) if batch_first else (arr(s, n, 16), arr(t, n, 16))
    kwargs = {"tgt_mask": Transformer.generate_square_subsequent_mask(t).numpy()}
    if padding:
        src_pad = lengths_mask([6, 4, 2], s)
        kwargs.update(src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad,
                      tgt_key_padding_mask=lengths_mask([5, 5, 3], t))
        kwargs["tgt_mask"] = np.triu(np.ones((t, t), bool), 1)  # PyTorch wants mask kinds to agree
    theirs.train()  # no fast path (it zeroes padded positions in eval mode); dropout is 0 anyway
    run_both(ours, theirs, [src, tgt], kwargs)


def test_transformer_init_and_errors():
    td.manual_seed(0)
    model = Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16,
                        batch_first=True)
    w = model.decoder.layers[0].linear1.weight.numpy()
    bound = np.sqrt(6 / (8 + 16))  # Xavier-uniform, as PyTorch's _reset_parameters
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert set(model.state_dict()) >= {"encoder.norm.weight", "decoder.norm.bias",
                                       "decoder.layers.0.multihead_attn.in_proj_weight"}
    with pytest.raises(ValueError, match=r"Transformer: the batch sizes of src \(2, 3, 8\) and tgt \(3, 3, 8\)"):
        model(td.randn(2, 3, 8), td.randn(3, 3, 8))
    with pytest.raises(ValueError, match="must have d_model = 8 features"):
        model(td.randn(2, 3, 8), td.randn(2, 3, 6))
    with pytest.raises(ValueError, match="both be batched"):
        model(td.randn(2, 3, 8), td.randn(3, 8))
    with pytest.raises(ValueError, match="activation should be one of"):
        TransformerDecoderLayer(8, 2, activation="swish")
    m = Transformer.generate_square_subsequent_mask(4)
    assert m.dtype == td.float32 and m.shape == (4, 4)
    assert np.isneginf(m.numpy()[0, 1]) and m.numpy()[1, 1] == 0 and m.numpy()[3, 0] == 0


def test_causal_flag_equals_causal_mask_and_ignores_the_future():
    td.manual_seed(3)
    layer = TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    tgt, mem = td.randn(2, 5, 8), td.randn(2, 4, 8)
    pad = td.tensor(lengths_mask([5, 4], 5))
    a = layer(tgt, mem, tgt_is_causal=True, tgt_key_padding_mask=pad).numpy()
    b = layer(tgt, mem, tgt_mask=Transformer.generate_square_subsequent_mask(5), tgt_key_padding_mask=pad).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    changed = tgt.numpy().copy()
    changed[:, 3:] += 1.0  # a later target position must not change an earlier output
    c = layer(td.tensor(changed), mem, tgt_is_causal=True, tgt_key_padding_mask=pad).numpy()
    np.testing.assert_allclose(a[:, :3], c[:, :3], rtol=1e-5, atol=1e-6)


# --- decoding -------------------------------------------------------------------------------------------------

class TableModel:
    """A fake encoder-decoder whose next-token log-probabilities depend only on the last target token:
    ``table[src_row][last_token]`` — enough to check greedy and beam search by hand."""

    def __init__(self, tables):
        with np.errstate(divide="ignore"):  # log 0 = -inf: a token that never comes
            self.tables = np.log(np.asarray(tables, dtype=np.float64)).astype(np.float32)  # (N, V, V)

    def encode(self, src, src_key_padding_mask=None):
        return src  # (N, 1): the row of each example

    def decode(self, tgt, memory, memory_key_padding_mask=None):
        rows = memory.numpy()[:, 0].astype(int)
        last = tgt.numpy()[:, -1]
        logits = self.tables[rows, last]  # (N, V): for the last position only
        full = np.zeros(tgt.shape + (logits.shape[-1],), np.float32)
        full[:, -1] = logits
        return td.tensor(full)


BOS, EOS, A, B = 0, 1, 2, 3
# next-token probabilities of BOS, EOS, A, B (columns) after the token of each row
TABLE = [[0.0, 0.0, 0.6, 0.4],   # after BOS: A or B
         [0.0, 1.0, 0.0, 0.0],   # after EOS (unused)
         [0.0, 0.1, 0.0, 0.9],   # after A: mostly B
         [0.0, 1.0, 0.0, 0.0]]   # after B: EOS


def test_greedy_follows_the_argmax_and_stops_at_eos():
    model = TableModel([TABLE])
    out = greedy_decode(model, td.tensor(np.zeros((1, 1), np.int64)), bos_id=BOS, eos_id=EOS, max_len=6)
    assert out == [[A, B]]  # A (0.6) → B (0.9) → EOS
    # without an EOS in reach the output stops at max_len
    loop = [[0, 0, 1.0, 0], [0, 1, 0, 0], [0, 0, 1.0, 0], [0, 1, 0, 0]]
    out = greedy_decode(TableModel([TABLE, loop]), td.tensor(np.array([[0], [1]])), BOS, EOS, max_len=4)
    assert out == [[A, B], [A, A, A, A]]


def test_beam_search_finds_a_better_sequence_than_greedy():
    # greedy takes A (0.55) then EOS (0.4): 0.22 in all; B (0.45) then EOS (1.0) is more likely
    table = [[0.0, 0.0, 0.55, 0.45],
             [0.0, 1.0, 0.0, 0.0],
             [0.0, 0.4, 0.3, 0.3],   # after A: spread out
             [0.0, 1.0, 0.0, 0.0]]
    model = TableModel([table])
    src = td.tensor(np.zeros((1, 1), np.int64))
    assert greedy_decode(model, src, BOS, EOS, max_len=5) == [[A]]
    seqs, scores = beam_search(model, src, BOS, EOS, beam_size=2, max_len=5, length_penalty=0.0, return_scores=True)
    assert seqs == [[B]]
    assert scores[0] == pytest.approx(np.log(0.45), abs=1e-5)
    # beam size 1 is greedy
    assert beam_search(model, src, BOS, EOS, beam_size=1, max_len=5) == [[A]]


def test_beam_search_length_penalty_and_batch():
    # after BOS: EOS 0.4 (an empty output) or A 0.6; after A: EOS 0.6 or A 0.4
    table = [[0.0, 0.4, 0.6, 0.0],
             [0.0, 1.0, 0.0, 0.0],
             [0.0, 0.6, 0.4, 0.0],
             [0.0, 1.0, 0.0, 0.0]]
    model = TableModel([table, TABLE])
    src = td.tensor(np.array([[0], [1]]))
    # raw log-probabilities: empty output log 0.4 = -0.92 beats "A" log 0.36 = -1.02
    seqs, scores = beam_search(model, src, BOS, EOS, beam_size=3, max_len=6, length_penalty=0.0, return_scores=True)
    assert seqs == [[], [A, B]]
    # normalized by length (tokens + EOS): -0.92 / 1 against -1.02 / 2: "A" wins
    seqs, scores = beam_search(model, src, BOS, EOS, beam_size=3, max_len=6, length_penalty=1.0, return_scores=True)
    assert seqs == [[A], [A, B]]
    assert scores[0] == pytest.approx(np.log(0.36) / 2, abs=1e-5)
    assert scores[1] == pytest.approx(np.log(0.54) / 3, abs=1e-5)


def test_decoding_argument_errors():
    model = TableModel([TABLE])
    src = td.tensor(np.zeros((1, 1), np.int64))
    with pytest.raises(ValueError, match="beam_search: beam_size must be at least 1, got 0"):
        beam_search(model, src, BOS, EOS, beam_size=0)
    with pytest.raises(ValueError, match="greedy_decode: max_len must be at least 1, got 0"):
        greedy_decode(model, src, BOS, EOS, max_len=0)
    with pytest.raises(TypeError, match="needs a model with encode"):
        greedy_decode(object(), src, BOS, EOS)


@needs_torch
@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
def test_transformer_parity_unbatched():
    kw = dict(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16, dropout=0.0)
    torch.manual_seed(4)
    theirs = torch.nn.Transformer(**kw)
    ours = Transformer(**kw)
    load_from_torch(ours, theirs)
    out = run_both(ours, theirs, [arr(6, 8), arr(4, 8)],
                   {"tgt_mask": Transformer.generate_square_subsequent_mask(4).numpy()})
    assert out.shape == (4, 8)
