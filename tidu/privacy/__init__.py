"""Differential privacy: DP-SGD with per-sample gradients, Poisson sampling and a privacy accountant.

>>> import tidu.privacy as tp
>>> sorted(tp.supported_layers())[:3]
['Conv1d', 'Conv2d', 'Embedding']

``make_private(model, optimizer, loader, noise_multiplier=… or target_epsilon=…, epochs=…)`` returns a
model, optimizer and loader for an ordinary training loop; ``optimizer.epsilon(delta)`` is the privacy
spent. Accounting needs the ``privacy`` extra (``pip install 'tidu[privacy]'``, i.e. dp-accounting).
"""
from .accountant import (MECHANISMS, PrivacyAccountant, PrivacyBudgetExceeded, compute_epsilon,
                         find_noise_multiplier)
from .callback import PrivacyCallback
from .dpsgd import DPOptimizer, PoissonBatchSampler, make_private
from .per_sample import GradSampler, register_grad_sampler, supported_layers

__all__ = ["make_private", "PrivacyCallback", "DPOptimizer", "PoissonBatchSampler", "GradSampler", "register_grad_sampler",
           "supported_layers", "PrivacyAccountant", "PrivacyBudgetExceeded", "compute_epsilon",
           "find_noise_multiplier", "MECHANISMS"]
