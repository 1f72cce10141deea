"""``Module``: the base class of every layer and model, with PyTorch's semantics.

Assigning a ``Parameter``, a ``Module`` or (through ``register_buffer``) a buffer as an attribute
registers it, so ``named_parameters()``, ``state_dict()`` and ``load_state_dict()`` find it under
PyTorch's dotted keys (``0.weight``, ``encoder.layer.1.bias`` …) and weights move between the two
libraries by name. Registered values also live in the instance ``__dict__``, so reading
``self.weight`` in ``forward`` is a plain attribute lookup (no ``__getattr__`` on the hot path).

>>> import tidu as td
>>> import tidu.nn as nn
>>> class Net(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.fc = nn.Linear(3, 2)
...         self.register_buffer("scale", td.ones(2))
...     def forward(self, x):
...         return self.fc(x) * self.scale
>>> net = Net()
>>> list(net.state_dict())
['scale', 'fc.weight', 'fc.bias']
>>> net(td.zeros(4, 3)).shape
(4, 2)
"""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from ..tensor import Parameter, Tensor

__all__ = ["Module", "Parameter", "RemovableHandle", "IncompatibleKeys", "StateDictError"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(ValueError, RuntimeError):
    """A state dict that does not fit the model. A ValueError (tidu's rule for bad input) that
    ``except RuntimeError`` also catches, as PyTorch raises RuntimeError here."""


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``handle.remove()`` takes the hook out again."""
    _next_id = 0

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self):
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _addindent(text, spaces):
    lines = text.split("\n")
    return lines[0] if len(lines) == 1 else lines[0] + "\n" + "\n".join(" " * spaces + ln for ln in lines[1:])


class Module:
    """Base class of layers and models: subclass it, assign layers and parameters in ``__init__``
    (after ``super().__init__()``), and write ``forward``. Call the module, not ``forward``, so hooks run."""

    training: bool

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent_buffers"] = set()
        d["_modules"] = {}
        d["_forward_pre_hooks"] = {}
        d["_forward_hooks"] = {}

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define forward(self, ...) in the subclass")

    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args, kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            new = hook(self, args)
            if new is not None:
                args = new if isinstance(new, tuple) else (new,)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            new = hook(self, args, out)
            if new is not None:
                out = new
        return out

    def register_forward_pre_hook(self, hook):
        """``hook(module, args)`` runs before ``forward``; a value it returns replaces the args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """``hook(module, args, output)`` runs after ``forward``; a value it returns replaces the output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # --- registration ---
    def _require_init(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} to {type(self).__name__} before Module.__init__() is called; "
                                 "call super().__init__() first in __init__")

    def _forget(self, name, keep=None):
        """Remove ``name`` from the registries except ``keep`` (where re-assigning keeps its position)."""
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry != keep:
                d[registry].pop(name, None)
        d["_non_persistent_buffers"].discard(name)

    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            self._require_init(name)
            self._forget(name, "_parameters")
            params[name] = value
        elif isinstance(value, Module):
            self._require_init(name)
            self._forget(name, "_modules")
            d["_modules"][name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r} of "
                                f"{type(self).__name__} (a Parameter or None is expected); wrap it: nn.Parameter(x)")
            params[name] = None
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} to submodule {name!r} of "
                                f"{type(self).__name__} (a Module or None is expected)")
            d["_modules"][name] = None
        elif params is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} to buffer {name!r} of "
                                f"{type(self).__name__} (a Tensor or None is expected)")
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)  # plain attributes (and properties) as usual
            return
        d[name] = value

    def __delattr__(self, name):
        if "_parameters" in self.__dict__:
            self._forget(name)
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter, or None for an absent one such as ``bias=False``) as ``name``."""
        self._check_name("register_parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got {type(param).__name__}")
        self._forget(name, "_parameters")
        self._parameters[name] = param
        self.__dict__[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register a Tensor that is state but not a parameter (``running_mean``); ``persistent=False``
        keeps it out of ``state_dict``."""
        self._check_name("register_buffer", name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        self._forget(name, "_buffers")
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)
        self.__dict__[name] = tensor

    def add_module(self, name, module):
        """Register ``module`` (or None) as a submodule called ``name``."""
        self._check_name("add_module", name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got {type(module).__name__}")
        self._forget(name, "_modules")
        self._modules[name] = module
        self.__dict__[name] = module

    register_module = add_module

    def _check_name(self, op, name):
        self._require_init(name)
        if not isinstance(name, str):
            raise TypeError(f"{op}: name must be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{op}: name must be non-empty and contain no '.', got {name!r}")
        if name in self.__dict__ and not any(name in r for r in (self._parameters, self._buffers, self._modules)):
            raise KeyError(f"{op}: attribute {name!r} already exists on {type(self).__name__}")

    # --- traversal ---
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(name, module) for this module and every descendant, each module once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mod_prefix, m in modules:
            for name, v in m.__dict__[registry].items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), v

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter) pairs; a parameter shared by two layers is yielded once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        """The submodule at a dotted path such as ``"encoder.layer.0"`` (``""`` is the module itself)."""
        m = self
        for part in target.split(".") if target else []:
            if not isinstance(m._modules.get(part), Module):
                raise AttributeError(f"get_submodule: {type(m).__name__} has no submodule {part!r} (path {target!r})")
            m = m._modules[part]
        return m

    def get_parameter(self, target):
        path, _, name = target.rpartition(".")
        m = self.get_submodule(path)
        if m._parameters.get(name) is None:
            raise AttributeError(f"get_parameter: {type(m).__name__} has no parameter {name!r} (path {target!r})")
        return m._parameters[name]

    def apply(self, fn):
        """Call ``fn(m)`` on every submodule (children first) and on this module; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def num_parameters(self, trainable_only=False):
        """Number of scalar parameters (only those that require grad, with ``trainable_only``)."""
        return sum(p.data.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # --- modes and gradients ---
    def train(self, mode=True):
        """Set training mode (Dropout drops, BatchNorm updates running stats) here and below; returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"train: mode must be a bool, got {mode!r}")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def freeze(self, keys=None, recurse=True):
        """Stop gradients for the parameters (only those whose local name is in ``keys``, if given); returns self.

        >>> import tidu.nn as nn
        >>> net = nn.Linear(3, 2).freeze(keys=["bias"])
        >>> net.weight.requires_grad, net.bias.requires_grad
        (True, False)
        """
        return self._set_trainable(False, keys, recurse)

    def unfreeze(self, keys=None, recurse=True):
        """Undo ``freeze``: parameters require gradients again; returns self."""
        return self._set_trainable(True, keys, recurse)

    def _set_trainable(self, flag, keys, recurse):
        if isinstance(keys, str):
            keys = [keys]
        for m in self.modules() if recurse else [self]:
            for name, p in m._parameters.items():
                if p is not None and (keys is None or name in keys):
                    p.requires_grad = flag
        return self

    def zero_grad(self, set_to_none=True):
        """Drop the parameters' gradients (or fill them with zeros when ``set_to_none=False``)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.data[...] = 0

    # --- state ---
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else Tensor(p.data)
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else Tensor(b.data)

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Parameters and persistent buffers by dotted name (PyTorch's keys), as detached tensors
        sharing memory with the model (copy them to keep a snapshot)."""
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def _load_from_state_dict(self, state_dict, prefix, missing_keys, error_msgs, copies):
        """Check this module's own entries of ``state_dict`` and queue ``(tensor, array)`` copies.
        Layers override it to accept older formats (renaming keys in ``state_dict``, a private copy)."""
        local = [(n, p) for n, p in self._parameters.items() if p is not None]
        local += [(n, b) for n, b in self._buffers.items() if b is not None and n not in self._non_persistent_buffers]
        for name, target in local:
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value = state_dict[key]
            src = value.data if isinstance(value, Tensor) else value
            if backend.array_module(src) is np:
                src = np.asarray(src)  # NumPy arrays, PyTorch tensors, lists, numbers
            if src.shape != target.data.shape:
                error_msgs.append(f"size mismatch for {key}: the checkpoint has shape {tuple(src.shape)}, "
                                  f"the model has shape {tuple(target.data.shape)}")
                continue
            copies.append((target, src))

    def load_state_dict(self, state_dict, strict=True):
        """Copy ``state_dict``'s values (tidu Tensors, NumPy arrays, or anything ``np.asarray`` takes,
        such as PyTorch tensors) into this model's parameters and buffers, in place and keeping their dtype.

        A shape mismatch is always an error; with ``strict`` (the default) so are missing and unexpected
        keys. On an error nothing is changed. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict: expected a dict of tensors, got {type(state_dict).__name__}")
        state_dict = dict(state_dict)  # a private copy that _load_from_state_dict overrides may edit
        missing, errors, copies, expected = [], [], [], set()
        for prefix, m in self.named_modules(remove_duplicate=False):
            p = prefix + "." if prefix else ""
            m._load_from_state_dict(state_dict, p, missing, errors, copies)
            expected.update(p + n for n, v in m._parameters.items() if v is not None)
            expected.update(p + n for n, v in m._buffers.items()
                            if v is not None and n not in m._non_persistent_buffers)
        unexpected = [k for k in state_dict.keys() if k not in expected]
        missing = list(dict.fromkeys(missing))
        if strict:
            errors = ([f"missing keys {missing}"] if missing else []) + \
                ([f"unexpected keys {unexpected}"] if unexpected else []) + errors
        if errors:
            hint = " (strict=False ignores missing and unexpected keys)" if strict and (missing or unexpected) else ""
            raise StateDictError(f"load_state_dict for {type(self).__name__}: " + "; ".join(errors) + hint)
        for target, src in copies:
            # in place, so the dtype is kept and views (an optimizer's flat buffer) stay valid
            target.data[...] = backend.to_device(src, backend.device_of(target.data))
        return IncompatibleKeys(missing, unexpected)

    # --- devices and dtypes ---
    def _apply(self, fn):
        """Replace the array of every parameter, buffer and gradient by ``fn(array)``, keeping the
        Parameter objects (so an optimizer built before still holds them)."""
        for m in self.modules():
            for t in list(m._parameters.values()) + list(m._buffers.values()):
                if t is None:
                    continue
                t.data = fn(t.data)
                if t.grad is not None:
                    t.grad.data = fn(t.grad.data)
        return self

    def to(self, *args, dtype=None, device=None):
        """Move to a device (``"cpu"``, ``"cuda"``) and/or cast floating parameters and buffers to ``dtype``."""
        for a in args:
            if isinstance(a, str):
                device = a
            else:
                dtype = a
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.kind != "f":
                raise TypeError(f"Module.to: only floating dtypes are supported, got {dtype}")
            self._apply(lambda a: a.astype(dtype, copy=False) if a.dtype.kind == "f" else a)
        if device is not None:
            self._apply(lambda a: backend.to_device(a, device))
        return self

    def float(self):
        return self.to(dtype=backend.float32)

    def double(self):
        return self.to(dtype=backend.float64)

    def half(self):
        return self.to(dtype=backend.float16)

    def cpu(self):
        return self.to(device="cpu")

    def cuda(self, device=0):
        return self.to(device=f"cuda:{device}")

    # --- printing ---
    def extra_repr(self):
        """The text inside the parentheses of this module's repr; layers override it."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, m in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(m), 2))
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        return type(self).__name__ + "(\n  " + "\n  ".join(lines) + "\n)"
