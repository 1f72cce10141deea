"""Recurrent layers: RNN, LSTM, GRU (several layers, bidirectional, batch_first) and their one-step cells.

Parameters carry PyTorch's names (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``,
``…_reverse`` for the second direction, ``weight_hr_l0`` for an LSTM projection) and shapes, and start
as PyTorch's do, U(-1/√hidden, 1/√hidden), so a PyTorch ``state_dict`` loads as is. Each layer and
direction computes its input projections for all time steps in one matmul, then runs the recurrence
as one fused op (``tidu.ops.rnn_sequence``) whose backward is backpropagation through time.

>>> import tidu as td
>>> import tidu.nn as nn
>>> lstm = nn.LSTM(input_size=4, hidden_size=8, num_layers=2, batch_first=True)
>>> out, (h_n, c_n) = lstm(td.randn(3, 5, 4))          # batch 3, 5 time steps, 4 features
>>> out.shape, h_n.shape, c_n.shape
((3, 5, 8), (2, 3, 8), (2, 3, 8))
>>> sorted(lstm.state_dict())[:4]
['bias_hh_l0', 'bias_hh_l1', 'bias_ih_l0', 'bias_ih_l1']
"""
import math
import warnings

import numpy as np

from .. import backend
from ..ops import cat, dropout, linear, rnn_sequence, squeeze, stack, transpose, unsqueeze
from ..tensor import Parameter, Tensor
from . import init
from .module import Module

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _empty(shape, dtype):
    return Parameter(np.empty(shape, dtype=np.dtype(dtype) if dtype is not None else backend.get_default_dtype()))


def _positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _zeros_like_state(x, shape):
    return Tensor(backend.array_module(x.data).zeros(shape, dtype=x.dtype))


