"""``Optimizer``: the base that owns parameter groups, per-parameter state, validation and state_dict.

An optimizer is an initial state plus one update (mlx's ``init_single`` / ``apply_single``, Keras's
``build`` / ``update_step``). A subclass writes three small methods:

- ``validate(group)``: check one group's hyper-parameters, raising a message that names the optimizer;
- ``init_state(p, group)``: the state of parameter ``p`` (a dict of arrays and the ``step`` count) before
  its first step;
- ``update(p, g, state, group)``: one step, in place on the arrays ``p`` (the parameter's ``.data``)
  and ``state``, from the gradient array ``g``. ``g`` belongs to the caller: never write into it.

``step()`` walks the groups and calls ``update`` for every parameter that has a gradient — no Tensor is
built and nothing is re-validated on that path. Temporaries come from :meth:`Optimizer._scratch`,
buffers kept between steps, so a step allocates nothing once warm.
"""
import numbers

import numpy as np

from ..autograd import enable_grad
from ..backend import to_device
from ..tensor import Tensor

_NAMES = {"lr": "learning rate", "eps": "epsilon value", "weight_decay": "weight_decay value",
          "momentum": "momentum value", "dampening": "dampening value", "alpha": "alpha value",
          "lr_decay": "lr_decay value", "initial_accumulator_value": "initial_accumulator_value"}
# keys of a saved group that are not hyper-parameters here (PyTorch's implementation switches)
_NOT_LOADED = {"params", "foreach", "fused", "capturable", "differentiable", "decoupled_weight_decay"}


