"""Per-sample gradients in one backward pass, without a loop over the samples.

The gradient of a batch loss with respect to a layer's weight is a sum over the samples of a
product of two things the batch pass already computes: the layer's input activations ``x`` and
the gradient ``g`` of the loss with respect to the layer's output. Keeping the sum's terms apart
gives every sample's own gradient (Goodfellow, 2015; Opacus, Yousefpour et al., 2021):

    Linear         ∇W_n = Σ_t g_nt x_ntᵀ                      ∇b_n = Σ_t g_nt
    Conv2d         ∇W_n = g_n (O, HW) @ im2col(x_n) (HW, C·kh·kw)   ∇b_n = Σ_hw g_n
    Embedding      ∇W_n = rows g_nt scattered to the ids x_nt (kept as (ids, rows), never a dense table)
    LayerNorm      ∇γ_n = Σ_t g_nt ∘ x̂_nt                     ∇β_n = Σ_t g_nt
    GroupNorm      ∇γ_n = Σ_hw g_n ∘ x̂_n (per channel)        ∇β_n = Σ_hw g_n
    MultiheadAttention: its q/k/v input projections are Linear maths; ``out_proj`` is a Linear.

A forward hook on each layer with trainable parameters keeps its input, and wraps its output in an
identity op whose backward receives ``g`` and computes the per-sample gradients right there (so the
input is freed as the backward walks past). The model's ordinary ``.grad`` is computed as usual.

>>> import tidu as td
>>> import tidu.nn as nn
>>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
>>> with GradSampler(model) as sampler:
...     model(td.randn(5, 3)).sum().backward()
...     grads = sampler.grad_samples()
>>> {name: g.shape for name, g in grads.items()}
{'0.weight': (5, 4, 3), '0.bias': (5, 4), '2.weight': (5, 2, 4), '2.bias': (5, 2)}
>>> bool(np.allclose(grads["0.weight"].sum(0), model[0].weight.grad.numpy(), atol=1e-6))
True
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import nn
from ..autograd import is_grad_enabled
from ..ops import dropout, linear, masked_fill, matmul, softmax
from ..ops.conv import _padding
from ..tensor import Tensor, _result

__all__ = ["GradSampler", "register_grad_sampler", "supported_layers"]


def _tap(out, on_grad):
    """An identity op on ``out`` whose backward hands the output's gradient to ``on_grad`` first."""
    def backward(g):
        on_grad(g)
        return (g,)  # d out / d out = 1
    return _result(out.data, (out,), backward)


def _batched(layer, x, rank):
    if x.ndim < rank:
        raise ValueError(f"GradSampler: {layer} got an input of shape {tuple(x.shape)}; per-sample gradients need "
                         f"a leading batch dimension (at least {rank}-D input)")


