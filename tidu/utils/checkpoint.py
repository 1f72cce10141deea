"""Activation checkpointing: trade compute for memory (Chen et al., 2016, "Training Deep Nets with
Sublinear Memory Cost").

``checkpoint(fn, *args)`` runs ``fn`` without recording a graph, so none of its intermediate
activations stay alive; the output is one graph node whose backward re-runs ``fn`` with gradients on
(the same random numbers: the generator's state is saved and restored, so dropout masks repeat) and
backpropagates through that fresh graph. Parameters used inside ``fn`` get their gradients
accumulated into ``.grad`` during that inner pass, as in PyTorch's reentrant checkpoint; for the
same reason ``td.grad()`` cannot see them through a checkpoint (only ``backward()``).
"""
from .. import backend
from ..autograd import is_grad_enabled, no_grad, run_backward, set_grad_enabled
from ..tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential"]


def _owner_parameters(fn):
    """Parameters that ``fn`` may use without taking them as arguments: a Module's, or a bound method's."""
    module = fn if hasattr(fn, "parameters") else getattr(fn, "__self__", None)
    return list(module.parameters()) if hasattr(module, "parameters") else []


def checkpoint(fn, *args, preserve_rng_state=True, **kwargs):
    """``fn(*args, **kwargs)``, keeping only its inputs and output for backward; the activations
    inside ``fn`` are recomputed when the gradient arrives. ``fn`` must return one Tensor.

    Gradients flow to the Tensors in ``args`` and to the parameters ``fn`` uses (not to Tensors in
    ``kwargs``). When no argument requires grad, ``fn`` should be a Module (or a bound method of
    one) so that its parameters are seen; layers that update state in forward (BatchNorm's running
    statistics) update it twice, as in PyTorch.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> from tidu.utils import checkpoint
    >>> layer = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))
    >>> x = td.randn(2, 4, requires_grad=True)
    >>> checkpoint(layer, x).sum().backward()
    >>> x.grad.shape, layer[0].weight.grad.shape
    ((2, 4), (8, 4))
    """
    if not callable(fn):
        raise TypeError(f"checkpoint: fn must be callable, got {type(fn).__name__}")
    if not is_grad_enabled():
        return fn(*args, **kwargs)  # nothing to save: no graph is being recorded
    rng_state = backend.get_rng_state() if preserve_rng_state else None
    with no_grad():
        out = fn(*args, **kwargs)
    if not isinstance(out, Tensor):
        raise TypeError(f"checkpoint: fn must return one Tensor, got {type(out).__name__}; "
                        "checkpoint each output's computation separately")
    inputs = tuple(a for a in args if isinstance(a, Tensor))
    needs_grad = any(a.requires_grad for a in inputs) or any(p.requires_grad for p in _owner_parameters(fn))
    if not needs_grad:
        return out

    def backward(g):
        # re-run fn on detached copies of the inputs, with grad on, under the forward's random state
        detached = {id(a): Tensor(a.data, requires_grad=a.requires_grad) for a in inputs}
        new_args = [detached[id(a)] if isinstance(a, Tensor) else a for a in args]
        saved_rng = backend.get_rng_state() if rng_state is not None else None
        if rng_state is not None:
            backend.set_rng_state(rng_state)
        try:
            with set_grad_enabled(True):
                again = fn(*new_args, **kwargs)
        finally:
            if saved_rng is not None:
                backend.set_rng_state(saved_rng)
        if again.requires_grad:
            run_backward([again], [g])
        return tuple(detached[id(a)].grad.data if detached[id(a)].grad is not None else None for a in inputs)

    result = Tensor(out.data, requires_grad=True)
    result._parents, result._backward = inputs, backward
    return result


def checkpoint_sequential(functions, segments, input, preserve_rng_state=True):
    """Run a Sequential (or a list of modules) in ``segments`` checkpointed chunks; the last chunk is
    run normally, as in PyTorch.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> from tidu.utils import checkpoint_sequential
    >>> net = nn.Sequential(*[nn.Linear(4, 4) for _ in range(4)])
    >>> checkpoint_sequential(net, 2, td.randn(3, 4, requires_grad=True)).shape
    (3, 4)
    """
    fns = list(functions)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be >= 1, got {segments}")
    size = -(-len(fns) // segments)
    x = input
    for start in range(0, len(fns), size):
        chunk = fns[start:start + size]
        run = _Chain(chunk)
        x = run(x) if start + size >= len(fns) else checkpoint(run, x, preserve_rng_state=preserve_rng_state)
    return x


class _Chain:
    """Modules applied in order; exposes their parameters so checkpoint sees them."""

    def __init__(self, modules):
        self.modules = modules

    def __call__(self, x):
        for m in self.modules:
            x = m(x)
        return x

    def parameters(self):
        for m in self.modules:
            yield from m.parameters()
