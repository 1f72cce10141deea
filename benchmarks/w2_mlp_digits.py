"""W2 — MLP 64-256-256-10 (ReLU) on scikit-learn's digits: cross-entropy, Adam lr 1e-3, batch 64.

The data (standardized with the training statistics, fixed 80/20 split), the initial weights
(PyTorch's default ``nn.Linear`` initialization, drawn once with NumPy) and the batch order of
every epoch are made once in the parent and given to both sides, so 10 epochs train the same
model on both and must reach the same test accuracy.
"""
import numpy as np

from .harness import paired_ratio

ID = "W2"
TITLE = "MLP 64-256-256-10 digits, Adam"
TARGET = 1.0  # issue 2: at most 1.0× PyTorch's step time, and the same test accuracy
SIZES = (64, 256, 256, 10)


def initial_weights(sizes, seed):
    """PyTorch's default Linear init (U(±1/sqrt(fan_in)) for weight and bias), as a Sequential state_dict."""
    rs = np.random.default_rng(seed)
    sd = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1.0 / np.sqrt(n_in)
        sd[f"{2 * i}.weight"] = rs.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        sd[f"{2 * i}.bias"] = rs.uniform(-bound, bound, (n_out,)).astype(np.float32)
    return sd


def digits(seed=0):
    """scikit-learn's digits, split 80/20 (stratified, fixed seed), standardized with train statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    return (scaler.transform(x_tr).astype(np.float32), y_tr.astype(np.int64),
            scaler.transform(x_te).astype(np.float32), y_te.astype(np.int64))


def make_spec(quick=False, seed=0):
    x_tr, y_tr, x_te, y_te = digits(seed)
    epochs = 1 if quick else 10
    rs = np.random.default_rng(seed)
    return {"data": (x_tr, y_tr, x_te, y_te), "weights": initial_weights(SIZES, seed),
            # --quick: one epoch over 4 batches only
            "orders": [rs.permutation(len(x_tr))[:256 if quick else None] for _ in range(epochs)],
            "epochs": epochs, "batch_size": 64, "lr": 1e-3,
            "timing": {"warmup": 3 if quick else 50, "samples": 3 if quick else 30, "inner": 2 if quick else 30,
                       "settle": 1, "profile_steps": 500}}


def batches(spec, order):
    """(x, y) arrays of the batches of one epoch in ``order`` (the last one may be short)."""
    x_tr, y_tr = spec["data"][0], spec["data"][1]
    bs = spec["batch_size"]
    return [(x_tr[order[i:i + bs]], y_tr[order[i:i + bs]]) for i in range(0, len(order), bs)]


class _Side:
    """What both sides share: the loop. ``lib`` is tidu or torch; the code reads the same for both."""

    def __init__(self, spec, lib, nn, F, optim, to_tensor):
        self.spec, self.lib, self.nn, self.F, self.optim, self.T = spec, lib, nn, F, optim, to_tensor
        self.epoch_batches = [[(to_tensor(x), to_tensor(y)) for x, y in batches(spec, o)] for o in spec["orders"]]
        self.x_te, self.y_te = to_tensor(spec["data"][2]), spec["data"][3]
        bs = spec["batch_size"]
        self.timed = [b for b in self.epoch_batches[-1] if b[0].shape[0] == bs]  # full batches only
        self.i = 0
        self.reset()

    def reset(self):
        nn, sizes = self.nn, SIZES
        self.model = nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.ReLU(), nn.Linear(sizes[1], sizes[2]), nn.ReLU(),
                                   nn.Linear(sizes[2], sizes[3]))
        self.model.load_state_dict({k: self.T(v.copy()) for k, v in self.spec["weights"].items()})
        self.opt = self.optim.Adam(self.model.parameters(), lr=self.spec["lr"])

    def train_step(self, x, y):
        loss = self.F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def step(self):
        x, y = self.timed[self.i]
        self.i = (self.i + 1) % len(self.timed)
        return self.train_step(x, y)

    def check(self):
        """Train ``epochs`` epochs from the shared weights in the shared order; test accuracy."""
        self.reset()
        losses = []
        for epoch in self.epoch_batches:
            losses = [self.train_step(x, y).item() for x, y in epoch]
        with self.lib.no_grad():
            pred = np.asarray(self.model(self.x_te).argmax(1).numpy())
        return {"test_accuracy": float((pred == self.y_te).mean()), "last_epoch_loss": float(np.mean(losses)),
                "n_test": int(len(self.y_te))}


def build(side, spec):
    if side == "tidu":
        import tidu as td
        import tidu.nn as nn
        import tidu.nn.functional as F
        return _Side(spec, td, nn, F, td.optim, td.tensor)
    import torch
    return _Side(spec, torch, torch.nn, torch.nn.functional, torch.optim, torch.from_numpy)


def summarize(spec, sides, others):
    notes = [f"{s} after {spec['epochs']} epochs from the same weights and batches: test accuracy "
             f"{r['check']['test_accuracy']:.4f}, mean loss of the last epoch {r['check']['last_epoch_loss']:.4f}"
             for s, r in sides.items()]
    out = {"notes": notes, "target_text": f"≤ {TARGET}× and same accuracy"}
    if "torch" in sides:
        a, b = sides["tidu"]["check"], sides["torch"]["check"]
        same = a["test_accuracy"] >= b["test_accuracy"] - 1.0 / a["n_test"] - 1e-12  # within one test sample
        out["met"] = paired_ratio(sides) <= TARGET and same
    return out