class _Rows:
    """Per-sample gradients of an embedding table as (ids, rows): sample n adds ``g[n, t]`` to row
    ``ids[n, t]``. Norms and weighted sums come from these without an (N, V, D) array."""

    def __init__(self, ids, g, num_rows):
        self.ids, self.g, self.num_rows = ids, g, num_rows  # (N, T) int64, (N, T, D)

    def __len__(self):
        return self.ids.shape[0]

    def merged(self, other):
        return _Rows(np.concatenate([self.ids, other.ids], 1), np.concatenate([self.g, other.g], 1), self.num_rows)

    def sq_norms(self):
        n, t = self.ids.shape
        d = self.g.shape[-1]
        # rows of one sample that hit the same id add up before the norm: key (sample, id)
        keys = (np.arange(n)[:, None] * self.num_rows + self.ids).ravel()
        uniq, inverse = np.unique(keys, return_inverse=True)
        summed = np.zeros((len(uniq), d), dtype=self.g.dtype)
        np.add.at(summed, inverse.ravel(), self.g.reshape(-1, d))
        return np.bincount(uniq // self.num_rows, weights=np.einsum("ij,ij->i", summed, summed), minlength=n)

    def weighted_sum(self, c):
        d = self.g.shape[-1]
        out = np.zeros((self.num_rows, d), dtype=self.g.dtype)
        np.add.at(out, self.ids.ravel(), (self.g * c[:, None, None].astype(self.g.dtype)).reshape(-1, d))
        return out

    def dense(self):
        n, t = self.ids.shape
        out = np.zeros((n, self.num_rows, self.g.shape[-1]), dtype=self.g.dtype)
        np.add.at(out, (np.repeat(np.arange(n), t), self.ids.ravel()), self.g.reshape(n * t, -1))
        return out


# --- the rules: (module, input array, output gradient) -> {parameter name: per-sample gradient} ---

def _wanted(m, name):
    p = m._parameters.get(name)
    return p is not None and p.requires_grad


def _linear_grads(x, g):
    n = x.shape[0]
    x3, g3 = x.reshape(n, -1, x.shape[-1]), g.reshape(n, -1, g.shape[-1])
    return np.matmul(g3.transpose(0, 2, 1), x3), g3.sum(1)  # (N, O, I) = Σ_t g_t x_tᵀ, (N, O) = Σ_t g_t


def _linear(m, x, g):
    _batched(repr(m), x, 2)
    gw, gb = _linear_grads(x, g)
    out = {}
    if _wanted(m, "weight"):
        out["weight"] = gw
    if _wanted(m, "bias"):
        out["bias"] = gb
    return out


def _embedding(m, x, g):
    ids = np.asarray(x).astype(np.int64, copy=False)
    _batched(repr(m), ids, 1)
    n = ids.shape[0]
    ids, g = ids.reshape(n, -1), g.reshape(n, -1, g.shape[-1]).copy()  # kept until the step: our own copy
    if m.padding_idx is not None:  # the padding row gets no gradient
        g[ids == m.padding_idx] = 0
    return {"weight": _Rows(ids, g, m.num_embeddings)} if _wanted(m, "weight") else {}


def _norm_grads(m, g, xhat, axes):
    out = {}
    if _wanted(m, "weight"):
        out["weight"] = (g * xhat).sum(axis=axes)
    if _wanted(m, "bias"):
        out["bias"] = g.sum(axis=axes)
    return out


def _layer_norm(m, x, g):
    k = len(m.normalized_shape)
    _batched(repr(m), x, k + 1)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    xhat = (x - mean) / np.sqrt(var + m.eps)
    return _norm_grads(m, g, xhat, tuple(range(1, x.ndim - k)))


def _group_norm(m, x, g):
    _batched(repr(m), x, 2)
    n = x.shape[0]
    xg = x.reshape(n, m.num_groups, -1)
    xhat = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + m.eps)).reshape(x.shape)
    return _norm_grads(m, g, xhat, tuple(range(2, x.ndim)))


_NP_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _conv(m, x, g):
    nd = len(m.kernel_size)
    _batched(repr(m), x, nd + 2)
    pads = _padding(type(m).__name__, m.padding, m.kernel_size, m.stride, m.dilation)
    kernel, stride, dilation = m.kernel_size, m.stride, m.dilation
    if nd == 1:  # a 1-D convolution is a 2-D one over images of height 1
        x, g = x[:, :, None, :], g[:, :, None, :]
        kernel, stride, dilation, pads = (1,) + kernel, (1,) + stride, (1,) + dilation, (0, 0) + pads
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]), mode=_NP_PAD[m.padding_mode])
    n, c = xp.shape[:2]
    o, ho, wo = g.shape[1:]
    groups = m.groups
    cg, og = c // groups, o // groups
    # windows (N, C, Ho, Wo, kh, kw) as a strided view, then one copy into im2col rows (N, G, Ho·Wo, Cg·kh·kw)
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    win = win[:, :, :ho, :wo].reshape(n, groups, cg, ho, wo, kh, kw)
    cols = np.ascontiguousarray(win.transpose(0, 1, 3, 4, 2, 5, 6)).reshape(n, groups, ho * wo, cg * kh * kw)
    out = {}
    if _wanted(m, "weight"):  # ∇W_n = g_n @ cols_n, per group
        gw = np.matmul(g.reshape(n, groups, og, ho * wo), cols)
        out["weight"] = gw.reshape((n, o, cg) + tuple(m.kernel_size))
    if _wanted(m, "bias"):
        out["bias"] = g.sum(axis=(2, 3))
    return out


