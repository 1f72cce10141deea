"""Look at a model: ``summary`` (a table of layers, output shapes, parameters and memory) and
``to_mermaid`` (the architecture as a Mermaid flowchart, the format of the tutorial's figures).

>>> import tidu as td
>>> import tidu.nn as nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> s = nn.summary(model, td.zeros(5, 4), print_fn=None)
>>> s.total_params, [r.output_shape for r in s.rows]
(58, [(5, 2), (5, 8), (5, 8), (5, 2)])
>>> print(nn.to_mermaid(model))
flowchart TD
    n0["0: Linear 4→8"]
    n1["1: ReLU"]
    n2["2: Linear 8→2"]
    input(["input"]) --> n0
    n0 --> n1
    n1 --> n2
    n2 --> output(["output"])
"""
from dataclasses import dataclass, field

import numpy as np

from ..autograd import is_grad_enabled, no_grad
from ..tensor import Tensor
from .module import Module

__all__ = ["summary", "ModelSummary", "LayerInfo", "to_mermaid"]

# Modules drawn as one node even though they hold submodules (their children are implementation details).
_ATOMIC = {"MultiheadAttention", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"}


# --- running a forward pass with hooks ---

def _as_args(example_input):
    """The positional and keyword arguments of one forward call: a tuple is several inputs, a dict keywords."""
    if isinstance(example_input, dict):
        return (), {k: _as_tensor(v) for k, v in example_input.items()}
    if isinstance(example_input, (tuple, list)):
        return tuple(_as_tensor(v) for v in example_input), {}
    return (_as_tensor(example_input),), {}


def _as_tensor(v):
    return Tensor(v) if isinstance(v, np.ndarray) else v


def _tensors(obj):
    """The tensors in a (nested) output: a Tensor, tuples / lists / dicts of them, None."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _shape(obj):
    """Shapes of a (nested) output: a tuple per Tensor, lists for tuples / lists, None for anything else."""
    if isinstance(obj, Tensor):
        return tuple(obj.shape)
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (tuple, list)):
        return [_shape(o) for o in obj]
    return None


@dataclass
class _Call:
    module: Module
    name: str
    depth: int
    args: tuple = ()
    output: object = None


def _trace(model, example_input, hooked, record_graph=False):
    """Run ``model`` once on ``example_input`` in eval mode with hooks on the ``hooked`` (name, module)
    pairs; returns ``(calls in the order they started, args, output)``. The modes are restored."""
    args, kwargs = _as_args(example_input)
    modes = [(m, m.training) for m in model.modules()]
    calls, stack, handles = [], [], []

    def pre(name):
        def hook(m, a):
            call = _Call(m, name, len(stack), a)
            calls.append(call)
            stack.append(call)
        return hook

    def post(m, a, out):
        stack.pop().output = out

    for name, m in hooked:
        handles.append(m.register_forward_pre_hook(pre(name)))
        handles.append(m.register_forward_hook(post))
    model.eval()
    try:
        if record_graph or not is_grad_enabled():
            output = model(*args, **kwargs)
        else:
            with no_grad():
                output = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.__dict__["training"] = mode
    return calls, args + tuple(kwargs.values()), output


# --- summary ---

@dataclass
class LayerInfo:
    """One row of a summary: a module call (or a module never called, with ``called=False``)."""
    name: str
    type: str
    depth: int
    output_shape: object  # a shape tuple, a list of them for several outputs, None when not run
    trainable: int  # parameters held directly by this module and not already counted above
    frozen: int
    called: bool = True


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


def _fmt_shape(s):
    if s is None:
        return "--"
    if isinstance(s, tuple):
        return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"
    return "[" + ", ".join(_fmt_shape(e) for e in s) + "]"


@dataclass
class ModelSummary:
    """What ``summary`` found. ``str()`` gives the table; the numbers are attributes.

    ``activation_bytes`` counts every distinct tensor the layers returned in one forward pass (what
    training keeps for back-propagation, roughly); ``input_bytes`` the example input.
    """
    model_type: str
    rows: list = field(default_factory=list)
    trainable_params: int = 0
    frozen_params: int = 0
    param_bytes: int = 0
    buffer_bytes: int = 0
    input_bytes: int = 0
    activation_bytes: int = 0

    @property
    def total_params(self):
        return self.trainable_params + self.frozen_params

    @property
    def total_bytes(self):
        return self.param_bytes + self.buffer_bytes + self.input_bytes + self.activation_bytes

    def __str__(self):
        head = ("Layer (type)", "Output shape", "Trainable", "Frozen")
        body = [("  " * r.depth + (f"{r.name} ({r.type})" if r.name else r.type),
                 _fmt_shape(r.output_shape) if r.called else "(not called)", f"{r.trainable:,}", f"{r.frozen:,}")
                for r in self.rows]
        widths = [max(len(row[i]) for row in [head] + body) for i in range(4)]

        def line(row):
            return (row[0].ljust(widths[0]) + "  " + row[1].ljust(widths[1]) + "  " + row[2].rjust(widths[2])
                    + "  " + row[3].rjust(widths[3])).rstrip()
        rule = "=" * len(line(head))
        out = [rule, line(head), rule] + [line(b) for b in body] + [rule]
        out += [f"Total params: {self.total_params:,} ({_human(self.param_bytes)})",
                f"Trainable params: {self.trainable_params:,}",
                f"Frozen params: {self.frozen_params:,}"]
        if self.buffer_bytes:
            out.append(f"Buffers: {_human(self.buffer_bytes)}")
        if self.input_bytes or self.activation_bytes:
            out += [f"Input size: {_human(self.input_bytes)}",
                    f"Forward activations: {_human(self.activation_bytes)}",
                    f"Estimated total memory: {_human(self.total_bytes)}"]
        return "\n".join(out + [rule])

    def __repr__(self):
        return (f"ModelSummary({self.model_type}: {self.total_params:,} parameters, {len(self.rows)} rows, "
                f"{_human(self.total_bytes)})")


def summary(model, example_input=None, print_fn=print):
    """Run ``model`` once on ``example_input`` (in eval mode, without gradients) and tabulate every
    module call: its name and type, its output shape, and the parameters it holds directly (a
    parameter shared by two layers is counted once, where it first appears), trainable and frozen;
    then the totals, the parameter memory and an estimate of the activation memory.

    ``example_input`` is a Tensor (or array), a tuple of them for several inputs, or a dict of keyword
    arguments; without one the table lists the modules without shapes. The table is printed with
    ``print_fn`` (None: not printed); the returned ``ModelSummary`` holds the numbers, ``str()`` the table.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    >>> model[0].freeze()  # doctest: +ELLIPSIS
    Conv2d(...)
    >>> print(nn.summary(model, td.zeros(2, 1, 8, 8), print_fn=None))  # doctest: +ELLIPSIS
    ==============================================
    Layer (type)   Output shape  Trainable  Frozen
    ==============================================
    Sequential     (2, 10)               0       0
      0 (Conv2d)   (2, 4, 8, 8)          0      40
      1 (ReLU)     (2, 4, 8, 8)          0       0
      2 (Flatten)  (2, 256)              0       0
      3 (Linear)   (2, 10)           2,570       0
    ==============================================
    Total params: 2,610 (10.20 KiB)
    Trainable params: 2,570
    Frozen params: 40
    Input size: 512 B
    Forward activations: ... KiB
    Estimated total memory: ... KiB
    ==============================================
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary: expected a tidu.nn.Module, got {type(model).__name__}")
    names = list(model.named_modules())
    if example_input is not None:
        calls, inputs, _ = _trace(model, example_input, names)
    else:
        calls, inputs = [_Call(m, n, n.count(".") + (n != "")) for n, m in names], ()
        for c in calls:
            c.output = _NotRun
    s = ModelSummary(type(model).__name__)
    counted, seen_modules = set(), set()

    def own_params(m):
        trainable = frozen = 0
        for p in m._parameters.values():
            if p is None or id(p) in counted:
                continue
            counted.add(id(p))
            if p.requires_grad:
                trainable += p.data.size
            else:
                frozen += p.data.size
        return trainable, frozen

    for c in calls:
        first = id(c.module) not in seen_modules
        seen_modules.add(id(c.module))
        tr, fr = own_params(c.module) if first else (0, 0)
        ran = c.output is not _NotRun
        s.rows.append(LayerInfo(c.name, type(c.module).__name__, c.depth, _shape(c.output) if ran else None, tr, fr))
    for name, m in names:  # layers the forward pass never reached (a ModuleList is only a holder: skipped)
        if id(m) not in seen_modules and (not m._modules or any(p is not None for p in m._parameters.values())):
            tr, fr = own_params(m)
            s.rows.append(LayerInfo(name, type(m).__name__, name.count(".") + 1, None, tr, fr, called=False))
    s.trainable_params = sum(r.trainable for r in s.rows)
    s.frozen_params = sum(r.frozen for r in s.rows)
    s.param_bytes = sum(p.data.nbytes for p in model.parameters())
    s.buffer_bytes = sum(b.data.nbytes for b in model.buffers())
    given = {id(a): a.nbytes for a in (_base(t.data) for t in _tensors(list(inputs)))}
    s.input_bytes = sum(given.values())
    seen = {}  # memory blocks, so that views (Flatten, reshape) and pass-throughs count once
    for c in calls:
        if c.output is not _NotRun:
            for t in _tensors(c.output):
                a = _base(t.data)
                if id(a) not in given:
                    seen[id(a)] = a.nbytes
    s.activation_bytes = sum(seen.values())
    if print_fn is not None:
        print_fn(str(s))
    return s


_NotRun = object()


def _base(a):
    while getattr(a, "base", None) is not None and hasattr(a.base, "nbytes"):
        a = a.base
    return a


# --- Mermaid ---

def _atomic(m):
    return not m._modules or type(m).__name__ in _ATOMIC


def _tuple_str(t, sep="×"):
    t = tuple(t) if isinstance(t, (tuple, list)) else (t,)
    return sep.join(str(v) for v in t)


def _describe(m):
    """A short label for a layer: its type and key sizes (``Linear 64→256``)."""
    name, a = type(m).__name__, m.__dict__
    if name in ("Linear", "Bilinear") and "in_features" in a:
        return f"{name} {m.in_features}→{m.out_features}"
    if "in_channels" in a and "kernel_size" in a:
        text = f"{name} {m.in_channels}→{m.out_channels}, {_tuple_str(m.kernel_size)}"
        stride = tuple(np.atleast_1d(m.stride))
        if any(s != 1 for s in stride):
            text += f", stride {stride[0] if len(set(stride)) == 1 else _tuple_str(stride)}"
        return text + (f", groups {m.groups}" if getattr(m, "groups", 1) != 1 else "")
    if name == "Embedding":
        return f"Embedding {m.num_embeddings}×{m.embedding_dim}"
    if "normalized_shape" in a:
        return f"{name} {_tuple_str(m.normalized_shape)}"
    if "num_features" in a:
        return f"{name} {m.num_features}"
    if name == "GroupNorm":
        return f"GroupNorm {m.num_groups} groups × {m.num_channels // m.num_groups}"
    if name == "MultiheadAttention":
        return f"MultiheadAttention {m.embed_dim}, {m.num_heads} heads"
    if "hidden_size" in a and "input_size" in a:
        text = f"{name} {m.input_size}→{m.hidden_size}"
        if getattr(m, "num_layers", 1) != 1:
            text += f" ×{m.num_layers} layers"
        return text + (", bidirectional" if getattr(m, "bidirectional", False) else "")
    if name == "Dropout":
        return f"Dropout p={m.p:g}"
    if "kernel_size" in a:
        return f"{name} {_tuple_str(m.kernel_size)}"
    if "output_size" in a:
        return f"{name} → {_tuple_str(m.output_size)}"
    if "max_len" in a and "d_model" in a:
        return f"{name} {m.max_len}×{m.d_model}"
    return name


def _label(text):
    return '"' + text.replace('"', "#quot;") + '"'


def _sources(t, producer, memo, keep):
    """The graph nodes whose outputs ``t`` was computed from: walk back through the autograd graph
    (iteratively; deep graphs) and stop at tensors that a traced layer or the input produced."""
    stack = [(t, False)]
    while stack:
        x, expanded = stack.pop()
        k = id(x)
        if k in memo:
            continue
        keep.append(x)  # ids are memo keys: keep the tensors alive so no id is reused
        if k in producer:
            memo[k] = (producer[k],)
        elif not x._parents:
            memo[k] = ()
        elif expanded:
            found = []
            for p in x._parents:
                found.extend(s for s in memo.get(id(p), ()) if s not in found)
            memo[k] = tuple(found)
        else:
            stack.append((x, True))
            stack.extend((p, False) for p in x._parents if id(p) not in memo)
    return memo[id(t)]


def to_mermaid(model, example_input=None, direction="TD"):
    """The architecture of ``model`` as a Mermaid flowchart (``flowchart TD``): a node per layer with
    its type and key sizes (``Linear 64→256``), each container (``Sequential``, a transformer block …)
    a subgraph named by its path.

    With ``example_input`` (a Tensor, a tuple of them, or a dict of keyword arguments) a forward pass is
    traced and the edges follow the data, residual connections included; without one, the layers are
    chained in the order they were registered.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> net = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), nn.Linear(3, 1))
    >>> print(nn.to_mermaid(net, td.zeros(4, 2)))
    flowchart TD
        subgraph g0["0: Sequential"]
            n0["0.0: Linear 2→3"]
            n1["0.1: Tanh"]
        end
        n2["1: Linear 3→1"]
        input(["input (4, 2)"]) --> n0
        n0 --> n1
        n1 --> n2
        n2 --> output(["output (4, 1)"])
    """
    if not isinstance(model, Module):
        raise TypeError(f"to_mermaid: expected a tidu.nn.Module, got {type(model).__name__}")
    if direction not in ("TD", "TB", "BT", "LR", "RL"):
        raise ValueError(f"to_mermaid: direction must be one of TD, TB, BT, LR, RL, got {direction!r}")
    # the drawn layers: atomic modules, not descending into them
    leaves, node_of, children = [], {}, {}
    groups = {}

    def visit(name, m, parent):
        if id(m) in node_of or id(m) in groups:
            return
        if _atomic(m) or (m is model and not m._modules):
            node_of[id(m)] = f"n{len(leaves)}"
            leaves.append((name, m))
            children.setdefault(parent, []).append(("node", id(m)))
            return
        if m is not model:
            groups[id(m)] = (f"g{len(groups)}", name, m)
            children.setdefault(parent, []).append(("group", id(m)))
        inner = id(m) if m is not model else None
        for child_name, child in m._modules.items():
            if child is not None:
                visit(f"{name}.{child_name}" if name else child_name, child, inner)

    visit("", model, None)
    lines = [f"flowchart {direction}"]

    def emit(parent, indent):
        for kind, key in children.get(parent, []):
            if kind == "node":
                name, m = next((n, mm) for n, mm in leaves if id(mm) == key)
                text = _describe(m) if not name else f"{name}: {_describe(m)}"
                lines.append("    " * indent + f"{node_of[key]}[{_label(text)}]")
            else:
                gid, name, m = groups[key]
                lines.append("    " * indent + f"subgraph {gid}[{_label(f'{name}: {type(m).__name__}')}]")
                emit(key, indent + 1)
                lines.append("    " * indent + "end")

    emit(None, 1)
    edges = []

    def edge(a, b):
        if (a, b) not in edges:
            edges.append((a, b))

    if example_input is None:
        chain = ['input(["input"])'] + [node_of[id(m)] for _, m in leaves] + ['output(["output"])']
        for a, b in zip(chain, chain[1:]):
            edge(a, b)
    else:
        calls, inputs, output = _trace(model, example_input, leaves, record_graph=True)
        producer, memo, keep = {}, {}, []
        ins = _tensors(list(inputs))
        for i, t in enumerate(ins):
            suffix = f" {i}" if len(ins) > 1 else ""
            producer[id(t)] = f'input{suffix.strip()}(["input{suffix} {_fmt_shape(tuple(t.shape))}"])'
        previous = None
        for c in calls:
            node = node_of[id(c.module)]
            found = [s for t in _tensors(list(c.args)) for s in _sources(t, producer, memo, keep)]
            if not found and previous is not None:
                found = [previous]  # the graph was not recorded (frozen layers): fall back to the call order
            for s in found:
                edge(s, node)
            for t in _tensors(c.output):
                producer[id(t)] = node
                memo.pop(id(t), None)
            previous = node
        outs = _tensors(output)
        for i, t in enumerate(outs):
            suffix = f" {i}" if len(outs) > 1 else ""
            sink = f'output{suffix.strip()}(["output{suffix} {_fmt_shape(tuple(t.shape))}"])'
            for s in _sources(t, producer, memo, keep) or ([previous] if previous else []):
                edge(s, sink)
    # a node is defined once; later mentions of input / output nodes use the bare id
    defined = set()
    for a, b in edges:
        a_id, b_id = a.split("(")[0], b.split("(")[0]
        a_text = a if a_id not in defined else a_id
        defined.add(a_id)
        b_text = b if b_id not in defined else b_id
        defined.add(b_id)
        lines.append(f"    {a_text} --> {b_text}")
    return "\n".join(lines)
