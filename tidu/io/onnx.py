"""ONNX export: ship a tidu model to any ONNX runtime (onnxruntime, TensorRT, browsers, phones).

``export_onnx(model, example_input, path)`` walks the module tree and writes an ONNX node (or a few)
for each layer, through the ``onnx`` package's ``helper`` (no PyTorch involved). One forward pass on
``example_input`` tells the exporter every layer's input and output shapes; the batch dimension
stays dynamic, so the file runs on any batch size. The export is of evaluation mode: Dropout is the
identity, BatchNorm uses its running statistics.

Supported: Sequential; Linear, Embedding, Flatten, Unflatten, Dropout, Identity and the activations;
Conv1d/2d, ConvTranspose1d/2d, Max/AvgPool1d/2d, AdaptiveAvgPool1d/2d (global, or an input size that
divides by the output size); BatchNorm, LayerNorm, GroupNorm, RMSNorm; RNN, LSTM, GRU (initial states
too); MultiheadAttention, TransformerEncoderLayer / TransformerEncoder; GPT and its blocks (the
sequence length is the example's). Any other module can take part by
defining ``onnx_export(self, builder, inputs)``: ``inputs`` is a list of ONNX value names, and it
returns its output name(s) after adding nodes with ``builder.op`` (and ``builder.module`` for its
children). A layer with neither is refused with its type and path.

>>> import os, tempfile
>>> import numpy as np
>>> import tidu as td
>>> import tidu.nn as nn
>>> from tidu.io import export_onnx                        # doctest: +SKIP
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> path = os.path.join(tempfile.mkdtemp(), "mlp.onnx")
>>> proto = export_onnx(model, td.zeros(3, 4), path)        # doctest: +SKIP
>>> [n.op_type for n in proto.graph.node]                   # doctest: +SKIP
['Gemm', 'Relu', 'Gemm', 'Identity']
>>> import onnxruntime as ort                               # doctest: +SKIP
>>> ort.InferenceSession(path).run(None, {"input": np.ones((5, 4), np.float32)})[0].shape  # doctest: +SKIP
(5, 2)
"""
import math

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["export_onnx", "OnnxBuilder", "OnnxExportError"]

MIN_OPSET = 17  # LayerNormalization


