"""Containers: ``Sequential`` (a pipeline), ``ModuleList`` and ``ModuleDict`` (registered collections),
``ParameterList`` and ``ParameterDict``. Keys follow PyTorch (``0``, ``1`` … for lists), so state dicts match.

>>> import tidu.nn as nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> list(net.state_dict())
['0.weight', '0.bias', '2.weight', '2.bias']
>>> net[-1], len(net)
(Linear(in_features=8, out_features=2, bias=True), 3)
"""
import operator
from collections import OrderedDict

from ..tensor import Parameter
from .module import Module

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]


def _index(op, idx, n):
    i = operator.index(idx)
    if not -n <= i < n:
        raise IndexError(f"{op}: index {i} is out of range for {n} modules")
    return i % n


def _renumber(container, mods):
    for key in list(container._modules):
        delattr(container, key)
    for i, m in enumerate(mods):
        container.add_module(str(i), m)


class _ListOf:
    """The list methods shared by Sequential and ModuleList: modules registered as ``0``, ``1`` …,
    renumbered after a removal or an insertion, as PyTorch does."""

    def __delitem__(self, idx):
        mods = list(self._modules.values())
        del mods[idx if isinstance(idx, slice) else _index(type(self).__name__, idx, len(mods))]
        _renumber(self, mods)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        mods = list(self._modules.values())
        mods.insert(index, module)
        _renumber(self, mods)

    def pop(self, index=-1):
        m = self[index]
        del self[index]
        return m


class Sequential(_ListOf, Module):
    """Modules applied one after the other: ``Sequential(a, b, c)(x) == c(b(a(x)))``. Also takes an
    ``OrderedDict`` of named modules."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (dict, OrderedDict)):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def forward(self, input):
        for m in self._modules.values():
            input = m(input)
        return input

    def __getitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            return type(self)(OrderedDict(items[idx]))
        return items[_index("Sequential", idx, len(items))][1]

    def __setitem__(self, idx, module):
        key = list(self._modules)[_index("Sequential", idx, len(self._modules))]
        setattr(self, key, module)

    def __add__(self, other):
        if not isinstance(other, Sequential):
            raise TypeError(f"Sequential + {type(other).__name__}: both operands must be Sequential")
        return Sequential(*self, *other)

    def insert(self, index, module):
        super().insert(index, module)
        return self


class ModuleList(_ListOf, Module):
    """A list of modules that registers them (so their parameters are found). It has no forward:
    iterate over it in yours."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return type(self)(mods[idx])
        return mods[_index("ModuleList", idx, len(mods))]

    def __setitem__(self, idx, module):
        setattr(self, str(_index("ModuleList", idx, len(self))), module)

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        return ModuleList(list(self) + list(other))


class _DictOf:
    """The dict methods of ModuleDict and ParameterDict, over the registry named by ``_registry``;
    each class says how ``self[key] = value`` registers."""
    _registry = None

    def _items(self):
        return getattr(self, self._registry)

    def __getitem__(self, key):
        return self._items()[key]

    def __delitem__(self, key):
        delattr(self, key)

    def __len__(self):
        return len(self._items())

    def __iter__(self):
        return iter(self._items())

    def __contains__(self, key):
        return key in self._items()

    def keys(self):
        return self._items().keys()

    def values(self):
        return self._items().values()

    def items(self):
        return self._items().items()

    def update(self, entries):
        for key, value in (entries.items() if hasattr(entries, "items") else entries):
            self[key] = value


class ModuleDict(_DictOf, Module):
    """A dict of modules that registers them under their keys."""
    _registry = "_modules"

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def pop(self, key):
        m = self._modules[key]
        del self[key]
        return m

    def clear(self):
        for key in list(self._modules):
            del self[key]


def _as_parameter(value):
    return value if isinstance(value, Parameter) else Parameter(value)


class ParameterList(Module):
    """A list of Parameters, registered as ``0``, ``1`` …"""

    def __init__(self, values=None):
        super().__init__()
        for v in values or ():
            self.append(v)

    def __getitem__(self, idx):
        params = list(self._parameters.values())
        return params[idx] if isinstance(idx, slice) else params[_index("ParameterList", idx, len(params))]

    def __setitem__(self, idx, value):
        self.register_parameter(str(_index("ParameterList", idx, len(self))), _as_parameter(value))

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters.values())

    def append(self, value):
        self.register_parameter(str(len(self)), _as_parameter(value))
        return self

    def extend(self, values):
        for v in values:
            self.append(v)
        return self

    def extra_repr(self):
        return "\n".join(f"({i}): Parameter of shape {tuple(p.shape)} ({p.dtype})" for i, p in enumerate(self))


class ParameterDict(_DictOf, Module):
    """A dict of Parameters, registered under their keys."""
    _registry = "_parameters"

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __setitem__(self, key, value):
        self.register_parameter(key, _as_parameter(value))

    def extra_repr(self):
        return "\n".join(f"({k}): Parameter of shape {tuple(p.shape)} ({p.dtype})" for k, p in self.items())
