"""Reverse-mode autodiff: grad mode, the backward walk, functional ``grad``, gradcheck.

Every op output that needs a gradient carries ``_parents`` (its input Tensors) and ``_backward``
(a function from the output's gradient array to one gradient array per parent, or None where a
parent needs none). ``backward`` orders the graph with an explicit stack (no recursion limit),
walks it once in reverse, and frees each node's closure as soon as it has run.
"""
import numpy as np

# Grad mode is process-wide (a plain list cell, read on every op: cheaper than thread-local state).
_grad_enabled = [True]


def is_grad_enabled():
    return _grad_enabled[0]


class set_grad_enabled:
    """Context manager and decorator that turns graph recording on or off."""

    def __init__(self, mode=True):
        self.mode = bool(mode)

    def __enter__(self):
        self.prev = _grad_enabled[0]
        _grad_enabled[0] = self.mode

    def __exit__(self, *exc):
        _grad_enabled[0] = self.prev

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)(*self._args()):
                return fn(*args, **kwargs)
        return wrapper

    def _args(self):
        return (self.mode,)


class no_grad(set_grad_enabled):
    """``with td.no_grad():`` — ops record no graph (evaluation, parameter updates)."""

    def __init__(self):
        super().__init__(False)

    def _args(self):
        return ()


class enable_grad(set_grad_enabled):
    def __init__(self):
        super().__init__(True)

    def _args(self):
        return ()


inference_mode = no_grad


def unbroadcast(grad, shape):
    """The adjoint of broadcasting: sum ``grad`` back down to ``shape``."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _freed(grad):
    raise RuntimeError(
        "backward: this part of the graph was already freed by an earlier backward(); "
        "call backward(retain_graph=True) the first time to walk it again")


def _topological_order(roots):
    """Nodes (tensors with a _backward) reachable from roots, each after all its consumers."""
    order, seen = [], set()
    stack = [(r, False) for r in roots if r._backward is not None]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node._parents:
            if p._backward is not None and id(p) not in seen:
                stack.append((p, False))
    order.reverse()
    return order


def _last_uses(order):
    """For each position in ``order``, the leaves that it is the last node to send a gradient to."""
    last = {}
    for i, node in enumerate(order):
        for p in node._parents:
            if p._backward is None and p.requires_grad:
                last[id(p)] = (i, p)
    done_at = {}
    for i, p in last.values():
        done_at.setdefault(i, []).append(p)
    return done_at


# Callbacks queued during a backward run once it has finished (innermost backward first).
_callback_stack = []


def queue_callback(fn):
    """Run ``fn()`` when the backward now in progress has finished (call it from a hook)."""
    if not _callback_stack:
        raise RuntimeError("queue_callback: can only be called while backward is running (from a hook)")
    _callback_stack[-1].append(fn)


def run_backward(roots, root_grads, retain_graph=False, capture=None):
    """Propagate ``root_grads`` from ``roots``. A leaf's gradients from all its uses are summed and
    delivered once, right after its last use, into ``.grad`` (hooks fire then); with ``capture``
    (ids of tensors) they are returned in a dict instead and no ``.grad`` is touched."""
    grads, leaf_grads, captured = {}, {}, {}
    for r, g in zip(roots, root_grads):
        store = leaf_grads if r._backward is None else grads
        store[id(r)] = store[id(r)] + g if id(r) in store else g
    order = _topological_order(roots)
    done_at = _last_uses(order)
    _callback_stack.append([])
    try:
        used = {id(p) for leaves in done_at.values() for p in leaves}
        for r in roots:  # a leaf root that nothing else feeds gets its gradient now
            if r._backward is None and r.requires_grad and id(r) not in used and id(r) in leaf_grads:
                _deliver(r, leaf_grads.pop(id(r)), capture, captured)
        for i, node in enumerate(order):
            g = grads.pop(id(node), None)
            if g is not None:
                if capture is not None and id(node) in capture:
                    captured[id(node)] = captured.get(id(node), 0) + g
                for p, pg in zip(node._parents, node._backward(g)):
                    if pg is None or not p.requires_grad:
                        continue
                    k = id(p)
                    if p._backward is not None:
                        grads[k] = grads[k] + pg if k in grads else pg
                    elif k in leaf_grads:
                        leaf_grads[k] = leaf_grads[k] + pg
                    else:  # it may become .grad, which accumulates in place: never alias another array
                        leaf_grads[k] = pg if (pg is not g and pg.base is None) else pg.copy(order="K")
            if not retain_graph:
                node._backward, node._parents = _freed, ()
            for leaf in done_at.get(i, ()):
                if id(leaf) in leaf_grads:
                    _deliver(leaf, leaf_grads.pop(id(leaf)), capture, captured)
    finally:
        callbacks = _callback_stack.pop()
    for fn in callbacks:
        fn()
    return captured


def _deliver(leaf, g, capture, captured):
    if capture is not None:
        if id(leaf) in capture:
            captured[id(leaf)] = g
        return
    from .tensor import Tensor
    hooks = leaf._hooks
    if hooks:
        for hook in hooks["pre"]:
            out = hook(Tensor(g))
            if out is not None:
                g = out.data
    if leaf.grad is None:
        leaf.grad = Tensor(np.asarray(g))
    else:
        leaf.grad.data += g
    if hooks:
        for hook in hooks["post"]:
            hook(leaf)


def backward(tensor, gradient=None, retain_graph=False):
    if not tensor.requires_grad:
        raise RuntimeError(
            f"backward: the tensor of shape {tuple(tensor.shape)} does not require grad and has no graph; "
            "create inputs with requires_grad=True (and do not call backward inside no_grad())")
    if gradient is None:
        if tensor.data.size != 1:
            raise RuntimeError(
                f"backward: gradient can be implicit only for a scalar output, got shape {tuple(tensor.shape)}; "
                "pass gradient=td.ones_like(out) or reduce the output first (out.sum(), out.mean())")
        g = np.ones_like(tensor.data) if type(tensor.data) is np.ndarray else tensor.data * 0 + 1
    else:
        g = gradient.data if hasattr(gradient, "data") and not isinstance(gradient, np.ndarray) else gradient
        g = np.array(g, dtype=tensor.data.dtype) if isinstance(g, (int, float, list, np.ndarray)) else g.copy()
        if g.shape != tensor.data.shape:
            raise ValueError(
                f"backward: gradient has shape {tuple(g.shape)} but the output has shape {tuple(tensor.shape)}; "
                "they must match")
    run_backward([tensor], [g], retain_graph=retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=False, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned as a tuple (``.grad`` untouched)."""
    from .tensor import Tensor
    if create_graph:
        raise NotImplementedError(
            "grad(create_graph=True): higher-order gradients are not supported; backward closures run on raw arrays")
    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    single_in = isinstance(inputs, Tensor)
    inputs = [inputs] if single_in else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    root_grads = []
    for out, go in zip(outputs, grad_outputs):
        if go is None:
            if out.data.size != 1:
                raise RuntimeError(
                    f"grad: grad_outputs is needed for a non-scalar output of shape {tuple(out.shape)}")
            root_grads.append(out.data * 0 + 1)
        else:
            root_grads.append(go.data if isinstance(go, Tensor) else np.asarray(go, dtype=out.data.dtype))
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            raise RuntimeError(f"grad: input {i} (shape {tuple(x.shape)}) does not require grad")
    captured = run_backward(outputs, root_grads, retain_graph=retain_graph, capture={id(x) for x in inputs})
    result = []
    for i, x in enumerate(inputs):
        g = captured.get(id(x))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {i} (shape {tuple(x.shape)}) was not used to compute the outputs; "
                "pass allow_unused=True to get None for it")
        result.append(None if g is None else Tensor(np.array(g, copy=True)))
    return tuple(result)