class OnnxExportError(ValueError):
    """A model, a layer or an option that cannot be written as ONNX; the message names the layer."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install onnx (or pip install -e '.[onnx]')") \
            from None
    return onnx


def _flatten(obj):
    """The leaves of a nested output (value names or tensors), None dropped."""
    if isinstance(obj, (tuple, list)):
        return [x for o in obj for x in _flatten(o)]
    return [] if obj is None else [obj]


class OnnxBuilder:
    """Collects the nodes and initializers of one ONNX graph while the exporter walks the model.

    Values are ONNX names (strings). ``op`` adds a node and returns its output name(s); ``param``
    turns a tidu Parameter or buffer into an initializer (once, however many layers share it);
    ``const`` adds a constant; ``module`` exports a child layer; ``shape`` gives a value's shape in the
    example forward pass when the exporter knows it (its batch dimension is the example's: never bake
    it into a Reshape — use 0 (copy) or -1 there).
    """

    def __init__(self, opset, records, names, float_dtype):
        self.opset = opset
        self._table = _table()
        self.nodes, self.initializers = [], []
        self.float_dtype = np.dtype(float_dtype)
        self._records = records  # id(module) -> [(input shapes, output shapes) per call]
        self._calls = {}
        self._names = names  # id(parameter or module) -> its dotted name in the model
        self._params = {}
        self._shapes = {}
        self._count = 0
        self._path = []

    # --- values ---
    def fresh(self, hint="v"):
        self._count += 1
        prefix = self._path[-1] + "/" if self._path and self._path[-1] else ""
        return f"{prefix}{hint}_{self._count}"

    def shape(self, name):
        """The value's shape in the example forward pass, or None when not known."""
        return self._shapes.get(name)

    def set_shape(self, name, shape):
        if name is not None and shape is not None:
            self._shapes[name] = tuple(shape)

    def op(self, op_type, *inputs, outputs=1, **attrs):
        """Add node ``op_type`` on ``inputs`` (names; None or "" for an omitted optional input);
        returns the output name, or a list of ``outputs`` names."""
        onnx = _onnx()
        names = [self.fresh(op_type) for _ in range(outputs)]
        ins = ["" if i is None else i for i in inputs]
        while ins and ins[-1] == "":
            ins.pop()
        self.nodes.append(onnx.helper.make_node(op_type, ins, names, name=names[0] + "_node", **attrs))
        return names[0] if outputs == 1 else names

    def const(self, value, dtype=None, name=None):
        """An initializer holding ``value`` (floats in the model's float dtype unless ``dtype`` is given)."""
        onnx = _onnx()
        a = np.asarray(value)
        if dtype is not None:
            a = a.astype(dtype)
        elif a.dtype.kind == "f":
            a = a.astype(self.float_dtype)
        name = name or self.fresh("const")
        self.initializers.append(onnx.numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def ints(self, values):
        """An int64 constant (shapes, axes, indices)."""
        return self.const(np.asarray(values, dtype=np.int64))

    def param(self, tensor, transform=None, key=None):
        """The initializer of a Parameter or buffer (``transform``ed, e.g. transposed), made once per
        (tensor, key): layers sharing a weight share the initializer."""
        k = (id(tensor), key)
        if k not in self._params:
            a = tensor.data if isinstance(tensor, Tensor) else tensor
            a = np.asarray(backend.to_device(a, "cpu"))
            if transform is not None:
                a = transform(a)
            base = self._names.get(id(tensor)) or "param"
            name = base if key is None else f"{base}.{key}"
            while any(init.name == name for init in self.initializers):
                name = self.fresh(base)
            self._params[k] = self.const(a, dtype=a.dtype, name=name)
        return self._params[k]

    # --- common patterns ---
    def linear(self, x, weight, bias=None):
        """x @ weightᵀ + bias over the last dim: Gemm for a 2-D x, else MatMul (+ Add)."""
        shape = self.shape(x)
        if shape is not None and len(shape) == 2:
            y = self.op("Gemm", x, self.param(weight), None if bias is None else self.param(bias), transB=1)
        else:
            y = self.op("MatMul", x, self.param(weight, lambda a: a.T, "T"))
            if bias is not None:
                y = self.op("Add", y, self.param(bias))
        if shape is not None:
            self.set_shape(y, shape[:-1] + (weight.shape[0],))
        return y

    def reduce(self, op_type, x, axes, keepdims=1):
        """ReduceMean / ReduceSum / ReduceMax …: axes are an attribute before opset 18 (13 for ReduceSum)."""
        if self.opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, x, self.ints(axes), keepdims=keepdims)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims)

    def reshape(self, x, shape):
        return self.op("Reshape", x, self.ints(shape))

    def transpose(self, x, perm):
        return self.op("Transpose", x, perm=list(perm))

    def unsqueeze(self, x, axes):
        return self.op("Unsqueeze", x, self.ints(axes))

    def squeeze(self, x, axes):
        return self.op("Squeeze", x, self.ints(axes))

    def slice(self, x, starts, ends, axes):
        return self.op("Slice", x, self.ints(starts), self.ints(ends), self.ints(axes))

    def split(self, x, sizes, axis):
        return self.op("Split", x, self.ints(sizes), axis=axis, outputs=len(sizes))

    # --- layers ---
    def module(self, m, *inputs):
        """Export layer ``m`` applied to ``inputs`` (names, or nested tuples of names for a tuple
        argument); returns its output name(s), shaped as its forward's return value."""
        records = self._records.get(id(m), [])
        i = self._calls.get(id(m), 0)
        self._calls[id(m)] = i + 1
        record = records[i] if i < len(records) else None
        if record is not None:
            for name, shape in zip(_flatten(inputs), record[0]):
                if name not in self._shapes:
                    self.set_shape(name, shape)
        path = self._names.get(id(m), "?")
        fn = _exporter(m, self._table)
        if fn is None:
            what = type(m).__name__
            where = f"layer {path!r}" if path else "the model"
            raise OnnxExportError(
                f"export_onnx: cannot export {where} ({what}): tidu has no ONNX conversion for {what}. Give "
                f"{what} a method onnx_export(self, builder, inputs) that adds its nodes (see tidu.io.onnx), or "
                f"build the model from supported layers: {', '.join(sorted(c.__name__ for c in self._table))}")
        self._path.append(path)
        try:
            out = fn(self, m, list(inputs))
        finally:
            self._path.pop()
        if record is not None:
            for name, shape in zip(_flatten(out), record[1]):
                if name not in self._shapes:
                    self.set_shape(name, shape)
        return out

    def fail(self, m, message):
        """Refuse a layer whose options ONNX (or this exporter) cannot express."""
        path = self._names.get(id(m), "?")
        where = f"layer {path!r}" if path else "the model"
        return OnnxExportError(f"export_onnx: cannot export {where} ({type(m).__name__}): {message}")


# --- the exporters of tidu's layers: fn(builder, module, inputs) -> output name(s) ---

_EXPORTERS = {}  # class name -> exporter
_WHERE = ("tidu.nn", "tidu.nn.recurrent", "tidu.nn.attention", "tidu.nn.transformer", "tidu.nn.gpt")


def _register(*class_names):
    def deco(fn):
        for name in class_names:
            _EXPORTERS[name] = fn
        return fn
    return deco


def _table():
    """{class: exporter} for the layer classes that exist in this build."""
    import importlib
    modules = []
    for where in _WHERE:
        try:
            modules.append(importlib.import_module(where))
        except ImportError:  # a part of tidu.nn this build does not have
            continue
    table = {}
    for name, fn in _EXPORTERS.items():
        cls = next((getattr(mod, name) for mod in modules if isinstance(getattr(mod, name, None), type)), None)
        if cls is not None:
            table[cls] = fn
    return table


def _exporter(m, table):
    """The module's own ``onnx_export``, or the exporter of its class — or of a base class whose
    forward it does not override (a subclass with its own forward is not the same computation)."""
    if callable(getattr(m, "onnx_export", None)):
        return lambda b, mod, inputs: mod.onnx_export(b, inputs)
    for cls in type(m).__mro__:
        if cls in table and type(m).forward is cls.forward:
            return table[cls]
    return None


def _one(b, m, inputs, n=1):
    if len(inputs) != n:
        raise b.fail(m, f"expected {n} input{'s' if n > 1 else ''}, got {len(inputs)} (optional forward "
                        "arguments such as masks and initial states are not exported)")
    return inputs[0] if n == 1 else inputs


