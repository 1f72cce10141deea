"""``tidu.optim``: optimizers, learning-rate schedules (``tidu.optim.lr_scheduler``) and gradient clipping.

Each optimizer is an initial state plus one update, written as PyTorch documents it; they take the same
arguments as ``torch.optim`` and reach the same parameters, step for step.

>>> import tidu as td
>>> w = td.tensor([2.0], requires_grad=True)
>>> opt = td.optim.SGD([w], lr=0.25)
>>> for _ in range(3):
...     opt.zero_grad(); loss = (w * w).sum(); loss.backward(); opt.step()
>>> w
tensor([0.25], requires_grad=True)
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR, LRScheduler, MultiStepLR,
                           ReduceLROnPlateau, SequentialLR, StepLR, WarmupCosineLR)
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm_", "clip_grad_value_",
           "lr_scheduler", "LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
           "LinearLR", "WarmupCosineLR", "SequentialLR", "ReduceLROnPlateau"]
