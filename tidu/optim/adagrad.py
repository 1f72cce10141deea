"""Adagrad: per-coordinate learning rates from the sum of all past squared gradients."""
import numpy as np

from .optimizer import Optimizer


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011), PyTorch's algorithm exactly::

        g_t = -∇f(θ_{t-1}) if maximize else ∇f(θ_{t-1})
        γ̃ = lr / (1 + (t − 1) · lr_decay)
        if weight_decay ≠ 0:  g_t = g_t + weight_decay · θ_{t-1}
        s_t = s_{t-1} + g_t²                   (s_0 = initial_accumulator_value)
        θ_t = θ_{t-1} − γ̃ · g_t / (√s_t + ε)

    State per parameter: ``step`` and ``sum`` (s).

    >>> import tidu as td
    >>> w = td.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = td.optim.Adagrad([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step(); w
    tensor([ 0.9, -1.9], requires_grad=True)
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def validate(self, group):
        self._check(group, "lr", lambda v: v >= 0, "lr >= 0")
        self._check(group, "lr_decay", lambda v: v >= 0, "lr_decay >= 0")
        self._check(group, "weight_decay", lambda v: v >= 0, "weight_decay >= 0")
        self._check(group, "initial_accumulator_value", lambda v: v >= 0, "initial_accumulator_value >= 0")
        self._check(group, "eps", lambda v: v >= 0, "eps >= 0")

    def init_state(self, p, group):
        return {"step": 0, "sum": np.full_like(p.data, group["initial_accumulator_value"])}

    def update(self, p, g, state, group):
        step = state["step"] = state["step"] + 1
        g = self._grad(p, g, group)
        clr = float(group["lr"]) / (1 + (step - 1) * group["lr_decay"])
        s, t = state["sum"], self._scratch(p)
        np.multiply(g, g, out=t)                  # s ← s + g²
        s += t
        np.sqrt(s, out=t)
        t += float(group["eps"])
        u = np.multiply(g, -clr, out=self._scratch(p, 1))
        u /= t
        p += u
