"""W1 — the tutorial's linear regression: y = θ0 + θ1·x on X = [1..5], y = [2, 4, 5, 4, 5].

Two scalar parameters from 0, MSE, SGD lr 0.01, full batch. Five elements per tensor: this
measures nothing but the framework's per-op overhead (forward, backward, optimizer).
"""
from .harness import paired_ratio

ID = "W1"
TITLE = "tutorial linear regression"
TARGET = 0.5  # issue 2: at most 0.5× PyTorch's time per step

X = [1.0, 2.0, 3.0, 4.0, 5.0]
Y = [2.0, 4.0, 5.0, 4.0, 5.0]


def make_spec(quick=False):
    return {"lr": 0.01, "epochs": 20 if quick else 1000,
            "timing": {"warmup": 5 if quick else 200, "samples": 3 if quick else 30, "inner": 5 if quick else 500,
                       "settle": 1, "profile_steps": 2000}}


class _Tidu:
    def __init__(self, spec):
        import tidu as td
        import tidu.nn.functional as F
        self.td, self.F, self.lr, self.epochs = td, F, spec["lr"], spec["epochs"]
        self.x, self.y = td.tensor(X), td.tensor(Y)
        self.reset()

    def reset(self):
        td = self.td
        self.t0 = td.zeros((), requires_grad=True)
        self.t1 = td.zeros((), requires_grad=True)
        self.opt = td.optim.SGD([self.t0, self.t1], lr=self.lr)

    def step(self):
        loss = self.F.mse_loss(self.t0 + self.t1 * self.x, self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def check(self):
        self.reset()
        for _ in range(self.epochs):
            self.step()
        with self.td.no_grad():
            loss = self.F.mse_loss(self.t0 + self.t1 * self.x, self.y)
        return {"loss": loss.item(), "theta0": self.t0.item(), "theta1": self.t1.item()}


class _Torch:
    def __init__(self, spec):
        import torch
        import torch.nn.functional as F
        self.torch, self.F, self.lr, self.epochs = torch, F, spec["lr"], spec["epochs"]
        self.x, self.y = torch.tensor(X), torch.tensor(Y)
        self.reset()

    def reset(self):
        torch = self.torch
        self.t0 = torch.zeros((), requires_grad=True)
        self.t1 = torch.zeros((), requires_grad=True)
        self.opt = torch.optim.SGD([self.t0, self.t1], lr=self.lr)

    def step(self):
        loss = self.F.mse_loss(self.t0 + self.t1 * self.x, self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def check(self):
        self.reset()
        for _ in range(self.epochs):
            self.step()
        with self.torch.no_grad():
            loss = self.F.mse_loss(self.t0 + self.t1 * self.x, self.y)
        return {"loss": loss.item(), "theta0": self.t0.item(), "theta1": self.t1.item()}


def build(side, spec):
    """A runner: ``step()`` is one timed training step; ``check()`` trains from zero for the tutorial's
    epochs and returns the final loss and parameters (timing then continues from there)."""
    return _Tidu(spec) if side == "tidu" else _Torch(spec)


def summarize(spec, sides, others):
    notes = []
    for s, r in sides.items():
        c = r["check"]
        expected = " (expected ≈ 0.4807, 2.136, 0.618)" if spec["epochs"] == 1000 else ""
        notes.append(f"{s} after {spec['epochs']} steps: loss {c['loss']:.4f}, θ0 {c['theta0']:.4f}, "
                     f"θ1 {c['theta1']:.4f}{expected}")
    out = {"notes": notes, "target_text": f"≤ {TARGET}×"}
    if "torch" in sides:
        out["met"] = paired_ratio(sides) <= TARGET
    return out
