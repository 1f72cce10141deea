"""W5 — MLP 1024→4096→4096→1024 (ReLU), batch 512, MSE, plain SGD: GEMM-bound training.

FLOPs per step count 2·m·n·k per matrix product: 3 in the forward pass; in the backward pass the
weight gradient of every layer and the input gradient of every layer but the first (the input
does not require grad). Elementwise work (bias, ReLU, MSE, the update) is not counted.
"""
import numpy as np

from .harness import paired_ratio

ID = "W5"
TITLE = "MLP 1024-4096-4096-1024, batch 512, SGD"
TARGET = 0.7          # issue 2: at most 0.7× PyTorch's step time …
TARGET_FRACTION = 0.8  # … and at least 80% of W6's GFLOP/s


def gemm_flops(sizes, batch):
    layers = list(zip(sizes[:-1], sizes[1:]))
    fwd = sum(2 * batch * i * o for i, o in layers)
    grad_w = fwd
    grad_x = sum(2 * batch * i * o for i, o in layers[1:])
    return fwd + grad_w + grad_x


def make_spec(quick=False, seed=0):
    sizes, batch = ((64, 256, 256, 64), 32) if quick else ((1024, 4096, 4096, 1024), 512)
    return {"sizes": sizes, "batch": batch, "lr": 1e-3, "seed": seed, "flops": gemm_flops(sizes, batch),
            "timing": {"warmup": 1 if quick else 2, "samples": 3 if quick else 20, "inner": 1,
                       "settle": 0, "settle_s": 0.0, "profile_steps": 5}}


def arrays(spec):
    """Input, target and PyTorch-default-initialized weights, made with NumPy from the spec's seed
    in each worker (identical on both sides, and nothing large crosses the pipe)."""
    rs = np.random.default_rng(spec["seed"])
    sizes, batch = spec["sizes"], spec["batch"]
    x = rs.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rs.standard_normal((batch, sizes[-1]), dtype=np.float32)
    sd = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = np.float32(1.0 / np.sqrt(n_in))
        sd[f"{2 * i}.weight"] = (rs.random((n_out, n_in), dtype=np.float32) * 2 - 1) * bound
        sd[f"{2 * i}.bias"] = (rs.random((n_out,), dtype=np.float32) * 2 - 1) * bound
    return x, y, sd


class _Side:
    def __init__(self, spec, nn, F, optim, to_tensor):
        x, y, sd = arrays(spec)
        s = spec["sizes"]
        self.model = nn.Sequential(nn.Linear(s[0], s[1]), nn.ReLU(), nn.Linear(s[1], s[2]), nn.ReLU(),
                                   nn.Linear(s[2], s[3]))
        self.model.load_state_dict({k: to_tensor(v) for k, v in sd.items()})
        self.opt = optim.SGD(self.model.parameters(), lr=spec["lr"])
        self.x, self.y, self.F = to_tensor(x), to_tensor(y), F

    def step(self):
        loss = self.F.mse_loss(self.model(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def check(self):
        return {"loss": self.step().item()}


def build(side, spec):
    if side == "tidu":
        import tidu as td
        import tidu.nn as nn
        import tidu.nn.functional as F
        return _Side(spec, nn, F, td.optim, td.from_numpy)
    import torch
    return _Side(spec, torch.nn, torch.nn.functional, torch.optim, torch.from_numpy)


def summarize(spec, sides, others):
    gf = {s: spec["flops"] / r["median_s"] / 1e9 for s, r in sides.items()}
    best = {s: spec["flops"] / r["min_s"] / 1e9 for s, r in sides.items()}
    out = {"gflops": gf, "gflops_best": best, "target_text": f"≤ {TARGET}× and ≥ {TARGET_FRACTION:.0%} of W6"}
    notes = [f"{spec['flops'] / 1e9:.1f} GFLOP per step (8 GEMMs); "
             + ", ".join(f"{s} {v:.1f} GFLOP/s (best sample {best[s]:.1f})" for s, v in gf.items())]
    w6 = others.get("W6")
    if w6 is not None:
        frac = {s: gf[s] / w6["gflops"][s] for s in gf if s in w6["gflops"]}
        frac_best = {s: best[s] / w6["gflops_best"][s] for s in best if s in w6["gflops_best"]}
        out["fraction_of_w6"], out["fraction_of_w6_best"] = frac, frac_best
        notes.append("fraction of the same side's W6 GFLOP/s (medians; best samples): "
                     + ", ".join(f"{s} {v:.0%}; {frac_best[s]:.0%}" for s, v in frac.items()))
    else:
        frac = None
        notes.append("fraction of W6: not measured (run W6 in the same run, before W5)")
    if "torch" in sides:
        fast = paired_ratio(sides) <= TARGET
        out["met"] = False if not fast else None if frac is None else frac["tidu"] >= TARGET_FRACTION
    out["notes"] = notes
    return out