def _batch_norm(m, x, g):
    raise ValueError(f"GradSampler: {type(m).__name__} mixes the samples of a batch (it normalizes with the "
                     "batch's statistics), so per-sample gradients and DP-SGD are not defined for it; "
                     "use GroupNorm or LayerNorm instead (or freeze the layer: layer.requires_grad_(False))")


# --- MultiheadAttention: the forward is replaced by one built from taps on the projections ---

def _mha_check(m):
    if getattr(m, "bias_k", None) is not None or getattr(m, "add_zero_attn", False):
        raise ValueError("GradSampler: MultiheadAttention with add_bias_kv=True or add_zero_attn=True is not "
                         "supported for per-sample gradients")
    if not isinstance(getattr(m, "out_proj", None), nn.Linear):
        raise ValueError("GradSampler: MultiheadAttention needs its output projection as an nn.Linear "
                         "submodule named out_proj (PyTorch's layout)")


def _mha_masks(m, n, L, S, attn_mask, key_padding_mask, is_causal, dtype):
    """The blocked positions (bool, True = may NOT attend, PyTorch MHA's convention) and an additive
    float mask, each broadcastable to (N, H, L, S) or None."""
    h = m.num_heads
    blocked, added = None, None
    for mask, shape in ((attn_mask, None), (key_padding_mask, (n, 1, 1, S))):
        if mask is None:
            continue
        a = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
        if shape is None:
            shape = (1, 1, L, S) if a.ndim == 2 else (n, h, L, S)
        a = a.reshape(shape)
        if a.dtype == np.bool_:
            blocked = a if blocked is None else blocked | a
        else:
            a = a.astype(dtype)
            added = a if added is None else added + a
    if is_causal and attn_mask is None:
        causal = np.triu(np.ones((L, S), dtype=bool), k=1)[None, None]
        blocked = causal if blocked is None else blocked | causal
    return blocked, added


def _mha_forward(sampler, m, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                 average_attn_weights=True, is_causal=False):
    """PyTorch's MultiheadAttention forward, built from tidu ops with taps on the q/k/v projections."""
    if query.ndim != 3:
        raise ValueError(f"GradSampler: MultiheadAttention needs batched 3-D inputs for per-sample gradients, "
                         f"got query of shape {tuple(query.shape)}")
    if not m.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    e, h = m.embed_dim, m.num_heads
    hd = e // h
    n, L, S = query.shape[0], query.shape[1], key.shape[1]
    same = getattr(m, "_qkv_same_embed_dim", True)
    bias = m.in_proj_bias
    heads = []
    for i, x in enumerate((query, key, value)):
        rows = slice(i * e, (i + 1) * e)
        if same:
            w, wname, wrows = m.in_proj_weight[rows], "in_proj_weight", rows
        else:
            wname = ("q_proj_weight", "k_proj_weight", "v_proj_weight")[i]
            w, wrows = m._parameters[wname], None
        y = linear(x, w, None if bias is None else bias[rows])
        if is_grad_enabled() and y.requires_grad:
            y = _tap(y, sampler._projection_hook(m, x.data, wname, wrows, rows))
        heads.append(y.reshape(n, -1, h, hd).transpose(1, 2))  # (N, H, L or S, hd)
    q, k, v = heads
    scores = matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
    blocked, added = _mha_masks(m, n, L, S, attn_mask, key_padding_mask, is_causal, scores.dtype)
    if blocked is not None:
        scores = masked_fill(scores, Tensor(blocked), -np.inf)
    if added is not None:
        scores = scores + Tensor(added)
    p = dropout(softmax(scores, -1), m.dropout, m.training)
    attn = matmul(p, v).transpose(1, 2).reshape(n, L, e)
    out = m.out_proj(attn)  # a Linear: its own hook records its per-sample gradients
    if not m.batch_first:
        out = out.transpose(0, 1)
    weights = None
    if need_weights:
        weights = p.mean(dim=1) if average_attn_weights else p
    return out, weights


