"""DP-SGD (Abadi et al., 2016): per-sample clipping, Gaussian noise, Poisson sampling, a privacy budget.

One step, for a batch B drawn by Poisson sampling (each example joins with probability q):

    g_n  = ∇ loss(x_n)                                   every sample's own gradient (GradSampler)
    ḡ_n  = g_n · min(1, C / ‖g_n‖)                       clip to flat norm C = max_grad_norm
    g    = (Σ_{n∈B} ḡ_n + N(0, σ²C² I)) / (q · |dataset|)  noise, then divide by the EXPECTED batch size
    θ    ← optimizer update with g                        (SGD, Adam, … unchanged)

Dividing by the expected rather than the actual batch size keeps the batch size itself private.
The accountant adds one Poisson-subsampled Gaussian step per update and answers ``epsilon(δ)``;
with a ``target_epsilon`` the optimizer refuses the step that would spend more.

The noise comes from tidu's generator (``td.manual_seed`` makes runs reproducible); like Opacus
without ``secure_mode``, it is not a cryptographically secure source, which matters only against an
attacker who can reconstruct the generator's state.

>>> import numpy as np
>>> import tidu as td
>>> import tidu.nn as nn
>>> import tidu.nn.functional as F
>>> from tidu.data import DataLoader, TensorDataset
>>> _ = td.manual_seed(0)
>>> rs = np.random.default_rng(0)
>>> X = rs.normal(size=(200, 4)).astype(np.float32); y = (X[:, 0] > 0).astype(np.int64)
>>> model = nn.Linear(4, 2)
>>> opt = td.optim.SGD(model.parameters(), lr=0.5)
>>> model, opt, loader = make_private(model, opt, DataLoader(TensorDataset(X, y), batch_size=20),
...                                   noise_multiplier=1.0, max_grad_norm=1.0)
>>> for xb, yb in loader:               # one epoch: 10 Poisson-sampled batches of about 20
...     opt.zero_grad()
...     F.cross_entropy(model(xb), yb).backward()
...     opt.step()
>>> opt.accountant.steps, round(opt.epsilon(1e-5), 2)
(10, 3.44)
"""
import numbers

import numpy as np

from .. import backend, nn
from ..autograd import enable_grad
from ..data import DataLoader, IterableDataset, default_collate
from ..data.loader import _batch_getter
from ..optim import Optimizer
from ..tensor import Tensor
from .accountant import MECHANISMS, PrivacyAccountant, PrivacyBudgetExceeded, find_noise_multiplier
from .per_sample import GradSampler

__all__ = ["DPOptimizer", "PoissonBatchSampler", "make_private"]


class PoissonBatchSampler:
    """Batches of dataset indices by Poisson sampling: each of the ``num_samples`` examples joins each
    batch independently with probability ``sample_rate``, so batch sizes vary (and can be 0).
    An epoch is ``round(1 / sample_rate)`` batches.

    >>> s = PoissonBatchSampler(1000, 0.1, generator=np.random.default_rng(0))
    >>> len(s), [len(b) for b in s][:4]
    (10, [89, 121, 108, 97])
    """

    def __init__(self, num_samples, sample_rate, generator=None, steps=None):
        if not 0 < sample_rate <= 1:
            raise ValueError(f"PoissonBatchSampler: sample_rate must lie in (0, 1], got {sample_rate!r}")
        self.num_samples, self.sample_rate = int(num_samples), float(sample_rate)
        self.steps = int(round(1 / sample_rate)) if steps is None else int(steps)
        self.generator = generator if generator is not None else np.random.default_rng(
            int(backend.rng().integers(2**63)))

    def __iter__(self):
        for _ in range(self.steps):
            yield np.flatnonzero(self.generator.random(self.num_samples) < self.sample_rate)

    def __len__(self):
        return self.steps


class _EmptySafeCollate:
    """A collate function that also batches zero samples (an empty Poisson batch), with the shapes
    and dtypes that one sample would have."""

    def __init__(self, dataset, collate):
        self.dataset, self.collate = dataset, collate

    def __call__(self, samples):
        if samples:
            return self.collate(samples)
        return _take_none(self.collate([self.dataset[0]]))