class RNNBase(Module):
    """The shared machinery of RNN, LSTM and GRU (``mode`` is ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"``
    or ``"GRU"``); use those classes."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _positive_int(name, "input_size", input_size)
        self.hidden_size = _positive_int(name, "hidden_size", hidden_size)
        self.num_layers = _positive_int(name, "num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1] (the probability of zeroing an element "
                             f"of each layer's output but the last), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} acts between layers only, so with num_layers=1 it does "
                          "nothing", UserWarning, stacklevel=2)
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(f"{name}: proj_size must be a non-negative integer, got {proj_size!r}")
        if proj_size and mode != "LSTM":
            raise ValueError(f"{name}: proj_size is only supported by LSTM")
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: proj_size ({proj_size}) must be smaller than hidden_size ({hidden_size})")
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), int(proj_size)
        gates = _GATES[mode] * hidden_size
        out_size = proj_size or hidden_size  # the size of h
        self._flat_weights_names = []
        for layer in range(num_layers):
            for suffix in ("", "_reverse")[:1 + self.bidirectional]:
                in_size = input_size if layer == 0 else out_size * self.num_directions
                shapes = [("weight_ih", (gates, in_size)), ("weight_hh", (gates, out_size))]
                if bias:
                    shapes += [("bias_ih", (gates,)), ("bias_hh", (gates,))]
                if proj_size:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
                for kind, shape in shapes:
                    key = f"{kind}_l{layer}{suffix}"
                    setattr(self, key, _empty(shape, dtype))
                    self._flat_weights_names.append(key)
        self.reset_parameters()
        if device is not None:
            self.to(device=device)

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def all_weights(self):
        """The parameters of each layer and direction, in PyTorch's order."""
        per = len(self._flat_weights_names) // (self.num_layers * self.num_directions)
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i:i + per]] for i in range(0, len(names), per)]

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """Nothing to do (PyTorch compacts cuDNN weights here); kept so PyTorch code runs unchanged."""

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    def _check_state(self, name, state, expected, batched):
        if not isinstance(state, Tensor):
            raise TypeError(f"{self!r}: {name} must be a Tensor, got {type(state).__name__}")
        if tuple(state.shape) != expected:
            what = "(num_layers * num_directions, batch, " if batched else "(num_layers * num_directions, "
            size = "hidden_size" if name == "c0" or not self.proj_size else "proj_size"
            raise ValueError(f"{type(self).__name__}: {name} has shape {tuple(state.shape)}, expected {expected} "
                             f"= {what}{size}) for an input of this batch size")

    def forward(self, input, hx=None):
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor of shape (seq_len, batch, input_size)"
                            f"{' with batch_first=False' if not self.batch_first else ''}, "
                            f"got {type(input).__name__} (packed sequences are not supported)")
        layout = "(batch, seq_len, input_size)" if self.batch_first else "(seq_len, batch, input_size)"
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(f"{name}({self.input_size}, {self.hidden_size}): expected an input of shape {layout} "
                             f"(or (seq_len, input_size) unbatched) with input_size={self.input_size}, "
                             f"got shape {tuple(input.shape)}")
        if input.dtype != self.weight_ih_l0.dtype:
            raise TypeError(f"{name}: input is {input.dtype} but the layer's weights are {self.weight_ih_l0.dtype}; "
                            f"convert one of them (input.to({str(self.weight_ih_l0.dtype)!r}) or model.to(...))")
        batched = input.ndim == 3
        x = input if not batched else (transpose(input, 0, 1) if self.batch_first else input)
        if not batched:
            x = unsqueeze(x, 1)
        T, B = x.shape[0], x.shape[1]
        if T == 0:
            raise ValueError(f"{name}: the input has no time steps (shape {tuple(input.shape)})")
        n_states, out_size = self.num_layers * self.num_directions, self.proj_size or self.hidden_size
        lstm = self.mode == "LSTM"
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                    raise TypeError(f"{name}: hx must be a tuple (h0, c0), got {type(hx).__name__}")
                h0, c0 = hx
            else:
                if isinstance(hx, (tuple, list)):
                    raise TypeError(f"{name}: hx must be one Tensor h0 (only LSTM takes a tuple (h0, c0))")
                h0 = hx
            lead = (n_states, B) if batched else (n_states,)
            self._check_state("h0", h0, lead + (out_size,), batched)
            if lstm:
                self._check_state("c0", c0, lead + (self.hidden_size,), batched)
            if not batched:
                h0, c0 = unsqueeze(h0, 1), (unsqueeze(c0, 1) if lstm else None)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                w_ih, w_hh = getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)
                b_ih = getattr(self, "bias_ih" + suffix) if self.bias else None
                b_hh = getattr(self, "bias_hh" + suffix) if self.bias else None
                w_hr = getattr(self, "weight_hr" + suffix) if self.proj_size else None
                h = h0[k] if h0 is not None else _zeros_like_state(x, (B, out_size))
                c = None
                if lstm:
                    c = c0[k] if c0 is not None else _zeros_like_state(x, (B, self.hidden_size))
                gi = linear(x, w_ih, b_ih)  # every time step's input projection in one matmul
                out, state = rnn_sequence(self.mode, gi, h, w_hh, b_hh, c0=c, w_hr=w_hr, reverse=direction == 1)
                if lstm:
                    state, c_last = state
                    c_n.append(c_last)
                h_n.append(state)
                outs.append(out)
            x = outs[0] if len(outs) == 1 else cat(outs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = dropout(x, self.dropout, True)
        h_n = stack(h_n) if len(h_n) > 1 else unsqueeze(h_n[0], 0)
        if lstm:
            c_n = stack(c_n) if len(c_n) > 1 else unsqueeze(c_n[0], 0)
        if not batched:
            x, h_n = squeeze(x, 1), squeeze(h_n, 1)
            c_n = squeeze(c_n, 1) if lstm else None
        elif self.batch_first:
            x = transpose(x, 0, 1)
        return (x, (h_n, c_n)) if lstm else (x, h_n)


class RNN(RNNBase):
    """An Elman RNN, ``h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)`` (or relu), as in PyTorch.

    ``forward(input, h0=None)`` takes input (L, N, H_in) — (N, L, H_in) with ``batch_first`` — or
    (L, H_in) unbatched, and h0 (num_layers × D, N, H_out); it returns ``(output, h_n)``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> rnn = nn.RNN(3, 5, nonlinearity="relu", bidirectional=True)
    >>> out, h_n = rnn(td.randn(7, 2, 3))
    >>> out.shape, h_n.shape
    ((7, 2, 10), (2, 2, 5))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory, as in PyTorch: gates (i, f, g, o) from ``x W_ihᵀ + b_ih + h W_hhᵀ + b_hh``,
    ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)`` (times ``W_hrᵀ`` when ``proj_size > 0``).

    ``forward(input, (h0, c0)=None)`` returns ``(output, (h_n, c_n))``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> lstm = nn.LSTM(3, 6, proj_size=2)
    >>> out, (h_n, c_n) = lstm(td.randn(4, 3))          # unbatched: (seq_len, input_size)
    >>> out.shape, h_n.shape, c_n.shape
    ((4, 2), (1, 2), (1, 6))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device=device, dtype=dtype)


class GRU(RNNBase):
    """Gated recurrent unit, as in PyTorch: ``r, z = σ(…)``, ``n = tanh(x W_inᵀ + b_in + r (h W_hnᵀ + b_hn))``,
    ``h_t = (1 - z) n + z h_{t-1}``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> gru = nn.GRU(3, 4, num_layers=2, batch_first=True, dropout=0.1)
    >>> out, h_n = gru(td.randn(2, 6, 3))
    >>> out.shape, h_n.shape
    ((2, 6, 4), (2, 2, 4))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)


