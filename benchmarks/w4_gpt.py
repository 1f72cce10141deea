"""W4 — a character-level GPT: vocab 65, context 128, 4 layers, 4 heads, d_model 256, MLP 4× GELU,
pre-LayerNorm, learned positions, causal attention, AdamW lr 3e-4, batch 16.

Both sides build the same model under the same parameter names (GPT-2's: ``wte``, ``wpe``,
``h.N.ln_1``, ``h.N.attn.c_attn`` …, ``lm_head`` tied to ``wte``), load the same initial weights
(GPT-2's initialization, drawn once with NumPy) and train on the same batches of token ids. PyTorch
runs its fused ``F.scaled_dot_product_attention`` (causal), tidu its own.

FLOPs per step count 2·m·n·k per matrix product, forward and backward (3× the forward): the
linear layers and the output layer, 2·T·d per token and layer for q kᵀ and as much for P v (the
full T×T product, as both sides compute it). Elementwise work (norms, GELU, softmax, the update)
and the embedding lookups are not counted.
"""
import numpy as np

ID = "W4"
TITLE = "GPT char-level, 4×256, ctx 128, batch 16, AdamW"
TARGET = 1.0  # issue 5: at most 1.0× PyTorch's step time
CONFIG = {"vocab_size": 65, "block_size": 128, "n_layer": 4, "n_head": 4, "d_model": 256}


def step_flops(c, batch):
    d, t, layers = c["d_model"], c["block_size"], c["n_layer"]
    per_token = 2 * (layers * 12 * d * d + c["vocab_size"] * d) + layers * 4 * t * d
    return 3 * per_token * batch * t


def initial_weights(c, seed):
    """GPT-2's initialization as a state_dict: N(0, 0.02²) weights (residual projections scaled by
    1/√(2·layers)), zero biases, unit LayerNorm weights; the output layer is tied to ``wte``."""
    rs = np.random.default_rng(seed)
    d, v, t, n = c["d_model"], c["vocab_size"], c["block_size"], c["n_layer"]
    normal = lambda shape, std=0.02: (rs.standard_normal(shape, dtype=np.float32) * np.float32(std))
    sd = {"wte.weight": normal((v, d)), "wpe.weight": normal((t, d))}
    for i in range(n):
        p = f"h.{i}."
        sd.update({p + "ln_1.weight": np.ones(d, np.float32), p + "ln_1.bias": np.zeros(d, np.float32),
                   p + "attn.c_attn.weight": normal((3 * d, d)), p + "attn.c_attn.bias": np.zeros(3 * d, np.float32),
                   p + "attn.c_proj.weight": normal((d, d), 0.02 / np.sqrt(2 * n)),
                   p + "attn.c_proj.bias": np.zeros(d, np.float32),
                   p + "ln_2.weight": np.ones(d, np.float32), p + "ln_2.bias": np.zeros(d, np.float32),
                   p + "mlp.c_fc.weight": normal((4 * d, d)), p + "mlp.c_fc.bias": np.zeros(4 * d, np.float32),
                   p + "mlp.c_proj.weight": normal((d, 4 * d), 0.02 / np.sqrt(2 * n)),
                   p + "mlp.c_proj.bias": np.zeros(d, np.float32)})
    sd.update({"ln_f.weight": np.ones(d, np.float32), "ln_f.bias": np.zeros(d, np.float32)})
    sd["lm_head.weight"] = sd["wte.weight"]
    return sd


def make_spec(quick=False, seed=0):
    c = dict(CONFIG, block_size=16, n_layer=2, d_model=64) if quick else dict(CONFIG)
    batch = 4 if quick else 16
    return {"config": c, "batch": batch, "lr": 3e-4, "seed": seed, "check_steps": 2 if quick else 10,
            "flops": step_flops(c, batch), "tokens": batch * c["block_size"],
            "timing": {"warmup": 1 if quick else 3, "samples": 3 if quick else 10, "inner": 1 if quick else 2,
                       "settle": 0 if quick else 1, "profile_steps": 2 if quick else 10}}


def batches(spec, n=8):
    """``n`` (input, target) pairs of token ids: random windows of one random sequence, targets shifted by one."""
    rs = np.random.default_rng(spec["seed"] + 1)
    c, b = spec["config"], spec["batch"]
    t = c["block_size"]
    data = rs.integers(0, c["vocab_size"], size=20 * t * b, dtype=np.int64)
    out = []
    for _ in range(n):
        start = rs.integers(0, len(data) - t - 1, size=b)
        x = np.stack([data[s:s + t] for s in start])
        y = np.stack([data[s + 1:s + t + 1] for s in start])
        out.append((x, y))
    return out