def _take_none(batch):
    if isinstance(batch, Tensor):
        return Tensor(batch.data[:0])
    if isinstance(batch, np.ndarray):
        return batch[:0]
    if isinstance(batch, dict):
        return {k: _take_none(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_take_none(v) for v in batch)
    return batch


def _params(optimizer):
    return [p for g in optimizer.param_groups for p in g["params"]]


class DPOptimizer(Optimizer):
    """Wraps an optimizer so that its ``step`` is a DP-SGD step (see the module docstring).

    It shares the wrapped optimizer's ``param_groups`` and ``state`` (LR schedulers and state dicts work
    as before) and adds: ``noise_multiplier``, ``max_grad_norm``, ``expected_batch_size``,
    ``sample_rate``, ``accountant``, ``epsilon(delta)``, and the budget guard ``target_epsilon``.
    Build it with :func:`make_private`.

    ``step()`` uses the per-sample gradients the ``grad_sampler`` recorded in the last backward (with
    ``loss_reduction="mean"`` the loss is a mean over the batch, so they are multiplied by the batch
    size first). Call it for an empty batch too (without a backward): it is then a step of noise alone,
    which the privacy analysis counts on.
    """

    def __init__(self, optimizer, grad_sampler, noise_multiplier, max_grad_norm, expected_batch_size,
                 sample_rate, accountant="rdp", target_epsilon=None, target_delta=1e-5, loss_reduction="mean",
                 planned_steps=None):
        who = "DPOptimizer"
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, DPOptimizer):
            raise TypeError(f"{who}: expected a tidu.optim optimizer (not already private), "
                            f"got {type(optimizer).__name__}")
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"{who}: loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
        for name, v, kind in (("noise_multiplier", noise_multiplier, "non-negative"),
                              ("max_grad_norm", max_grad_norm, "positive"),
                              ("expected_batch_size", expected_batch_size, "positive")):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0 or (v == 0 and kind == "positive"):
                raise ValueError(f"{who}: {name} must be a {kind} number, got {v!r}")
        self.original_optimizer = optimizer
        self.grad_sampler = grad_sampler
        self.noise_multiplier, self.max_grad_norm = float(noise_multiplier), float(max_grad_norm)
        self.expected_batch_size, self.sample_rate = float(expected_batch_size), float(sample_rate)
        self.loss_reduction = loss_reduction
        self.accountant = accountant if isinstance(accountant, PrivacyAccountant) else PrivacyAccountant(accountant)
        self.target_epsilon, self.target_delta = target_epsilon, float(target_delta)
        self.planned_steps = planned_steps
        self._safe = (None, 0)  # (settings, steps up to which the budget is known to hold)
        self.last_norms = None  # per-sample gradient norms of the last step, for monitoring

    # the wrapped optimizer's groups and state are this optimizer's
    param_groups = property(lambda self: self.original_optimizer.param_groups,
                            lambda self, v: setattr(self.original_optimizer, "param_groups", v))
    state = property(lambda self: self.original_optimizer.state,
                     lambda self, v: setattr(self.original_optimizer, "state", v))
    defaults = property(lambda self: self.original_optimizer.defaults)

    def validate(self, group):
        self.original_optimizer.validate(group)

    def init_state(self, p, group):
        return self.original_optimizer.init_state(p, group)

    def update(self, p, g, state, group):
        self.original_optimizer.update(p, g, state, group)

    # --- privacy ---
    def epsilon(self, delta=None):
        """ε spent so far (for ``delta``, by default the target δ)."""
        return self.accountant.epsilon(self.target_delta if delta is None else delta)

    def _check_budget(self):
        """Refuse the step that would take ε past ``target_epsilon``. ε grows with the steps, so a
        check ahead (to the end of the planned run, else an epoch) covers many steps at once."""
        if self.target_epsilon is None:
            return
        acc = self.accountant
        settings = (self.noise_multiplier, self.sample_rate, self.target_epsilon, self.target_delta,
                    tuple(map(tuple, acc.history[:-1])))
        if self._safe[0] == settings and acc.steps + 1 <= self._safe[1]:
            return
        ahead = max(1, int(round(1 / self.sample_rate)), (self.planned_steps or 0) - acc.steps)
        while ahead >= 1:
            eps = acc.epsilon_after(ahead, self.noise_multiplier, self.sample_rate, self.target_delta)
            if eps <= self.target_epsilon:
                self._safe = (settings, acc.steps + ahead)
                return
            ahead //= 2
        spent = acc.epsilon(self.target_delta)
        raise PrivacyBudgetExceeded(
            f"DPOptimizer.step: the privacy budget is spent: {acc.steps} steps have used ε = {spent:.4g} "
            f"(δ = {self.target_delta:g}) and one more would use ε = {eps:.4g}, past target_epsilon = "
            f"{self.target_epsilon:g}; stop training here, or allow a larger target_epsilon")

    # --- the loop ---
    def zero_grad(self, set_to_none=True):
        self.original_optimizer.zero_grad(set_to_none)
        self.grad_sampler.clear()

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self._check_budget()
        params = [p for p in _params(self) if p.requires_grad]
        sampler = self.grad_sampler
        batch = sampler.batch_size or 0
        scale = batch if self.loss_reduction == "mean" else 1.0
        sums, self.last_norms = sampler.clipped_sum(self.max_grad_norm, scale, set(params))
        if batch:
            for p in params:
                if p not in sums and p.grad is not None:
                    raise RuntimeError(
                        f"DPOptimizer.step: parameter {sampler.names.get(p, tuple(p.shape))!r} has a gradient but no "
                        "per-sample gradients: it was used outside the forward of its layer (e.g. a weight read "
                        "directly in a custom forward), which DP-SGD cannot clip; call the layer instead")
        std = self.noise_multiplier * self.max_grad_norm
        rng = backend.rng()
        divisor = self.expected_batch_size if self.loss_reduction == "mean" else 1.0
        for p in params:
            g = sums.get(p)
            g = np.zeros(p.shape, dtype=p.dtype) if g is None else g.astype(p.dtype, copy=False)
            if std > 0:
                g = g + rng.normal(0.0, std, p.shape).astype(p.dtype)
            if divisor != 1.0:
                g = g / np.asarray(divisor, dtype=p.dtype)
            p.grad = Tensor(g)
        self.original_optimizer.step()
        self.accountant.step(self.noise_multiplier, self.sample_rate)
        sampler.clear()
        return loss

    # --- saving and loading ---
    def state_dict(self):
        state = self.original_optimizer.state_dict()
        state["privacy"] = {"accountant": self.accountant.state_dict(), "noise_multiplier": self.noise_multiplier,
                            "max_grad_norm": self.max_grad_norm, "sample_rate": self.sample_rate,
                            "expected_batch_size": self.expected_batch_size, "target_epsilon": self.target_epsilon,
                            "target_delta": self.target_delta}
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        privacy = state_dict.pop("privacy", None)
        self.original_optimizer.load_state_dict(state_dict)
        if privacy is not None:
            self.accountant.load_state_dict(privacy["accountant"])
            self.noise_multiplier = float(privacy["noise_multiplier"])
            self.max_grad_norm = float(privacy["max_grad_norm"])

    def __repr__(self):
        return (f"DPOptimizer(noise_multiplier={self.noise_multiplier:.4g}, max_grad_norm={self.max_grad_norm:g}, "
                f"sample_rate={self.sample_rate:.4g}, accountant={self.accountant.mechanism!r}) wrapping\n"
                + repr(self.original_optimizer))


