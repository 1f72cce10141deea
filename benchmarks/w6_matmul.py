"""W6 — one float32 2048×2048 @ 2048×2048 matrix product: the machine's GEMM rate in GFLOP/s.

tidu's side is ``a @ b`` on tidu Tensors (NumPy's BLAS underneath), PyTorch's ``a @ b`` on torch
tensors (its own BLAS). Nothing requires grad. W5 reports its rate as a fraction of this one.
"""
import numpy as np

ID = "W6"
TITLE = "matmul 2048³ float32"
TARGET = None  # a reference, not a target


def make_spec(quick=False, seed=0):
    n = 256 if quick else 2048
    return {"n": n, "seed": seed, "flops": 2 * n ** 3,
            "timing": {"warmup": 1 if quick else 3, "samples": 3 if quick else 25, "inner": 1, "settle": 1,
                       "profile_steps": 20}}


class _Side:
    def __init__(self, spec, to_tensor):
        rs = np.random.default_rng(spec["seed"])
        n = spec["n"]
        self.a = to_tensor(rs.standard_normal((n, n), dtype=np.float32))
        self.b = to_tensor(rs.standard_normal((n, n), dtype=np.float32))

    def step(self):
        return self.a @ self.b

    def check(self):
        c = self.step()
        return {"checksum": float(np.asarray(c.numpy(), dtype=np.float64)[:8, :8].sum())}


def build(side, spec):
    if side == "tidu":
        import tidu as td
        return _Side(spec, td.from_numpy)
    import torch
    return _Side(spec, torch.from_numpy)


def summarize(spec, sides, others):
    gf = {s: spec["flops"] / r["median_s"] / 1e9 for s, r in sides.items()}
    best = {s: spec["flops"] / r["min_s"] / 1e9 for s, r in sides.items()}
    notes = [f"{spec['flops'] / 1e9:.1f} GFLOP per product; "
             + ", ".join(f"{s} {v:.1f} GFLOP/s (best sample {best[s]:.1f})" for s, v in gf.items())]
    if len(sides) == 2:
        a, b = (sides[s]["check"]["checksum"] for s in ("tidu", "torch"))
        notes.append(f"same product on both sides: {abs(a - b) <= 1e-3 * (1 + abs(b))}")
    return {"gflops": gf, "gflops_best": best, "notes": notes, "target_text": "— (reference)", "met": None}
