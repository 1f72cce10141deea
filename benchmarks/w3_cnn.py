"""W3 — a small CNN on a 64×1×28×28 batch: convolution forward and backward.

conv3×3(1→32, pad 1) + ReLU, max-pool 2, conv3×3(32→64, pad 1) + ReLU, max-pool 2,
linear(3136→128) + ReLU, linear(128→10), cross-entropy, SGD momentum 0.9, lr 0.01.

The batch (MNIST-sized images drawn from U[0, 1), random labels) and PyTorch's default initial
weights are made with NumPy from the spec's seed in each worker, so both sides train the same model
on the same data. ``check()`` trains 10 steps from those weights and returns the losses: both
sides' must agree (to float32 rounding), which shows that they compute the same thing.
"""
import numpy as np

ID = "W3"
TITLE = "CNN 28×28 batch 64, SGD momentum"
TARGET = 1.2  # issue 4: at most 1.2× PyTorch's step time
CHECK_STEPS = 10


def make_spec(quick=False, seed=0):
    return {"batch": 4 if quick else 64, "seed": seed, "lr": 0.01, "momentum": 0.9,
            "timing": {"warmup": 1 if quick else 10, "samples": 3 if quick else 20, "inner": 1 if quick else 5,
                       "settle": 0 if quick else 1, "profile_steps": 100}}


def _uniform(rs, shape, fan_in):
    """PyTorch's default Conv2d / Linear initialization: U(±1/sqrt(fan_in))."""
    bound = np.float32(1.0 / np.sqrt(fan_in))
    return (rs.random(shape, dtype=np.float32) * 2 - 1) * bound


def arrays(spec):
    """The batch, its labels, and the initial weights as a ``Sequential`` state_dict."""
    rs = np.random.default_rng(spec["seed"])
    x = rs.random((spec["batch"], 1, 28, 28), dtype=np.float32)
    y = rs.integers(0, 10, spec["batch"]).astype(np.int64)
    sd = {}
    for i, shape in ((0, (32, 1, 3, 3)), (3, (64, 32, 3, 3)), (7, (128, 3136)), (9, (10, 128))):
        fan_in = int(np.prod(shape[1:]))
        sd[f"{i}.weight"] = _uniform(rs, shape, fan_in)
        sd[f"{i}.bias"] = _uniform(rs, shape[:1], fan_in)
    return x, y, sd


def model(nn):
    """The W3 network, written the same for tidu.nn and torch.nn."""
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


class _Side:
    def __init__(self, spec, nn, F, optim, to_tensor):
        self.spec, self.nn, self.F, self.optim, self.T = spec, nn, F, optim, to_tensor
        x, y, self.sd = arrays(spec)
        self.x, self.y = to_tensor(x), to_tensor(y)
        self.reset()

    def reset(self):
        self.model = model(self.nn)
        self.model.load_state_dict({k: self.T(v.copy()) for k, v in self.sd.items()})
        self.opt = self.optim.SGD(self.model.parameters(), lr=self.spec["lr"], momentum=self.spec["momentum"])

    def step(self):
        loss = self.F.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def check(self):
        self.reset()
        losses = [float(self.step().item()) for _ in range(CHECK_STEPS)]
        self.reset()
        return {"losses": losses}


def build(side, spec):
    if side == "tidu":
        import tidu as td
        import tidu.nn as nn
        import tidu.nn.functional as F
        return _Side(spec, nn, F, td.optim, td.from_numpy)
    import torch
    return _Side(spec, torch.nn, torch.nn.functional, torch.optim, torch.from_numpy)


def summarize(spec, sides, others):
    notes = [f"{s}: loss {r['check']['losses'][0]:.5f} at step 1, {r['check']['losses'][-1]:.5f} after "
             f"{CHECK_STEPS} steps from the same weights" for s, r in sides.items()]
    out = {"notes": notes, "target_text": f"≤ {TARGET}×"}
    if "torch" in sides:
        a, b = np.array(sides["tidu"]["check"]["losses"]), np.array(sides["torch"]["check"]["losses"])
        same = bool(np.allclose(a, b, rtol=1e-3, atol=1e-4))
        notes.append(f"same losses over {CHECK_STEPS} steps (rtol 1e-3): {'yes' if same else 'NO'} "
                     f"(largest difference {np.abs(a - b).max():.2e})")
        out["met"] = sides["tidu"]["median_s"] / sides["torch"]["median_s"] <= TARGET and same
    return out