# --- the registry ---

_RULES = {}


def register_grad_sampler(layer_type, rule):
    """Teach per-sample gradients a layer type: ``rule(module, input_array, output_grad_array)`` returns
    ``{parameter name: array of shape (N, *parameter.shape)}`` for the parameters that require grad."""
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"register_grad_sampler: layer_type must be a Module subclass, got {layer_type!r}")
    _RULES[layer_type] = rule


for _name, _rule in (("Linear", _linear), ("Embedding", _embedding), ("LayerNorm", _layer_norm),
                     ("GroupNorm", _group_norm), ("Conv1d", _conv), ("Conv2d", _conv),
                     ("BatchNorm1d", _batch_norm), ("BatchNorm2d", _batch_norm), ("BatchNorm3d", _batch_norm),
                     ("MultiheadAttention", _mha_forward)):
    if hasattr(nn, _name):  # layers that other parts of tidu add later register when they exist
        _RULES[getattr(nn, _name)] = _rule


def _rule_for(module):
    for cls in type(module).__mro__:
        if cls in _RULES:
            return _RULES[cls]
        if cls.__name__ == "MultiheadAttention" and cls.__module__.startswith("tidu."):
            return _mha_forward
    return None


def supported_layers():
    """Names of the layer types whose per-sample gradients are known."""
    return sorted({cls.__name__ for cls, rule in _RULES.items() if rule is not _batch_norm})