def make_private(model, optimizer, loader, noise_multiplier=None, target_epsilon=None, target_delta=1e-5,
                 epochs=None, max_grad_norm=1.0, accountant="rdp", poisson_sampling=True, loss_reduction="mean",
                 seed=None):
    """Make a model, its optimizer and its data loader train with DP-SGD; returns ``(model, optimizer, loader)``.

    - ``model`` is the same object, now recording per-sample gradients (``optimizer.grad_sampler``);
      every layer with trainable parameters must be supported (Linear, Conv1d/2d, Embedding, LayerNorm,
      GroupNorm, MultiheadAttention) — BatchNorm is refused, as it mixes samples.
    - ``optimizer`` is a :class:`DPOptimizer` around the given one; ``optimizer.epsilon(delta)`` is the
      privacy spent so far.
    - ``loader`` draws Poisson-sampled batches with sample rate q = 1 / len(loader) (so the expected
      batch size is the original one) and ``len(loader)`` batches per epoch.

    Give ``noise_multiplier`` σ, or ``target_epsilon`` with ``epochs``: σ is then the smallest that keeps
    ε(target_delta) within the target over that many epochs (bisection with the accountant), and the
    optimizer raises :class:`PrivacyBudgetExceeded` rather than take a step past the target (set
    ``optimizer.target_epsilon`` to guard a run with a noise multiplier of your own).
    ``accountant`` is ``"rdp"`` or ``"pld"`` (tighter, slower). ``loss_reduction`` says whether the
    training loss is a mean (the default) or a sum over the batch.
    """
    who = "make_private"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{who}: model must be a tidu.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, Optimizer) or isinstance(optimizer, DPOptimizer):
        raise TypeError(f"{who}: optimizer must be a tidu.optim optimizer (not already private), "
                        f"got {type(optimizer).__name__}")
    if accountant not in MECHANISMS:
        raise ValueError(f"{who}: accountant must be one of {MECHANISMS}, got {accountant!r}")
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ValueError(f"{who}: give exactly one of noise_multiplier= and target_epsilon= "
                         f"(got noise_multiplier={noise_multiplier!r}, target_epsilon={target_epsilon!r})")
    if target_epsilon is not None and epochs is None:
        raise ValueError(f"{who}: target_epsilon={target_epsilon!r} needs epochs= (how long the budget must last) "
                         "to choose the noise multiplier")
    if not (isinstance(target_delta, numbers.Real) and 0 < target_delta < 1):
        raise ValueError(f"{who}: target_delta must lie in (0, 1), got {target_delta!r}")
    dataset = getattr(loader, "dataset", None)
    if not isinstance(loader, DataLoader) or isinstance(dataset, IterableDataset):
        raise TypeError(f"{who}: loader must be a tidu.data.DataLoader over a map-style dataset (Poisson sampling "
                        f"picks examples by index), got {type(loader).__name__}")
    n = len(dataset)
    steps_per_epoch = len(loader)
    if n == 0 or steps_per_epoch == 0:
        raise ValueError(f"{who}: the loader is empty ({n} examples, {steps_per_epoch} batches)")
    sample_rate = 1.0 / steps_per_epoch
    model_params = {id(p) for p in model.parameters()}
    for i, p in enumerate(_params(optimizer)):
        if id(p) not in model_params:
            raise ValueError(f"{who}: parameter {i} of the optimizer (shape {tuple(p.shape)}) is not a parameter "
                             "of the model; DP-SGD can only clip gradients of the model's layers")
    planned = None if epochs is None else max(1, int(round(epochs * steps_per_epoch)))
    if target_epsilon is not None:
        noise_multiplier = find_noise_multiplier(target_epsilon, target_delta, sample_rate, steps=planned,
                                                 accountant=accountant)
    sampler = GradSampler(model)
    dp_optimizer = DPOptimizer(optimizer, sampler, noise_multiplier, max_grad_norm,
                               expected_batch_size=sample_rate * n, sample_rate=sample_rate, accountant=accountant,
                               target_epsilon=target_epsilon, target_delta=target_delta,
                               loss_reduction=loss_reduction, planned_steps=planned)
    if poisson_sampling:
        rng = np.random.default_rng(seed if seed is not None else int(backend.rng().integers(2**63)))
        collate = loader.collate_fn
        if collate is not None or _batch_getter(dataset) is None:  # batches fetched sample by sample
            collate = _EmptySafeCollate(dataset, collate or default_collate)
        loader = DataLoader(dataset, batch_sampler=PoissonBatchSampler(n, sample_rate, rng), generator=rng,
                            collate_fn=collate, prefetch=loader.prefetch)
    return model, dp_optimizer, loader