class RNNCellBase(Module):
    """One time step of a recurrent layer, with parameters ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``."""

    def __init__(self, mode, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _positive_int(name, "input_size", input_size)
        self.hidden_size = _positive_int(name, "hidden_size", hidden_size)
        self.bias = bool(bias)
        gates = _GATES[mode] * hidden_size
        self.weight_ih = _empty((gates, input_size), dtype)
        self.weight_hh = _empty((gates, hidden_size), dtype)
        if bias:
            self.bias_ih, self.bias_hh = _empty((gates,), dtype), _empty((gates,), dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s

    def _step(self, input, hx):
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{name}({self.input_size}, {self.hidden_size}): expected an input of shape "
                             f"(batch, input_size) or (input_size,) with input_size={self.input_size}, "
                             f"got shape {tuple(input.shape)}")
        if input.dtype != self.weight_ih.dtype:
            raise TypeError(f"{name}: input is {input.dtype} but the cell's weights are {self.weight_ih.dtype}")
        batched = input.ndim == 2
        x = input if batched else unsqueeze(input, 0)
        expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        lstm = self.mode == "LSTM"
        if hx is None:
            states = [_zeros_like_state(x, (x.shape[0], self.hidden_size))] * (2 if lstm else 1)
        else:
            if lstm and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError(f"{name}: hx must be a tuple (h, c), got {type(hx).__name__}")
            states = list(hx) if lstm else [hx]
            for label, s in zip(("h", "c"), states):
                if not isinstance(s, Tensor) or tuple(s.shape) != expected:
                    got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                    raise ValueError(f"{name}: {label} has shape {got}, expected {expected}")
            if not batched:
                states = [unsqueeze(s, 0) for s in states]
        gi = unsqueeze(linear(x, self.weight_ih, self.bias_ih), 0)
        out, state = rnn_sequence(self.mode, gi, states[0], self.weight_hh, self.bias_hh,
                                  c0=states[1] if lstm else None)
        state = tuple(state) if lstm else (state,)
        if not batched:
            state = tuple(squeeze(s, 0) for s in state)
        return state if lstm else state[0]


class RNNCell(RNNCellBase):
    """One step ``h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` (or relu); ``forward(input, h=None)``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> cell = nn.RNNCell(3, 5)
    >>> h = None
    >>> for x in td.randn(4, 2, 3):                   # loop over 4 time steps of a batch of 2
    ...     h = cell(x, h)
    >>> h.shape
    (2, 5)
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, bias,
                         device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        return self._step(input, hx)


class LSTMCell(RNNCellBase):
    """One LSTM step; ``forward(input, (h, c)=None)`` returns ``(h', c')``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> h, c = nn.LSTMCell(3, 5)(td.randn(2, 3))
    >>> h.shape, c.shape
    ((2, 5), (2, 5))
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        return self._step(input, hx)


class GRUCell(RNNCellBase):
    """One GRU step; ``forward(input, h=None)`` returns ``h'``.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> nn.GRUCell(3, 5)(td.randn(3)).shape           # unbatched
    (5,)
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        return self._step(input, hx)
