"""RMSprop: divide the gradient by a running root mean square of its recent values."""
import numpy as np

from .optimizer import Optimizer


class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture 6e; centered form from Graves, 2013), PyTorch's algorithm exactly::

        g_t = -∇f(θ_{t-1}) if maximize else ∇f(θ_{t-1})
        if weight_decay ≠ 0:  g_t = g_t + weight_decay · θ_{t-1}
        v_t = α · v_{t-1} + (1 − α) · g_t²
        ṽ_t = v_t
        if centered:  ḡ_t = α · ḡ_{t-1} + (1 − α) · g_t;   ṽ_t = ṽ_t − ḡ_t²
        if momentum > 0:
            b_t = momentum · b_{t-1} + g_t / (√ṽ_t + ε)      (b_0 = 0)
            θ_t = θ_{t-1} − lr · b_t
        else:
            θ_t = θ_{t-1} − lr · g_t / (√ṽ_t + ε)

    State per parameter: ``step``, ``square_avg`` (v), ``momentum_buffer`` (when momentum > 0) and
    ``grad_avg`` (ḡ, when centered).

    >>> import tidu as td
    >>> w = td.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = td.optim.RMSprop([w], lr=0.01)
    >>> (w * w).sum().backward(); opt.step(); w   # first step: lr / √(1 − α) = 0.1 per weight
    tensor([ 0.9, -1.9], requires_grad=True)
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    def validate(self, group):
        self._check(group, "lr", lambda v: v >= 0, "lr >= 0")
        self._check(group, "alpha", lambda v: v >= 0, "alpha >= 0")
        self._check(group, "eps", lambda v: v >= 0, "eps >= 0")
        self._check(group, "weight_decay", lambda v: v >= 0, "weight_decay >= 0")
        self._check(group, "momentum", lambda v: v >= 0, "momentum >= 0")

    def init_state(self, p, group):
        state = {"step": 0, "square_avg": np.zeros_like(p.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(p.data)
        return state

    def update(self, p, g, state, group):
        alpha, momentum = group["alpha"], group["momentum"]
        state["step"] += 1
        g = self._grad(p, g, group)
        v, t = state["square_avg"], self._scratch(p)
        v *= alpha                                # v ← α·v + (1 − α)·g²
        np.multiply(g, 1.0 - alpha, out=t)
        t *= g
        v += t
        if group["centered"]:
            ga = state.get("grad_avg")
            if ga is None:  # centered switched on after the first step
                ga = state["grad_avg"] = np.zeros_like(p)
            np.subtract(g, ga, out=t)             # ḡ ← ḡ + (1 − α)(g − ḡ), PyTorch's lerp
            t *= 1.0 - alpha
            ga += t
            np.multiply(ga, ga, out=t)
            np.subtract(v, t, out=t)              # ṽ = v − ḡ²
            np.sqrt(t, out=t)
        else:
            np.sqrt(v, out=t)
        t += float(group["eps"])
        if momentum > 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.zeros_like(p)
            buf *= momentum
            u = np.divide(g, t, out=t)
            buf += u
            np.multiply(buf, -float(group["lr"]), out=t)
        else:
            u = np.multiply(g, -float(group["lr"]), out=self._scratch(p, 1))
            np.divide(u, t, out=t)
        p += t