class Optimizer:
    """Base class of the optimizers: parameter groups, state, ``zero_grad``, ``step`` and state dicts.

    ``params`` is an iterable of Tensors, of ``(name, Tensor)`` pairs (``model.named_parameters()``),
    or of dicts each holding ``'params'`` and hyper-parameters that override ``defaults`` for that group.

    >>> import tidu as td
    >>> w = td.tensor([1.0, 2.0], requires_grad=True)
    >>> b = td.tensor([0.5], requires_grad=True)
    >>> opt = td.optim.SGD([{"params": [w]}, {"params": [b], "lr": 0.01}], lr=0.1)
    >>> [g["lr"] for g in opt.param_groups]
    [0.1, 0.01]
    >>> (w * w).sum().backward(); opt.step(); w
    tensor([0.8, 1.6], requires_grad=True)
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.validate(self.defaults)
        self.state = {}           # parameter Tensor -> dict of its state
        self.param_groups = []
        self._buffers = {}        # scratch arrays, by (shape, dtype, slot); not part of the state
        if isinstance(params, Tensor):
            raise TypeError(f"{self._name}: params must be an iterable of Tensors or of dicts, got a single "
                            "Tensor; write [tensor]")
        if isinstance(params, dict):
            params = [params]
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    @property
    def _name(self):
        return type(self).__name__

    # --- what subclasses write ---
    def validate(self, group):
        """Check one group's hyper-parameters (raises ValueError/TypeError naming the optimizer)."""

    def init_state(self, p, group):
        """The state dict of parameter ``p`` (a Tensor in ``group``) before its first update."""
        return {}

    def update(self, p, g, state, group):
        """Update the parameter array ``p`` in place from the gradient array ``g``."""
        raise NotImplementedError

    # --- parameter groups ---
    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with ``'params'``) trained with its own hyper-parameters."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{self._name}.add_param_group: expected a dict with 'params', "
                            f"got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{self._name}.add_param_group: the group has no 'params' key "
                             f"(keys: {sorted(param_group)})")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if params and isinstance(params[0], tuple):  # named_parameters()
            group["param_names"] = [n for n, _ in params]
            params = [p for _, p in params]
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{self._name}: can only optimize Tensors, but parameter {i} of the group "
                                f"is a {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{self._name}: cannot optimize a non-leaf Tensor (parameter {i} of the group, "
                                 f"shape {tuple(p.shape)}); optimize the leaf it was computed from")
            if p.dtype.kind not in "fc":
                raise TypeError(f"{self._name}: parameter {i} of the group has dtype {p.dtype}; only floating "
                                "tensors can be optimized")
            if id(p) in seen:
                raise ValueError(f"{self._name}: parameter {i} (shape {tuple(p.shape)}) appears twice in one "
                                 "parameter group")
            seen.add(id(p))
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self.validate(group)
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError(f"{self._name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # --- the loop ---
    def zero_grad(self, set_to_none=True):
        """Forget the gradients: set ``.grad`` to None (default), or fill it with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient. ``closure`` (optional) re-evaluates the
        model and returns the loss, which ``step`` returns."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        states, update = self.state, self.update
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                state = states.get(p)
                if state is None:
                    state = states[p] = self.init_state(p, group)
                update(p.data, grad.data, state, group)
        return loss

    def _scratch(self, like, slot=0):
        """A reusable array shaped like ``like`` (contents undefined): temporaries without allocation."""
        key = (like.shape, like.dtype, slot)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = np.empty_like(like)
        return buf

    def _grad(self, p, g, group, weight_decay=True):
        """The gradient the algorithm sees: ``-g`` when maximizing, plus ``weight_decay * p`` (L2)
        when asked. Returns ``g`` itself (never written to) when neither applies."""
        wd = group.get("weight_decay", 0) if weight_decay else 0
        maximize = group.get("maximize", False)
        if not wd and not maximize:
            return g
        t = self._scratch(p, 9)
        if wd:
            np.multiply(p, wd, out=t)
            (np.subtract if maximize else np.add)(t, g, out=t)
        else:
            np.negative(g, out=t)
        return t

    # --- validation helpers for subclasses ---
    def _check(self, group, key, ok, expected):
        v = group[key]
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{self._name}: {key} must be a real number, got {type(v).__name__} {v!r}")
        if not ok(v):
            raise ValueError(f"{self._name}: invalid {_NAMES.get(key, key)} {v!r} (expected {expected})")

    def _check_betas(self, group):
        betas = group["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in betas)):
            raise TypeError(f"{self._name}: betas must be a pair of numbers (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{self._name}: invalid beta parameter at index {i}: {b!r} "
                                 f"(expected 0 <= betas[{i}] < 1)")

    # --- saving and loading ---
    def state_dict(self):
        """The state in PyTorch's layout: ``{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}``.

        Parameters are numbered in group order; state arrays are copied into Tensors (later steps do not
        change a saved state dict), the step count is an int.
        """
        index, groups = {}, []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index[id(p)] = len(index)
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                s = self.state.get(p)
                if s:
                    state[index[id(p)]] = {k: Tensor(v.copy()) if hasattr(v, "shape") else v for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load what ``state_dict`` returned (from this optimizer class, on the same parameters).

        Groups are matched by position and parameters by index; their counts and the state shapes must
        agree. Hyper-parameters come from the saved groups. A PyTorch optimizer's state dict loads too.
        """
        name = f"{self._name}.load_state_dict"
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(f"{name}: expected a dict with 'state' and 'param_groups' (from state_dict()), "
                             f"got {type(state_dict).__name__}"
                             + (f" with keys {sorted(map(str, state_dict))}" if isinstance(state_dict, dict) else ""))
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}: the saved state has {len(saved_groups)} parameter group(s), "
                             f"this optimizer has {len(self.param_groups)}")
        params = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}: parameter group {i} has {len(saved['params'])} parameter(s) in the "
                                 f"saved state and {len(group['params'])} in this optimizer")
            params.update(zip(saved["params"], group["params"]))
        new_state = {}
        for key, saved in state_dict["state"].items():
            k = int(key) if isinstance(key, str) and key.isdigit() else key
            if k not in params:
                raise ValueError(f"{name}: the saved state holds parameter {key!r}, which is in no saved group "
                                 f"(known: 0..{len(params) - 1})")
            p = params[k]
            new_state[p] = {n: self._load_value(name, k, n, v, p) for n, v in saved.items()}
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            g = {n: (tuple(v) if n == "betas" else v) for n, v in saved.items() if n not in _NOT_LOADED}
            g["params"] = group["params"]
            for n, v in self.defaults.items():
                g.setdefault(n, v)
            self.validate(g)
            new_groups.append(g)
        self.param_groups, self.state = new_groups, new_state

    @staticmethod
    def _load_value(name, index, key, value, p):
        if key == "step":
            return int(float(np.asarray(value.data if isinstance(value, Tensor) else value)))
        if value is None or isinstance(value, (numbers.Number, str)):
            return value
        a = np.asarray(value.numpy() if isinstance(value, Tensor) else value)
        if a.shape != tuple(p.shape):
            raise ValueError(f"{name}: state '{key}' of parameter {index} has shape {a.shape} in the saved "
                             f"state, but the parameter has shape {tuple(p.shape)}")
        a = a.astype(p.dtype if a.dtype.kind in "fc" else a.dtype)  # a fresh copy, in the parameter's dtype
        return a if p.device == "cpu" else to_device(a, p.device)

    def __repr__(self):
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k not in ("params", "param_names")]
        return "\n".join(lines) + "\n)"
