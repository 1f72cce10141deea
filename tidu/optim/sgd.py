"""Stochastic gradient descent, with momentum, dampening, Nesterov momentum and weight decay."""
import numpy as np

from .optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent (PyTorch's algorithm, exactly)::

        g_t = -∇f(θ_{t-1}) if maximize else ∇f(θ_{t-1})
        if weight_decay ≠ 0:  g_t = g_t + weight_decay · θ_{t-1}
        if momentum ≠ 0:
            b_t = g_t                                   if t = 1
                  momentum · b_{t-1} + (1 − dampening) · g_t   otherwise
            g_t = g_t + momentum · b_t   if nesterov else   b_t
        θ_t = θ_{t-1} − lr · g_t

    State per parameter: ``momentum_buffer`` (only when momentum ≠ 0).

    >>> import tidu as td
    >>> w = td.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = td.optim.SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> w
    tensor([ 0.46, -0.92], requires_grad=True)
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def validate(self, group):
        self._check(group, "lr", lambda v: v >= 0, "lr >= 0")
        self._check(group, "momentum", lambda v: v >= 0, "momentum >= 0")
        self._check(group, "dampening", lambda v: True, "a number")
        self._check(group, "weight_decay", lambda v: v >= 0, "weight_decay >= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, got momentum="
                             f"{group['momentum']!r}, dampening={group['dampening']!r}")

    def update(self, p, g, state, group):
        g = self._grad(p, g, group)
        momentum = group["momentum"]
        t = self._scratch(p)
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= momentum
                np.multiply(g, 1.0 - group["dampening"], out=t)
                buf += t
            if group["nesterov"]:
                np.multiply(buf, momentum, out=t)
                t += g
                g = t
            else:
                g = buf
        np.multiply(g, -float(group["lr"]), out=t)
        p += t
