"""Convolution layers: Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d (PyTorch's arguments, weight
shapes, initialization and state_dict keys ``weight`` / ``bias``)."""
import math

import numpy as np

from .. import backend
from ..ops import conv1d, conv2d, conv_transpose1d, conv_transpose2d, pad
from ..ops.conv import _padding, _tuple
from ..tensor import Parameter
from . import init
from .module import Module

__all__ = ["Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    _nd = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 padding_mode, output_padding=0, device=None, dtype=None):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
                             f"divisible by groups ({groups})")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _tuple(name, "kernel_size", kernel_size, nd)
        self.stride = _tuple(name, "stride", stride, nd)
        self.dilation = _tuple(name, "dilation", dilation, nd)
        if isinstance(padding, str):
            _padding(name, padding, self.kernel_size, self.stride, self.dilation)  # validates 'same' / 'valid'
            self.padding = padding
        else:
            self.padding = _tuple(name, "padding", padding, nd)
        if self._transposed and (isinstance(padding, str) or padding_mode != "zeros"):
            raise ValueError(f"{name}: only numeric padding with padding_mode='zeros' is supported")
        self.output_padding = _tuple(name, "output_padding", output_padding, nd)
        self.padding_mode = padding_mode
        dtype = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        shape = ((in_channels, out_channels // groups) if self._transposed else
                 (out_channels, in_channels // groups)) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        # PyTorch's default: weight ~ U(±1/√fan_in) (kaiming_uniform_ with a=√5), bias likewise;
        # fan_in = weight.size(1) × kernel elements (for a transposed conv that is out_channels/groups)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _check_input(self, input):
        nd, c = self._nd, self.in_channels
        spatial = "H, W" if nd == 2 else "L"
        shape = tuple(getattr(input, "shape", ()))
        if len(shape) not in (nd + 1, nd + 2):
            raise ValueError(f"{self._name()}: expected a {nd + 2}-D input (N, {c}, {spatial}) or {nd + 1}-D "
                             f"({c}, {spatial}), got shape {shape}")
        if shape[-nd - 1] != c:
            raise ValueError(f"{self._name()}: expected input with {c} channels, (N, {c}, {spatial}), "
                             f"got shape {shape}")

    def _name(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


class _Conv(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)

    def forward(self, input):
        self._check_input(input)
        padding = self.padding
        if self.padding_mode != "zeros":  # pad explicitly (F.pad lists the last dimension first)
            p = _padding(type(self).__name__, padding, self.kernel_size, self.stride, self.dilation)
            widths = [w for i in reversed(range(self._nd)) for w in (p[2 * i], p[2 * i + 1])]
            input, padding = pad(input, widths, mode=self.padding_mode), 0
        fn = conv2d if self._nd == 2 else conv1d
        return fn(input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class Conv2d(_Conv):
    """2-D convolution over (N, C, H, W) inputs; weight (out_channels, in_channels/groups, kH, kW).

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> conv = nn.Conv2d(3, 8, 3, padding="same")
    >>> conv(td.randn(2, 3, 10, 10)).shape, conv.weight.shape
    ((2, 8, 10, 10), (8, 3, 3, 3))
    """
    _nd = 2


class Conv1d(_Conv):
    """1-D convolution over (N, C, L) inputs; weight (out_channels, in_channels/groups, kL).

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> nn.Conv1d(4, 6, 3, stride=2)(td.randn(2, 4, 11)).shape
    (2, 6, 5)
    """
    _nd = 1


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, output_padding, device=device, dtype=dtype)

    def _output_padding(self, input, output_size):
        """The output_padding that makes the output ``output_size`` (PyTorch's forward(x, output_size))."""
        if output_size is None:
            return self.output_padding
        nd = self._nd
        output_size = tuple(int(s) for s in output_size)[-nd:]
        result = []
        for d in range(nd):
            size = input.shape[d - nd]
            least = ((size - 1) * self.stride[d] - 2 * self.padding[d]
                     + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            extra = output_size[d] - least
            if not 0 <= extra < max(self.stride[d], self.dilation[d]):
                raise ValueError(f"{self._name()}: output_size {output_size} is not reachable from input of shape "
                                 f"{tuple(input.shape)}; dimension {d} must lie in "
                                 f"[{least}, {least + max(self.stride[d], self.dilation[d]) - 1}]")
            result.append(extra)
        return tuple(result)

    def forward(self, input, output_size=None):
        self._check_input(input)
        fn = conv_transpose2d if self._nd == 2 else conv_transpose1d
        return fn(input, self.weight, self.bias, self.stride, self.padding, self._output_padding(input, output_size),
                  self.groups, self.dilation)


class ConvTranspose2d(_ConvTranspose):
    """Transposed 2-D convolution (the gradient of Conv2d with respect to its input), for upsampling;
    weight (in_channels, out_channels/groups, kH, kW).

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
    >>> up(td.randn(2, 8, 5, 5)).shape, up.weight.shape
    ((2, 4, 10, 10), (8, 4, 3, 3))
    """
    _nd = 2


class ConvTranspose1d(_ConvTranspose):
    """Transposed 1-D convolution; weight (in_channels, out_channels/groups, kL)."""
    _nd = 1
