"""``Tensor``: an array plus the graph edge that produced it.

The array (NumPy or CuPy) lives in ``.data``; ``.grad`` is a Tensor once backward has run.
Operators and methods (``+``, ``@``, ``.sum()``, ``.reshape()`` …) are the ops of ``tidu.ops``,
attached to the class in ``tidu/ops/__init__.py``.
"""
import numpy as np

from . import autograd, backend

_grad_enabled = autograd._grad_enabled
_ndarray = np.ndarray


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_hooks", "__weakref__")
    __array_ufunc__ = None  # ndarray (op) Tensor defers to Tensor's reflected operator

    def __init__(self, data, requires_grad=False):
        # Ops pass arrays of the intended dtype; anything else (a number, a list) goes through as_array.
        self.data = data if type(data) is _ndarray else as_array(data)
        self.grad = None
        self.requires_grad = requires_grad
        self._parents = ()
        self._backward = None
        self._hooks = None

    # --- what it is ---
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self._backward is None

    @property
    def grad_fn(self):
        return self._backward

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def dim(self):
        return self.data.ndim

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): only a one-element tensor converts to a Python number, got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def numpy(self):
        """The array itself on the CPU (shares memory, as in PyTorch)."""
        return self.data if isinstance(self.data, (np.ndarray, np.generic)) else self.data.get()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.data.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous; use .any() or .all()")
        return bool(self.data.item())

    __hash__ = object.__hash__

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", precision=4, threshold=100, prefix="tensor(")
        extras = []
        if self.data.dtype not in (backend.float32, backend.int64, backend.bool_):
            extras.append(f"dtype={self.data.dtype}")
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self._backward is not None:
            extras.append("grad_fn=<backward>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    # --- autograd ---
    def backward(self, gradient=None, retain_graph=False):
        autograd.backward(self, gradient, retain_graph)

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad_: only floating tensors can require gradients, got {self.data.dtype}")
        self.requires_grad = requires_grad
        return self

    def detach(self):
        return Tensor(self.data)

    def detach_(self):
        self._backward, self._parents, self.requires_grad = None, (), False
        return self

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        if self._backward is None:
            return self
        inner = self._backward
        me = self

        def keep(g):
            me.grad = Tensor(g.copy()) if me.grad is None else Tensor(me.grad.data + g)
            return inner(g)
        self._backward = keep
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed (for a leaf: once per backward,
        with the sum over all its uses); a Tensor it returns replaces the gradient. Returns a handle
        whose ``remove()`` takes the hook away."""
        if self._backward is None:
            return _HookHandle(self._hook_lists()["pre"], hook)
        inner = self._backward

        def hooked(g):
            out = hook(Tensor(g))
            return inner(g if out is None else out.data)
        self._backward = hooked
        return _HookHandle(None, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` on this leaf after its ``.grad`` has been updated in a backward."""
        if self._backward is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors accumulate gradients")
        return _HookHandle(self._hook_lists()["post"], hook)

    def _hook_lists(self):
        if self._hooks is None:
            self._hooks = {"pre": [], "post": []}
        return self._hooks

    # --- devices and dtypes ---
    def to(self, *args, dtype=None, device=None, copy=False):
        for a in args:
            if isinstance(a, str) or (hasattr(a, "type") and not isinstance(a, np.dtype)):
                device = a
            else:
                dtype = a
        out = self
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            out = out.type(dtype)
        if device is not None and backend.device_of(out.data) != str(device).split(":")[0]:
            moved = backend.to_device(out.data, device)
            out = _result(moved, (out,), lambda g: (backend.to_device(g, self.device),))
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=0):
        return self.to(f"cuda:{device}")

    def type(self, dtype):
        dtype = np.dtype(dtype)
        if dtype == self.data.dtype:
            return self
        src = self.data.dtype
        # d cast(x)/dx = 1 (the gradient is cast back); casts to integers carry no gradient
        return _result(self.data.astype(dtype), (self,), lambda g: (g.astype(src),)) if dtype.kind == "f" \
            else Tensor(self.data.astype(dtype))

    def float(self):
        return self.type(backend.float32)

    def double(self):
        return self.type(backend.float64)

    def half(self):
        return self.type(backend.float16)

    def long(self):
        return self.type(backend.int64)

    def int(self):
        return self.type(backend.int32)

    def bool(self):
        return self.type(backend.bool_)

    # --- in-place updates of the data (never recorded; refused on tensors in a live graph) ---
    def _check_inplace(self, op):
        if self.requires_grad and _grad_enabled[0]:
            raise RuntimeError(
                f"{op}: in-place change of a tensor that requires grad; wrap it in `with td.no_grad():` "
                "(parameter updates) or work on a copy")

    def zero_(self):
        self._check_inplace("zero_")
        self.data[...] = 0
        return self

    def fill_(self, value):
        self._check_inplace("fill_")
        self.data[...] = value
        return self

    def copy_(self, src):
        self._check_inplace("copy_")
        src = src.data if isinstance(src, Tensor) else src
        if np.shape(src) != self.data.shape and np.broadcast_shapes(np.shape(src), self.data.shape) != self.data.shape:
            raise ValueError(f"copy_: source of shape {np.shape(src)} does not broadcast to {self.shape}")
        self.data[...] = src
        return self

    def _inplace(self, op, ufunc, other):
        self._check_inplace(op)
        other = other.data if isinstance(other, Tensor) else other
        ufunc(self.data, other, out=self.data, casting="same_kind")
        return self

    def add_(self, other, alpha=1):
        return self._inplace("add_", np.add, other if alpha == 1 else other * alpha)

    def sub_(self, other, alpha=1):
        return self._inplace("sub_", np.subtract, other if alpha == 1 else other * alpha)

    def mul_(self, other):
        return self._inplace("mul_", np.multiply, other)

    def div_(self, other):
        return self._inplace("div_", np.true_divide, other)

    def clamp_(self, min=None, max=None):
        self._check_inplace("clamp_")
        np.clip(self.data, min, max, out=self.data)
        return self

    def uniform_(self, a=0.0, b=1.0):
        self._check_inplace("uniform_")
        self.data[...] = backend.rng().uniform(a, b, self.data.shape)
        return self

    def normal_(self, mean=0.0, std=1.0):
        self._check_inplace("normal_")
        self.data[...] = backend.rng().normal(mean, std, self.data.shape)
        return self

    def __iadd__(self, other):
        return self._inplace("+=", np.add, other)

    def __isub__(self, other):
        return self._inplace("-=", np.subtract, other)

    def __imul__(self, other):
        return self._inplace("*=", np.multiply, other)

    def __itruediv__(self, other):
        return self._inplace("/=", np.true_divide, other)

    def __setitem__(self, index, value):
        self._check_inplace("__setitem__")
        from .ops.indexing import _array_index
        self.data[_array_index(index)] = value.data if isinstance(value, Tensor) else value


class _HookHandle:
    def __init__(self, hooks, hook):
        self.hooks, self.hook = hooks, hook
        if hooks is not None:
            hooks.append(hook)

    def remove(self):
        if self.hooks is not None and self.hook in self.hooks:
            self.hooks.remove(self.hook)


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable parameter (requires_grad by default)."""
    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty((0,), dtype=backend.get_default_dtype())
        elif isinstance(data, Tensor):
            data = data.data
        else:
            data = as_array(data)
        super().__init__(data, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _result(data, parents, backward):
    """Wrap an op's output array; record the edge only when grad mode is on and a parent needs it."""
    if type(data) is not _ndarray and isinstance(data, np.generic):
        data = np.asarray(data)  # NumPy returns scalars from 0-d arithmetic; keep arrays
    out = Tensor(data)
    if _grad_enabled[0]:
        for p in parents:
            if p.requires_grad:
                out.requires_grad = True
                out._parents = parents
                out._backward = backward
                break
    return out


def as_array(data, dtype=None):
    """Convert user data to an array: floats (and lists of them) to the default float dtype,
    Python ints to int64, arrays keep their dtype."""
    if isinstance(data, Tensor):
        a = data.data
    elif isinstance(data, np.ndarray) or backend.array_module(data) is not np:
        a = data
    else:
        a = np.asarray(data)
        if a.dtype == np.float64 and not isinstance(data, np.generic):
            a = a.astype(backend.get_default_dtype())
        elif a.dtype.kind == "i" and a.dtype != np.int64:
            a = a.astype(np.int64)
        elif a.dtype == object:
            raise TypeError(f"tensor(): cannot make a tensor from {type(data).__name__} holding mixed or ragged data")
    if dtype is not None:
        a = a.astype(np.dtype(dtype), copy=False)
    return a


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (a list, number, array or Tensor)."""
    a = as_array(data, dtype)
    a = a.copy() if (a is data or (isinstance(data, Tensor) and a is data.data)) else a
    if device is not None:
        a = backend.to_device(a, device)
    t = Tensor(a)
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory with an array of the right dtype (PyTorch's as_tensor)."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    a = as_array(data, dtype)
    return Tensor(a if device is None else backend.to_device(a, device))


def from_numpy(array):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)