class GradSampler:
    """Records per-sample gradients of ``model``'s trainable parameters during ``backward``.

    Every module that owns parameters requiring grad must be of a supported type (``supported_layers()``,
    or one taught with ``register_grad_sampler``); otherwise a ValueError names the layer. Gradients of
    several backward passes over the same batch add up; ``clear()`` forgets them, ``remove()`` takes the
    hooks out. The per-sample gradients are those of the loss as written: with a mean over the batch,
    multiply by the batch size to get each sample's own loss gradient (``DPOptimizer`` does).
    """

    def __init__(self, model):
        if not isinstance(model, nn.Module):
            raise TypeError(f"GradSampler: expected a tidu.nn.Module, got {type(model).__name__}")
        self.model = model
        self._store = {}    # parameter -> (N, *shape) array or _Rows
        self._handles = []
        self._wrapped = []
        self.names = {}     # parameter -> dotted name
        for prefix, module in model.named_modules():
            own = [(n, p) for n, p in module._parameters.items() if p is not None and p.requires_grad]
            if not own:
                continue
            rule = _rule_for(module)
            if rule is None:
                self.remove()
                where = f" at {prefix!r}" if prefix else ""
                raise ValueError(
                    f"GradSampler: per-sample gradients are not known for {type(module).__name__}{where}, which has "
                    f"trainable parameters {[n for n, _ in own]}; supported layers: {', '.join(supported_layers())}. "
                    "Freeze it (module.requires_grad_(False)), rebuild it from supported layers, or teach it with "
                    "tidu.privacy.register_grad_sampler")
            if rule is _batch_norm:
                self.remove()
                _batch_norm(module, None, None)
            for n, p in own:
                self.names[p] = f"{prefix}.{n}" if prefix else n
            if rule is _mha_forward:
                _mha_check(module)
                module.__dict__["forward"] = lambda *a, _m=module, **k: _mha_forward(self, _m, *a, **k)
                self._wrapped.append(module)
            else:
                self._handles.append(module.register_forward_hook(self._layer_hook(rule)))

    # --- capture ---
    def _layer_hook(self, rule):
        def hook(module, args, out):
            if not (is_grad_enabled() and isinstance(out, Tensor) and out.requires_grad) or not args:
                return None
            x = args[0].data if isinstance(args[0], Tensor) else np.asarray(args[0])

            def on_grad(g):
                for name, value in rule(module, x, g).items():
                    self._add(module._parameters[name], value)
            return _tap(out, on_grad)
        return hook

    def _projection_hook(self, m, x, wname, wrows, brows):
        def on_grad(g):
            gw, gb = _linear_grads(x, g)
            if _wanted(m, wname):
                self._add(m._parameters[wname], gw, wrows)
            if _wanted(m, "in_proj_bias"):
                self._add(m.in_proj_bias, gb, brows)
        return on_grad

    def _add(self, p, value, rows=None):
        have = self._store.get(p)
        n = len(value)
        if have is not None and len(have) != n:
            raise RuntimeError(f"GradSampler: parameter {self.names.get(p, '?')!r} got per-sample gradients for "
                               f"batches of {len(have)} and {n} samples without a step in between; call "
                               "optimizer.step() (or sampler.clear()) after each batch's backward")
        if rows is not None:  # a block of rows of the parameter (MultiheadAttention's packed in_proj)
            if have is None:
                have = self._store[p] = np.zeros((n,) + p.shape, dtype=value.dtype)
            elif isinstance(have, _Rows):
                have = self._store[p] = have.dense()
            have[:, rows] += value
        elif have is None:
            self._store[p] = value.copy() if isinstance(value, np.ndarray) and value.base is not None else value
        elif isinstance(have, _Rows) and isinstance(value, _Rows):
            self._store[p] = have.merged(value)
        else:
            dense = have.dense() if isinstance(have, _Rows) else have
            self._store[p] = dense + (value.dense() if isinstance(value, _Rows) else value)

    # --- results ---
    @property
    def batch_size(self):
        """The number of samples of the recorded batch (None before any backward)."""
        for v in self._store.values():
            return len(v)
        return None

    def has_grad_sample(self, p):
        return p in self._store

    def grad_samples(self):
        """``{parameter name: (N, *shape) array}`` of the per-sample gradients recorded so far."""
        store = self._store
        return {name: (store[p].dense() if isinstance(store[p], _Rows) else store[p])
                for p, name in self.names.items() if p in store}

    def per_sample_norms(self, params=None):
        """The flat L2 norm of each sample's gradient over all (or the given) parameters: shape (N,)."""
        n = self.batch_size or 0
        total = np.zeros(n, dtype=np.float64)
        for p, v in self._store.items():
            if params is None or p in params:
                if isinstance(v, _Rows):
                    total += v.sq_norms()
                else:
                    flat = v.reshape(n, -1)
                    total += np.einsum("ij,ij->i", flat, flat, dtype=np.float64)
        return np.sqrt(total)

    def clipped_sum(self, max_norm, scale=1.0, params=None):
        """Clip each sample's gradient (times ``scale``) to flat norm ``max_norm`` and sum over the batch.
        Returns ``({parameter: summed array}, per-sample norms before clipping)``."""
        norms = self.per_sample_norms(params) * scale
        factor = scale * np.minimum(1.0, max_norm / (norms + 1e-6))  # Opacus's clipping factor
        sums = {}
        for p, v in self._store.items():
            if params is None or p in params:
                if isinstance(v, _Rows):
                    sums[p] = v.weighted_sum(factor)
                else:
                    sums[p] = np.tensordot(factor.astype(v.dtype), v, axes=1)
        return sums, norms

    def clear(self):
        """Forget the recorded per-sample gradients."""
        self._store.clear()

    def remove(self):
        """Take the hooks out of the model; the model runs as before."""
        for h in self._handles:
            h.remove()
        for m in self._wrapped:
            m.__dict__.pop("forward", None)
        self._handles, self._wrapped = [], []
        self._store.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