@_register("Identity", "Dropout")
def _identity(b, m, inputs):
    return _one(b, m, inputs)


@_register("Sequential")
def _sequential(b, m, inputs):
    x = _one(b, m, inputs)
    for child in m._modules.values():
        x = b.module(child, x)
    return x


@_register("Linear")
def _linear(b, m, inputs):
    return b.linear(_one(b, m, inputs), m.weight, m.bias)


_SIMPLE = {"ReLU": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh"}


@_register(*_SIMPLE)
def _simple(b, m, inputs):
    return b.op(_SIMPLE[type(m).__name__], _one(b, m, inputs))


@_register("ReLU6", "Hardtanh")
def _clip(b, m, inputs):
    lo, hi = (0.0, 6.0) if type(m).__name__ == "ReLU6" else (m.min_val, m.max_val)
    return b.op("Clip", _one(b, m, inputs), b.const(np.float32(lo)), b.const(np.float32(hi)))


@_register("LeakyReLU")
def _leaky_relu(b, m, inputs):
    return b.op("LeakyRelu", _one(b, m, inputs), alpha=float(m.negative_slope))


@_register("ELU")
def _elu(b, m, inputs):
    return b.op("Elu", _one(b, m, inputs), alpha=float(m.alpha))


@_register("PReLU")
def _prelu(b, m, inputs):
    x = _one(b, m, inputs)
    if m.num_parameters == 1:
        return b.op("PRelu", x, b.param(m.weight))
    return b.op("PRelu", x, _channel_param(b, m.weight, len(b.shape(x) or (0, 0))))  # one slope per channel


def _gelu(b, x, approximate="none"):
    if approximate == "tanh":  # 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
        cube = b.op("Mul", b.op("Mul", x, x), x)
        inner = b.op("Mul", b.op("Add", x, b.op("Mul", cube, b.const(np.float32(0.044715)))),
                     b.const(np.float32(math.sqrt(2 / math.pi))))
        half = b.op("Mul", x, b.const(np.float32(0.5)))
        return b.op("Mul", half, b.op("Add", b.op("Tanh", inner), b.const(np.float32(1.0))))
    # x Φ(x) = x · 0.5 (1 + erf(x / √2))
    erf = b.op("Erf", b.op("Mul", x, b.const(np.float32(1 / math.sqrt(2)))))
    cdf = b.op("Mul", b.op("Add", erf, b.const(np.float32(1.0))), b.const(np.float32(0.5)))
    return b.op("Mul", x, cdf)


@_register("GELU")
def _gelu_layer(b, m, inputs):
    return _gelu(b, _one(b, m, inputs), m.approximate)


@_register("SiLU")
def _silu(b, m, inputs):
    x = _one(b, m, inputs)
    return b.op("Mul", x, b.op("Sigmoid", x))


def _softplus(b, x, beta=1.0, threshold=20.0):
    bx = x if beta == 1 else b.op("Mul", x, b.const(np.float32(beta)))
    sp = b.op("Softplus", bx)
    if beta != 1:
        sp = b.op("Div", sp, b.const(np.float32(beta)))
    # PyTorch returns x itself where beta·x > threshold
    return b.op("Where", b.op("Greater", bx, b.const(np.float32(threshold))), x, sp)


@_register("Softplus")
def _softplus_layer(b, m, inputs):
    return _softplus(b, _one(b, m, inputs), m.beta, m.threshold)


@_register("Mish")
def _mish(b, m, inputs):
    x = _one(b, m, inputs)
    return b.op("Mul", x, b.op("Tanh", _softplus(b, x)))


@_register("LogSigmoid")
def _logsigmoid(b, m, inputs):  # log σ(x) = -softplus(-x)
    return b.op("Neg", b.op("Softplus", b.op("Neg", _one(b, m, inputs))))


@_register("Softmax", "LogSoftmax", "Softmin")
def _softmax(b, m, inputs):
    x = _one(b, m, inputs)
    kind = type(m).__name__
    if kind == "Softmin":
        return b.op("Softmax", b.op("Neg", x), axis=int(m.dim))
    return b.op(kind, x, axis=int(m.dim))


@_register("Flatten")
def _flatten_layer(b, m, inputs):
    x = _one(b, m, inputs)
    shape = b.shape(x)
    if shape is None:
        raise b.fail(m, "the input's shape is unknown")
    r = len(shape)
    start, end = m.start_dim % r, m.end_dim % r
    if start == 1 and end == r - 1:
        return b.op("Flatten", x, axis=1)
    # keep the dims before start (0 = copy, so the batch stays dynamic), -1 for the merged ones
    return b.reshape(x, [0] * start + [-1] + list(shape[end + 1:]))


@_register("Unflatten")
def _unflatten(b, m, inputs):
    x = _one(b, m, inputs)
    shape = b.shape(x)
    if shape is None:
        raise b.fail(m, "the input's shape is unknown")
    d = m.dim % len(shape)
    if d == 0:
        raise b.fail(m, "unflattening the batch dimension (dim 0) cannot keep the batch dynamic")
    return b.reshape(x, [0] * d + list(m.unflattened_size) + list(shape[d + 1:]))


@_register("Embedding")
def _embedding(b, m, inputs):
    return b.op("Gather", b.param(m.weight), _one(b, m, inputs), axis=0)


def _tuple(v, n):
    return tuple(int(e) for e in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _check_batched(b, m, x, nd):
    shape = b.shape(x)
    if shape is not None and len(shape) != nd + 2:
        raise b.fail(m, f"expected a batched {nd + 2}-D input, got shape {shape}")


@_register("Conv1d", "Conv2d")
def _conv(b, m, inputs):
    from ..ops.conv import _padding
    x = _one(b, m, inputs)
    nd = m._nd
    _check_batched(b, m, x, nd)
    p = _padding(type(m).__name__, m.padding, m.kernel_size, m.stride, m.dilation)  # (before, after) per axis
    begins, ends = list(p[0::2]), list(p[1::2])
    if m.padding_mode != "zeros":
        mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[m.padding_mode]
        if mode == "wrap" and b.opset < 19:
            raise b.fail(m, "padding_mode='circular' needs opset 19 or later (Pad mode 'wrap'); pass opset=19")
        x = b.op("Pad", x, b.ints([0, 0] + begins + [0, 0] + ends), mode=mode)
        begins, ends = [0] * nd, [0] * nd
    return b.op("Conv", x, b.param(m.weight), None if m.bias is None else b.param(m.bias),
                kernel_shape=list(m.kernel_size), strides=list(m.stride), dilations=list(m.dilation),
                pads=begins + ends, group=int(m.groups))


@_register("ConvTranspose1d", "ConvTranspose2d")
def _conv_transpose(b, m, inputs):
    x = _one(b, m, inputs)
    _check_batched(b, m, x, m._nd)
    return b.op("ConvTranspose", x, b.param(m.weight), None if m.bias is None else b.param(m.bias),
                kernel_shape=list(m.kernel_size), strides=list(m.stride), dilations=list(m.dilation),
                pads=list(m.padding) * 2, output_padding=list(m.output_padding), group=int(m.groups))


@_register("MaxPool1d", "MaxPool2d")
def _max_pool(b, m, inputs):
    x = _one(b, m, inputs)
    nd = 2 if type(m).__name__.endswith("2d") else 1
    _check_batched(b, m, x, nd)
    if m.return_indices:
        raise b.fail(m, "return_indices=True is not exported (ONNX MaxPool's indices are flat, PyTorch's per plane)")
    pads = list(_tuple(m.padding, nd))
    return b.op("MaxPool", x, kernel_shape=list(_tuple(m.kernel_size, nd)), strides=list(_tuple(m.stride, nd)),
                pads=pads * 2, dilations=list(_tuple(m.dilation, nd)), ceil_mode=int(bool(m.ceil_mode)))


@_register("AvgPool1d", "AvgPool2d")
def _avg_pool(b, m, inputs):
    x = _one(b, m, inputs)
    nd = 2 if type(m).__name__.endswith("2d") else 1
    _check_batched(b, m, x, nd)
    if getattr(m, "divisor_override", None) is not None:
        raise b.fail(m, "divisor_override has no ONNX equivalent")
    pads = list(_tuple(m.padding, nd))
    return b.op("AveragePool", x, kernel_shape=list(_tuple(m.kernel_size, nd)),
                strides=list(_tuple(m.stride, nd)), pads=pads * 2, ceil_mode=int(bool(m.ceil_mode)),
                count_include_pad=int(bool(m.count_include_pad)))


@_register("AdaptiveAvgPool1d", "AdaptiveAvgPool2d")
def _adaptive_avg_pool(b, m, inputs):
    x = _one(b, m, inputs)
    nd = 2 if type(m).__name__.endswith("2d") else 1
    _check_batched(b, m, x, nd)
    out = tuple(None if o is None else int(o) for o in
                (m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * nd))
    shape = b.shape(x)
    size = shape[2:] if shape is not None else (None,) * nd
    out = tuple(s if o is None else o for o, s in zip(out, size))
    if all(o == 1 for o in out):
        return b.op("GlobalAveragePool", x)
    if None in size or any(s % o for s, o in zip(size, out)):
        raise b.fail(m, f"output_size {out} from an input of spatial size {size}: ONNX has only global average "
                        "pooling, or fixed windows when the input size divides by the output size")
    k = [s // o for s, o in zip(size, out)]
    return b.op("AveragePool", x, kernel_shape=k, strides=k)


@_register("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
def _batch_norm(b, m, inputs):
    x = _one(b, m, inputs)
    if m.running_mean is None or m.running_var is None:
        raise b.fail(m, "track_running_stats=False normalizes with each batch's own statistics in evaluation, "
                        "which ONNX BatchNormalization does not do")
    c = m.num_features
    scale = b.param(m.weight) if m.weight is not None else b.const(np.ones(c))
    bias = b.param(m.bias) if m.bias is not None else b.const(np.zeros(c))
    return b.op("BatchNormalization", x, scale, bias, b.param(m.running_mean), b.param(m.running_var),
                epsilon=float(m.eps))


def _layer_norm(b, x, shape, weight, bias, eps):
    scale = b.param(weight) if weight is not None else b.const(np.ones(shape))
    return b.op("LayerNormalization", x, scale, None if bias is None else b.param(bias), axis=-len(shape),
                epsilon=float(eps))


@_register("LayerNorm")
def _layer_norm_layer(b, m, inputs):
    return _layer_norm(b, _one(b, m, inputs), m.normalized_shape, m.weight, m.bias, m.eps)


@_register("RMSNorm")
def _rms_norm(b, m, inputs):
    x = _one(b, m, inputs)
    k = len(m.normalized_shape)
    eps = m.eps if m.eps is not None else float(np.finfo(b.float_dtype).eps)
    ms = b.reduce("ReduceMean", b.op("Mul", x, x), list(range(-k, 0)))
    y = b.op("Mul", x, b.op("Reciprocal", b.op("Sqrt", b.op("Add", ms, b.const(np.float32(eps))))))
    return y if m.weight is None else b.op("Mul", y, b.param(m.weight))


def _channel_param(b, t, rank):
    """A per-channel (C,) parameter shaped (C, 1, …, 1) to broadcast against (N, C, …)."""
    extra = max(rank - 2, 0)
    return b.param(t, lambda a: a.reshape(a.shape + (1,) * extra), f"c{extra}")


@_register("GroupNorm")
def _group_norm(b, m, inputs):
    x = _one(b, m, inputs)
    shape = b.shape(x)
    if shape is None:
        raise b.fail(m, "the input's shape is unknown")
    # normalize each (sample, group) over its channels and positions: (N, G, -1), then back
    xg = b.reshape(x, [0, m.num_groups, -1])
    centered = b.op("Sub", xg, b.reduce("ReduceMean", xg, [2]))
    var = b.reduce("ReduceMean", b.op("Mul", centered, centered), [2])
    y = b.op("Div", centered, b.op("Sqrt", b.op("Add", var, b.const(np.float32(m.eps)))))
    y = b.op("Reshape", y, b.op("Shape", x))
    if m.weight is not None:
        y = b.op("Add", b.op("Mul", y, _channel_param(b, m.weight, len(shape))), _channel_param(b, m.bias, len(shape)))
    return y


# --- recurrent layers (PyTorch's parameters; ONNX orders the gates differently) ---

_GATES = {"LSTM": [0, 3, 1, 2],  # PyTorch i f g o → ONNX i o f c
          "GRU": [1, 0, 2],  # PyTorch r z n → ONNX z r h
          "RNN": [0]}


def _gates(a, order, hidden):
    return np.concatenate([a[i * hidden:(i + 1) * hidden] for i in order], axis=0)


@_register("RNN", "LSTM", "GRU")
def _recurrent(b, m, inputs):
    kind = type(m).__name__
    if not inputs or len(inputs) > 2:
        raise b.fail(m, f"expected the input and optionally the initial state, got {len(inputs)} inputs")
    x, hx = inputs[0], inputs[1] if len(inputs) > 1 else None
    if kind == "LSTM" and hx is not None and not isinstance(hx, (tuple, list)):
        raise b.fail(m, "an LSTM's initial state is the tuple (h_0, c_0)")
    shape = b.shape(x)
    if shape is not None and len(shape) != 3:
        raise b.fail(m, f"expected a batched 3-D input, got shape {shape} (unbatched inputs are not exported)")
    if getattr(m, "proj_size", 0):
        raise b.fail(m, "proj_size > 0 has no ONNX LSTM equivalent")
    h, layers = m.hidden_size, m.num_layers
    dirs = 2 if m.bidirectional else 1
    order = _GATES[kind]
    attrs = {"hidden_size": h, "direction": "bidirectional" if dirs == 2 else "forward"}
    if kind == "RNN":
        nonlinearity = getattr(m, "nonlinearity", "tanh")
        attrs["activations"] = ["Tanh" if nonlinearity == "tanh" else "Relu"] * dirs
    if kind == "GRU":
        attrs["linear_before_reset"] = 1  # PyTorch applies the reset gate after the hidden matmul
    if m.batch_first:
        x = b.transpose(x, (1, 0, 2))  # ONNX runs (T, N, features)
    h0, c0 = (hx if kind == "LSTM" else (hx, None)) if hx is not None else (None, None)
    h_n, c_n = [], []
    for layer in range(layers):
        suffixes = [f"_l{layer}"] + ([f"_l{layer}_reverse"] if dirs == 2 else [])
        w = [getattr(m, f"weight_ih{s}") for s in suffixes]
        r = [getattr(m, f"weight_hh{s}") for s in suffixes]
        key = f"onnx{layer}"
        W = b.param(w[0], lambda a, w=w: np.stack([_gates(np.asarray(t.data), order, h) for t in w]), key)
        R = b.param(r[0], lambda a, r=r: np.stack([_gates(np.asarray(t.data), order, h) for t in r]), key)
        B = None
        if getattr(m, "bias", True) and getattr(m, f"bias_ih{suffixes[0]}", None) is not None:
            bi = [getattr(m, f"bias_ih{s}") for s in suffixes]
            bh = [getattr(m, f"bias_hh{s}") for s in suffixes]
            B = b.param(bi[0], lambda a, bi=bi, bh=bh: np.stack([
                np.concatenate([_gates(np.asarray(i.data), order, h), _gates(np.asarray(j.data), order, h)])
                for i, j in zip(bi, bh)]), key)
        init_h = None if h0 is None else b.slice(h0, [layer * dirs], [(layer + 1) * dirs], [0])
        init_c = None if c0 is None else b.slice(c0, [layer * dirs], [(layer + 1) * dirs], [0])
        outs = b.op(kind, x, W, R, B, "", init_h, init_c, outputs=3 if kind == "LSTM" else 2, **attrs)
        y, h_n_layer = outs[0], outs[1]
        h_n.append(h_n_layer)
        if kind == "LSTM":
            c_n.append(outs[2])
        # Y (T, dirs, N, H) → (T, N, dirs·H): the directions side by side, as PyTorch's output
        x = b.reshape(b.transpose(y, (0, 2, 1, 3)), [0, 0, -1])
    out = b.transpose(x, (1, 0, 2)) if m.batch_first else x
    h_last = h_n[0] if layers == 1 else b.op("Concat", *h_n, axis=0)
    if kind == "LSTM":
        c_last = c_n[0] if layers == 1 else b.op("Concat", *c_n, axis=0)
        return out, (h_last, c_last)
    return out, h_last


# --- attention and transformers ---

def _activation_fn(b, m, fn):
    """The ONNX form of a transformer's activation function (relu or gelu)."""
    from .. import ops
    if fn is ops.relu:
        return lambda x: b.op("Relu", x)
    if fn is ops.gelu:
        return lambda x: _gelu(b, x)
    raise b.fail(m, f"its activation {getattr(fn, '__name__', fn)!r} is not exported (relu and gelu are)")


def _attention(b, q, k, v, heads, head_dim, causal_len=None, rotary=None):
    """softmax(q kᵀ / √d (+ causal mask)) v over heads: q, k, v are (N, T, H·D); returns the
    (N, T, H·D) output and the (N, H, T, S) weights."""
    def split_heads(t, perm):
        return b.transpose(b.reshape(t, [0, 0, heads, head_dim]), perm)
    qh, kh, vh = (split_heads(t, (0, 2, 1, 3)) for t in (q, k, v))  # (N, H, T, D)
    for t, name in ((q, qh), (k, kh)):
        if b.shape(t) is not None:
            n, length, _ = b.shape(t)
            b.set_shape(name, (n, heads, length, head_dim))
    if rotary is not None:
        qh, kh = rotary(qh), rotary(kh)
    scores = b.op("MatMul", qh, b.transpose(kh, (0, 1, 3, 2)))
    scores = b.op("Mul", scores, b.const(np.float32(1 / math.sqrt(head_dim))))
    if causal_len is not None:  # query i sees keys 0..i
        mask = np.triu(np.full((causal_len, causal_len), -np.inf, dtype=np.float32), k=1)
        scores = b.op("Add", scores, b.const(mask))
    weights = b.op("Softmax", scores, axis=-1)
    out = b.reshape(b.transpose(b.op("MatMul", weights, vh), (0, 2, 1, 3)), [0, 0, heads * head_dim])
    return out, weights


def _mha(b, m, q, k, v):
    if any(s is not None and len(s) != 3 for s in (b.shape(q), b.shape(k), b.shape(v))):
        raise b.fail(m, "expected batched 3-D query, key and value (unbatched inputs are not exported)")
    e = m.embed_dim
    if not m.batch_first:  # (L, N, E) → (N, L, E)
        q, k, v = (b.transpose(t, (1, 0, 2)) for t in (q, k, v))
    bias = m.in_proj_bias
    if m._qkv_same_embed_dim:
        ws = [(m.in_proj_weight, lambda a, i=i: a[i * e:(i + 1) * e].T, f"T{i}") for i in range(3)]
    else:
        ws = [(w, lambda a: a.T, "T") for w in (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)]
    proj = []
    for i, (t, (w, fn, key)) in enumerate(zip((q, k, v), ws)):
        y = b.op("MatMul", t, b.param(w, fn, key))
        if bias is not None:
            y = b.op("Add", y, b.param(bias, lambda a, i=i: a[i * e:(i + 1) * e], f"part{i}"))
        proj.append(y)
    out, weights = _attention(b, *proj, m.num_heads, m.head_dim)
    out = b.linear(out, m.out_proj.weight, m.out_proj.bias)
    if not m.batch_first:
        out = b.transpose(out, (1, 0, 2))
    return out, weights


@_register("MultiheadAttention")
def _mha_layer(b, m, inputs):
    q, k, v = _one(b, m, inputs, 3)
    out, weights = _mha(b, m, q, k, v)
    return out, b.reduce("ReduceMean", weights, [1], keepdims=0)  # averaged over heads, as need_weights gives


@_register("TransformerEncoderLayer")
def _encoder_layer(b, m, inputs):
    x = _one(b, m, inputs)
    act = _activation_fn(b, m, m.activation)

    def sa(t):
        return _mha(b, m.self_attn, t, t, t)[0]

    def ff(t):
        return b.module(m.linear2, act(b.module(m.linear1, t)))

    if m.norm_first:
        x = b.op("Add", x, sa(b.module(m.norm1, x)))
        return b.op("Add", x, ff(b.module(m.norm2, x)))
    x = b.module(m.norm1, b.op("Add", x, sa(x)))
    return b.module(m.norm2, b.op("Add", x, ff(x)))


@_register("TransformerEncoder")
def _encoder(b, m, inputs):
    x = _one(b, m, inputs)
    for layer in m.layers:
        x = b.module(layer, x)
    return x if m.norm is None else b.module(m.norm, x)


def _seq_len(b, m, x, batch_first=True):
    shape = b.shape(x)
    if shape is None:
        raise b.fail(m, "the input's shape is unknown")
    return shape[-2] if batch_first or len(shape) < 3 else shape[0]


@_register("LearnedPositionalEmbedding")
def _learned_positions(b, m, inputs):
    x = _one(b, m, inputs)
    t = _seq_len(b, m, x, m.batch_first)
    pos = b.slice(b.param(m.weight), [0], [t], [0])  # the first T rows (the sequence length is fixed)
    if not m.batch_first and len(b.shape(x)) >= 3:
        pos = b.unsqueeze(pos, [1])
    return b.op("Add", x, pos)


@_register("SinusoidalPositionalEncoding")
def _sinusoids(b, m, inputs):
    x = _one(b, m, inputs)
    t = _seq_len(b, m, x, m.batch_first)
    pe = np.asarray(m.pe.data[:t])
    if not m.batch_first and len(b.shape(x)) >= 3:
        pe = pe[:, None, :]
    return b.op("Add", x, b.const(pe))


def _rotary(b, m, x):
    """x cos + rotate_half(x) sin, rotate_half([x1, x2]) = [-x2, x1]."""
    t = b.shape(x)[-2] if b.shape(x) is not None else None
    if t is None:
        raise b.fail(m, "the input's shape is unknown")
    x1, x2 = b.split(x, [m.dim // 2, m.dim // 2], axis=-1)
    rot = b.op("Concat", b.op("Neg", x2), x1, axis=-1)
    cos, sin = b.const(np.asarray(m.cos.data[:t])), b.const(np.asarray(m.sin.data[:t]))
    return b.op("Add", b.op("Mul", x, cos), b.op("Mul", rot, sin))


@_register("RotaryEmbedding")
def _rotary_layer(b, m, inputs):
    return _rotary(b, m, _one(b, m, inputs))


@_register("CausalSelfAttention")
def _causal_self_attention(b, m, inputs):
    x = _one(b, m, inputs)
    shape = b.shape(x)
    if shape is None or len(shape) != 3:
        raise b.fail(m, f"expected an (N, T, d_model) input, got shape {shape}")
    c = m.d_model
    q, k, v = b.split(b.module(m.c_attn, x), [c, c, c], axis=2)
    for name in (q, k, v):
        b.set_shape(name, shape)
    rotary = None if m.rotary is None else (lambda t: _rotary(b, m.rotary, t))
    out, _ = _attention(b, q, k, v, m.n_head, m.head_dim, causal_len=shape[1], rotary=rotary)
    return b.module(m.resid_dropout, b.module(m.c_proj, out))


@_register("MLP")
def _mlp(b, m, inputs):
    x = _one(b, m, inputs)
    act = _activation_fn(b, m, m.activation)
    return b.module(m.dropout, b.module(m.c_proj, act(b.module(m.c_fc, x))))


@_register("DecoderBlock")
def _decoder_block(b, m, inputs):
    x = _one(b, m, inputs)
    x = b.op("Add", x, b.module(m.attn, b.module(m.ln_1, x)))
    b.set_shape(x, b.shape(inputs[0]))
    return b.op("Add", x, b.module(m.mlp, b.module(m.ln_2, x)))


@_register("GPT")
def _gpt(b, m, inputs):
    idx = _one(b, m, inputs)
    x = b.module(m.wte, idx)
    if m.wpe is not None:
        x = b.module(m.wpe, x)
    x = b.module(m.drop, x)
    for block in m.h:
        x = b.module(block, x)
    return b.module(m.lm_head, b.module(m.ln_f, x)), None  # (logits, loss): no targets, no loss


# --- the export ---

def _batch_axes(model, flat_inputs, dynamic_batch):
    """The batch axis of each input (None: static), as documented in ``export_onnx``."""
    if dynamic_batch is False or dynamic_batch is None:
        return [None] * len(flat_inputs)
    if isinstance(dynamic_batch, (tuple, list)):
        if len(dynamic_batch) != len(flat_inputs):
            raise OnnxExportError(f"export_onnx: dynamic_batch lists {len(dynamic_batch)} axes for "
                                  f"{len(flat_inputs)} inputs")
        return [None if a is None else int(a) for a in dynamic_batch]
    if dynamic_batch is True:
        # the first layer that says where its batch is (an RNN, attention) decides
        batch_first = next((m.batch_first for m in model.modules() if isinstance(getattr(m, "batch_first", None),
                                                                               bool)), True)
        first = 1 if not batch_first and flat_inputs[0].ndim >= 2 else 0
    else:
        first = int(dynamic_batch)
    if not flat_inputs[0].ndim:
        return [None] * len(flat_inputs)
    first %= flat_inputs[0].ndim
    size = flat_inputs[0].shape[first]
    axes = [first]
    for t in flat_inputs[1:]:  # the other inputs' batch axis: the first of the same size
        axes.append(next((i for i, s in enumerate(t.shape) if s == size), None))
    return axes


def _grow(t, axis):
    """``t`` with one more entry along ``axis`` (a copy of its first)."""
    a = np.asarray(t.data)
    return Tensor(np.concatenate([a, np.take(a, [0], axis=axis)], axis=axis))


def _rebuild(structure, leaves):
    """``structure`` (nested tuples / lists of tensors) with its tensors replaced by ``leaves`` in order."""
    it = iter(leaves)

    def walk(s):
        if isinstance(s, (tuple, list)):
            return tuple(walk(e) for e in s)
        return next(it) if isinstance(s, Tensor) else s
    return walk(structure)


def export_onnx(model, example_input, path=None, dynamic_batch=True, opset=MIN_OPSET, check=True):
    """Write ``model`` (a tidu Module, exported in evaluation mode) as an ONNX file at ``path`` and
    return the ``onnx.ModelProto`` (``path=None``: only return it).

    ``example_input`` is one input (Tensor or array) or a tuple of them (nested tuples for a tuple
    argument, as an LSTM's ``(h_0, c_0)``); one forward pass on it gives every layer's shapes. The
    graph's inputs are called ``input`` (or ``input_0``, ``input_1`` …) and its outputs ``output``
    (``output_0`` …; a None in the model's outputs, such as GPT's loss, is left out).

    ``dynamic_batch`` keeps the batch dimension free: ``True`` takes axis 0 of the first input (axis 1
    when the model's first layer with a ``batch_first`` option has it False) and, for each other
    input, the first axis of the same size; an int names the first input's batch axis; a tuple gives
    one axis (or None) per input; ``False`` fixes every dimension. The other dimensions (a sequence's
    length too) keep the example's sizes. ``opset`` is the ONNX operator set (17 or later:
    LayerNormalization). With ``check`` the file is validated by ``onnx.checker.check_model`` (full check).
    """
    onnx = _onnx()
    from onnx import helper
    from ..nn.module import Module
    from ..nn.summary import _tensors, _trace
    if not isinstance(model, Module):
        raise TypeError(f"export_onnx: expected a tidu.nn.Module, got {type(model).__name__}")
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"export_onnx: opset must be an integer from {MIN_OPSET} (LayerNormalization) to "
                              f"{newest} (the newest this onnx package knows), got {opset!r}")
    if isinstance(example_input, dict):
        raise TypeError("export_onnx: example_input must be a Tensor or a tuple of them (keyword inputs are not "
                        "exported)")
    args = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    args = tuple(_to_tensors(a) for a in args)
    flat = _tensors(list(args))
    if not flat:
        raise TypeError("export_onnx: example_input holds no tensor")

    # one forward pass, recording every layer's input and output shapes
    names = {id(m): n for n, m in model.named_modules()}
    names.update({id(p): n for n, p in model.named_parameters()})
    names.update({id(t): n for n, t in model.named_buffers()})
    calls, _, output = _trace(model, args, list(model.named_modules()))
    records = {}
    for c in calls:
        records.setdefault(id(c.module), []).append(([tuple(t.shape) for t in _tensors(list(c.args))],
                                                     [tuple(t.shape) for t in _tensors(c.output)]))
    float_dtype = next((p.data.dtype for p in model.parameters() if p.data.dtype.kind == "f"),
                       next((t.data.dtype for t in flat if t.data.dtype.kind == "f"), np.dtype(np.float32)))
    b = OnnxBuilder(opset, records, names, float_dtype)
    in_names = ["input"] if len(flat) == 1 else [f"input_{i}" for i in range(len(flat))]
    for name, t in zip(in_names, flat):
        b.set_shape(name, t.shape)
    outs = _flatten(b.module(model, *_rebuild(args, in_names)))
    expected = _tensors(output)
    if len(outs) != len(expected):
        raise OnnxExportError(f"export_onnx: the exported graph has {len(outs)} outputs but the model returned "
                              f"{len(expected)} tensors")
    out_names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    for src, dst in zip(outs, out_names):  # name the outputs (and keep them distinct from inputs)
        b.nodes.append(helper.make_node("Identity", [src], [dst], name=f"{dst}_node"))

    # which dims are the batch: grow the batch and see which output dims follow
    axes = _batch_axes(model, flat, dynamic_batch)
    out_batch = [set() for _ in expected]
    if any(a is not None for a in axes):
        grown = _rebuild(args, [t if a is None else _grow(t, a) for t, a in zip(flat, axes)])
        try:
            _, _, bigger = _trace(model, grown, [])
        except (ValueError, TypeError) as e:
            raise OnnxExportError(f"export_onnx: the model does not run on a batch one larger than the example's "
                                  f"({e}); pass dynamic_batch=False for a fixed batch size") from None
        for i, (t, u) in enumerate(zip(expected, _tensors(bigger))):
            out_batch[i] = {d for d, (s, r) in enumerate(zip(t.shape, u.shape)) if s != r}

    def info(name, t, dynamic):
        dims = ["batch" if d in dynamic else int(s) for d, s in enumerate(t.shape)]
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(t.data.dtype)), dims)

    graph = helper.make_graph(
        b.nodes, type(model).__name__,
        [info(n, t, set() if a is None else {a}) for n, t, a in zip(in_names, flat, axes)],
        [info(n, t, d) for n, t, d in zip(out_names, expected, out_batch)],
        initializer=b.initializers)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="tidu",
                              ir_version=helper.find_min_ir_version_for(opsets))
    if check:
        onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        from .files import atomic_write
        with atomic_write(path, "wb") as f:
            f.write(proto.SerializeToString())
    return proto


def _to_tensors(a):
    if isinstance(a, (tuple, list)):
        return tuple(_to_tensors(e) for e in a)
    if isinstance(a, Tensor):
        return a
    return Tensor(np.asarray(a))
