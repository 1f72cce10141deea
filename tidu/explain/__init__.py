"""Explanations: which input features drove a prediction (saliency, input × gradient, integrated
gradients, SmoothGrad, occlusion).

>>> import tidu as td
>>> import tidu.explain as ex
>>> model = lambda x: (x * td.tensor([1.0, -2.0])).sum(1)
>>> ex.input_x_gradient(model, td.tensor([[3.0, 1.0]]))
tensor([[ 3., -2.]])
"""
from .attributions import (METHODS, input_x_gradient, integrated_gradients, occlusion, saliency,
                           smooth_grad)

__all__ = ["saliency", "input_x_gradient", "integrated_gradients", "smooth_grad", "occlusion", "METHODS"]