def torch_gpt(c):
    """The same GPT from torch.nn modules, with tidu's parameter names."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(c["d_model"], 3 * c["d_model"])
            self.c_proj = nn.Linear(c["d_model"], c["d_model"])

        def forward(self, x):
            n, t, d = x.shape
            h = c["n_head"]
            q, k, v = (y.view(n, t, h, d // h).transpose(1, 2) for y in self.c_attn(x).split(d, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(n, t, d))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(c["d_model"], 4 * c["d_model"])
            self.c_proj = nn.Linear(4 * c["d_model"], c["d_model"])

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(c["d_model"]), Attention()
            self.ln_2, self.mlp = nn.LayerNorm(c["d_model"]), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(c["vocab_size"], c["d_model"])
            self.wpe = nn.Embedding(c["block_size"], c["d_model"])
            self.h = nn.ModuleList([Block() for _ in range(c["n_layer"])])
            self.ln_f = nn.LayerNorm(c["d_model"])
            self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)
            self.lm_head.weight = self.wte.weight

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return logits, F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    return GPT()


class _Side:
    def __init__(self, spec, model, optim, to_tensor):
        self.spec, self.model, self.optim, self.T = spec, model, optim, to_tensor
        self.data = [(to_tensor(x), to_tensor(y)) for x, y in batches(spec)]
        self.i = 0
        self.reset()

    def reset(self):
        sd = initial_weights(self.spec["config"], self.spec["seed"])
        self.model.load_state_dict({k: self.T(v.copy()) for k, v in sd.items()})
        self.opt = self.optim.AdamW(self.model.parameters(), lr=self.spec["lr"])

    def train_step(self, x, y):
        _, loss = self.model(x, y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def step(self):
        x, y = self.data[self.i]
        self.i = (self.i + 1) % len(self.data)
        return self.train_step(x, y)

    def check(self):
        """Train ``check_steps`` steps from the shared weights on the shared batches: the losses."""
        self.reset()
        losses = [self.train_step(*self.data[i % len(self.data)]).item() for i in range(self.spec["check_steps"])]
        self.i = 0
        return {"first_loss": losses[0], "last_loss": losses[-1], "steps": len(losses)}


def build(side, spec):
    c = spec["config"]
    if side == "tidu":
        import tidu as td
        from tidu.nn.gpt import GPT, GPTConfig
        model = GPT(GPTConfig(**c, dropout=0.0, bias=True, tie_weights=True))
        return _Side(spec, model, td.optim, td.from_numpy)
    import torch
    return _Side(spec, torch_gpt(c), torch.optim, torch.from_numpy)


def summarize(spec, sides, others):
    gf = {s: spec["flops"] / r["median_s"] / 1e9 for s, r in sides.items()}
    tps = {s: spec["tokens"] / r["median_s"] for s, r in sides.items()}
    notes = [f"{spec['flops'] / 1e9:.1f} GFLOP per step of {spec['tokens']} tokens; "
             + ", ".join(f"{s} {tps[s]:,.0f} tokens/s, {gf[s]:.1f} GFLOP/s" for s in sides)]
    notes += [f"{s}: loss {r['check']['first_loss']:.4f} → {r['check']['last_loss']:.4f} over "
              f"{r['check']['steps']} steps from the shared weights" for s, r in sides.items()]
    w6 = others.get("W6")
    if w6 is not None:
        notes.append("fraction of the same side's W6 GFLOP/s: "
                     + ", ".join(f"{s} {gf[s] / w6['gflops'][s]:.0%}" for s in gf if s in w6["gflops"]))
    out = {"gflops": gf, "tokens_per_s": tps, "notes": notes, "target_text": f"≤ {TARGET}× and same losses"}
    if "torch" in sides:
        a, b = sides["tidu"]["check"], sides["torch"]["check"]
        same = abs(a["last_loss"] - b["last_loss"]) <= 1e-3 * max(1.0, abs(b["last_loss"]))
        out["met"] = sides["tidu"]["median_s"] / sides["torch"]["median_s"] <= TARGET and same
    return out
