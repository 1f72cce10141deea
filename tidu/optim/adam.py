"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""
import numpy as np

from .optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2014), PyTorch's algorithm exactly::

        g_t = -∇f(θ_{t-1}) if maximize else ∇f(θ_{t-1})
        if weight_decay ≠ 0:
            θ_{t-1} = θ_{t-1} · (1 − lr · weight_decay)      (AdamW: decoupled)
            g_t = g_t + weight_decay · θ_{t-1}               (Adam: L2 penalty)
        m_t = β1 · m_{t-1} + (1 − β1) · g_t
        v_t = β2 · v_{t-1} + (1 − β2) · g_t²
        m̂_t = m_t / (1 − β1^t)
        if amsgrad:  v_max = max(v_max, v_t);  v̂_t = v_max / (1 − β2^t)
        else:        v̂_t = v_t / (1 − β2^t)
        θ_t = θ_{t-1} − lr · m̂_t / (√v̂_t + ε)

    State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with amsgrad,
    ``max_exp_avg_sq``. The bias corrections are Python floats, so float32 parameters stay float32.

    >>> import tidu as td
    >>> w = td.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = td.optim.Adam([w], lr=0.1)
    >>> (w * w).sum().backward(); opt.step(); w   # the first step moves each weight by about lr
    tensor([ 0.9, -1.9], requires_grad=True)
    """
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize))

    def validate(self, group):
        self._check(group, "lr", lambda v: v >= 0, "lr >= 0")
        self._check(group, "eps", lambda v: v >= 0, "eps >= 0")
        self._check_betas(group)
        self._check(group, "weight_decay", lambda v: v >= 0, "weight_decay >= 0")

    def init_state(self, p, group):
        return {"step": 0, "exp_avg": np.zeros_like(p.data), "exp_avg_sq": np.zeros_like(p.data)}

    def update(self, p, g, state, group):
        lr, wd = float(group["lr"]), group["weight_decay"]
        beta1, beta2 = group["betas"]
        step = state["step"] = state["step"] + 1
        if wd and self._decoupled:
            p *= 1.0 - lr * wd
        g = self._grad(p, g, group, weight_decay=not self._decoupled)
        m, v, t = state["exp_avg"], state["exp_avg_sq"], self._scratch(p)
        # m ← m + (1 − β1)(g − m), PyTorch's lerp (the same as β1·m + (1 − β1)·g)
        np.subtract(g, m, out=t)
        t *= 1.0 - beta1
        m += t
        # v ← β2·v + (1 − β2)·g²
        v *= beta2
        np.multiply(g, 1.0 - beta2, out=t)
        t *= g
        v += t
        if group["amsgrad"]:  # normalize by the largest v seen so far
            v_max = state.get("max_exp_avg_sq")
            v = state["max_exp_avg_sq"] = v.copy() if v_max is None else np.maximum(v_max, v, out=v_max)
        step_size = lr / (1.0 - beta1 ** step)
        # denominator √v / √(1 − β2^t) + ε
        np.sqrt(v, out=t)
        t /= (1.0 - beta2 ** step) ** 0.5
        t += float(group["eps"])
        u = np.multiply(m, -step_size, out=self._scratch(p, 1))
        u /= t
        p += u


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019): the parameters shrink by
    ``lr · weight_decay`` each step, apart from the gradient (see :class:`Adam` for the algorithm).
    Default ``weight_decay=1e-2``, as in PyTorch.

    >>> import tidu as td
    >>> w = td.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = td.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> (w * w).sum().backward(); opt.step(); w
    tensor([ 0.85, -1.8 ], requires_grad=True)
    """
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