class GradcheckError(AssertionError):
    pass


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check ``fn``'s analytic gradients against central finite differences, in float64.

    Compares the vector-Jacobian product for a random cotangent ``v``, element by element of
    every input that requires grad. Returns True, or raises GradcheckError naming the input,
    the element and both values.

    >>> import tidu as td
    >>> x = td.randn(3, 4, dtype=td.float64, requires_grad=True)
    >>> td.gradcheck(lambda t: (t * t).sum(dim=1), x)
    True
    """
    from .tensor import Tensor
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad and x.dtype != np.float64:
            raise GradcheckError(f"gradcheck: input {i} is {x.dtype}; finite differences need float64 inputs")
    out = fn(*inputs)
    outs = [out] if isinstance(out, Tensor) else [o for o in out if isinstance(o, Tensor)]
    rs = np.random.default_rng(seed)
    vs = [rs.standard_normal(o.shape) for o in outs]

    def projected():
        with no_grad():
            o = fn(*inputs)
        os_ = [o] if isinstance(o, Tensor) else [t for t in o if isinstance(t, Tensor)]
        return sum(float((t.data.astype(np.float64) * v).sum()) for t, v in zip(os_, vs))

    checked = [(i, x) for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    differentiable = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
    if differentiable:
        analytic = grad([o for o, _ in differentiable], [x for _, x in checked],
                        [v.astype(o.dtype) for o, v in differentiable], allow_unused=True)
    else:
        analytic = [None] * len(checked)
    for (i, x), a in zip(checked, analytic):
        a = np.zeros(x.shape) if a is None else a.data
        flat = x.data.reshape(-1)  # a view: perturb in place
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            plus = projected()
            flat[j] = orig - eps
            minus = projected()
            flat[j] = orig
            numeric = (plus - minus) / (2 * eps)
            got = a.reshape(-1)[j]
            if not (abs(got - numeric) <= atol + rtol * abs(numeric) or (np.isnan(got) and np.isnan(numeric))):
                element = tuple(int(k) for k in np.unravel_index(j, x.shape))
                raise GradcheckError(
                    f"gradcheck: input {i} (shape {tuple(x.shape)}), element {element}: "
                    f"analytic {got:.8g} vs numeric {numeric:.8g}")
    return True
