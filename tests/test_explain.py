"""tidu.explain: integrated gradients is complete and agrees with Captum on the same PyTorch model; the other
attributions agree with Captum too."""
import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
from tidu.explain import input_x_gradient, integrated_gradients, occlusion, saliency, smooth_grad

from helpers import needs_torch, torch

try:
    import captum.attr as captum_attr
except Exception:  # noqa: BLE001 - any import failure means no reference
    captum_attr = None
needs_captum = pytest.mark.skipif(captum_attr is None or torch is None,
                                  reason="captum (and PyTorch) are not installed: agreement with Captum not checked")


def mlp(seed=0):
    td.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Softplus(), nn.Linear(16, 3)).eval()


def cnn(seed=0):
    td.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, stride=2), nn.Tanh(),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 3)).eval()


class TextModel(nn.Module):
    def __init__(self):
        super().__init__()
        td.manual_seed(3)
        self.emb = nn.Embedding(20, 5, padding_idx=0)
        self.fc = nn.Linear(5, 2)

    def forward(self, ids):
        return self.fc(self.emb(ids).tanh().mean(1))


def to_torch(model):
    """The PyTorch twin of one of the models above, with the same weights."""
    t = torch.nn
    layers = {nn.Linear: lambda m: t.Linear(m.in_features, m.out_features),
              nn.Conv2d: lambda m: t.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding),
              nn.Tanh: lambda m: t.Tanh(), nn.Softplus: lambda m: t.Softplus(), nn.Flatten: lambda m: t.Flatten()}
    if isinstance(model, TextModel):
        class Twin(t.Module):
            def __init__(self):
                super().__init__()
                self.emb, self.fc = t.Embedding(20, 5, padding_idx=0), t.Linear(5, 2)

            def forward(self, ids):
                return self.fc(self.emb(ids).tanh().mean(1))
        twin = Twin()
    else:
        twin = t.Sequential(*[layers[type(m)](m) for m in model])
    twin.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()})
    return twin.eval()


def data(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients_is_complete(method):
    model = mlp()
    x = td.tensor(data((4, 6)))
    baseline = data((6,), seed=2)  # one baseline for every sample
    attr, delta = integrated_gradients(model, x, target=td.tensor([0, 1, 2, 0]).numpy(), baseline=baseline,
                                       steps=200, method=method)
    with td.no_grad():
        gap = model(x).numpy()[np.arange(4), [0, 1, 2, 0]] - model(td.tensor(np.tile(baseline, (4, 1)))).numpy()[
            np.arange(4), [0, 1, 2, 0]]
    assert isinstance(attr, td.Tensor) and attr.shape == (4, 6) and attr.dtype == np.float32
    np.testing.assert_allclose(attr.numpy().sum(1), gap, rtol=0.01, atol=1e-4)
    np.testing.assert_allclose(delta.numpy(), attr.numpy().sum(1) - gap, atol=1e-5)
    assert np.all(np.abs(delta.numpy()) <= 0.01 * np.abs(gap) + 1e-4)


def test_chunked_path_equals_one_batch():
    model = cnn()
    x = data((3, 2, 7, 7))
    one, d1 = integrated_gradients(model, x, target=1, steps=20)
    chunked, d2 = integrated_gradients(model, x, target=1, steps=20, internal_batch_size=7)
    assert isinstance(one, np.ndarray)
    np.testing.assert_allclose(chunked, one, atol=1e-6)
    np.testing.assert_allclose(d2, d1, atol=1e-6)


@needs_captum
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients_agrees_with_captum(kind, method):
    model = mlp() if kind == "mlp" else cnn()
    x = data((3, 6) if kind == "mlp" else (3, 2, 7, 7))
    baseline = 0.1 * data(x.shape, seed=5)
    target = np.array([2, 0, 1])
    attr, delta = integrated_gradients(model, x, target=target, baseline=baseline, steps=30, method=method)
    ig = captum_attr.IntegratedGradients(to_torch(model))
    ref, ref_delta = ig.attribute(torch.from_numpy(x), baselines=torch.from_numpy(baseline),
                                  target=torch.from_numpy(target), n_steps=30, method=method,
                                  return_convergence_delta=True)
    np.testing.assert_allclose(attr, ref.detach().numpy(), atol=2e-5, rtol=1e-3)
    np.testing.assert_allclose(delta, ref_delta.detach().numpy(), atol=2e-5)


@needs_captum
def test_gradient_methods_agree_with_captum():
    model = cnn(1)
    twin = to_torch(model)
    x = data((2, 2, 7, 7), seed=3)
    xt = torch.from_numpy(x).requires_grad_()
    for ours, theirs in ((saliency(model, x, target=2), captum_attr.Saliency(twin).attribute(xt, target=2)),
                         (saliency(model, x, target=2, abs=False),
                          captum_attr.Saliency(twin).attribute(xt, target=2, abs=False)),
                         (input_x_gradient(model, x, target=2), captum_attr.InputXGradient(twin).attribute(xt, 2))):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), atol=1e-6, rtol=1e-4)


@needs_captum
def test_occlusion_agrees_with_captum():
    model = cnn(2)
    x = data((2, 2, 7, 7), seed=4)
    ours = occlusion(model, x, target=0, window=(3, 3), stride=(2, 2), baseline=0.5)
    theirs = captum_attr.Occlusion(to_torch(model)).attribute(torch.from_numpy(x), sliding_window_shapes=(2, 3, 3),
                                                              strides=(2, 2, 2), baselines=0.5, target=0)
    np.testing.assert_allclose(ours, theirs.detach().numpy(), atol=1e-5, rtol=1e-4)


@needs_captum
def test_layer_integrated_gradients_agrees_with_captum_for_tokens():
    model = TextModel()
    twin = to_torch(model)
    ids = np.array([[3, 7, 7, 1], [12, 0, 5, 19]])
    base_ids = np.zeros_like(ids)  # the padding token
    baseline = model.emb.weight.numpy()[base_ids]
    attr, delta = integrated_gradients(model, ids, target=1, baseline=baseline, steps=40, layer=model.emb)
    lig = captum_attr.LayerIntegratedGradients(twin, twin.emb)
    ref, ref_delta = lig.attribute(torch.from_numpy(ids), baselines=torch.from_numpy(base_ids), target=1,
                                   n_steps=40, return_convergence_delta=True)
    assert attr.shape == (2, 4, 5)
    np.testing.assert_allclose(attr, ref.detach().numpy(), atol=1e-5, rtol=1e-3)
    np.testing.assert_allclose(delta, ref_delta.detach().numpy(), atol=1e-5)
    scores = attr.sum(-1)  # one score per token
    assert scores.shape == (2, 4) and scores[1, 1] == 0  # the padding token gets nothing


def test_targets_default_to_the_predicted_class():
    model = mlp(4)
    x = data((5, 6), seed=6)
    with td.no_grad():
        pred = model(td.tensor(x)).numpy().argmax(1)
    np.testing.assert_array_equal(saliency(model, x), saliency(model, x, target=pred))
    by_fn = saliency(model, x, target=lambda out: out[:, 1])
    np.testing.assert_array_equal(by_fn, saliency(model, x, target=1))
    regression = nn.Linear(6, 1)
    assert input_x_gradient(regression, x).shape == (5, 6)  # one output: no target needed


def test_smooth_grad():
    lin = nn.Linear(4, 2)
    x = data((3, 4), seed=7)
    w = lin.weight.numpy()
    np.testing.assert_allclose(smooth_grad(lin, x, target=1, samples=6, abs=False), np.tile(w[1], (3, 1)),
                               rtol=1e-6)
    model = mlp(5)
    x6 = data((2, 6), seed=8)
    np.testing.assert_allclose(smooth_grad(model, x6, target=0, noise_level=0.0, samples=3),
                               saliency(model, x6, target=0), rtol=1e-6)
    a = smooth_grad(model, x6, target=0, samples=30, seed=0)
    b = smooth_grad(model, x6, target=0, samples=30, seed=0, internal_batch_size=4)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert not np.allclose(a, saliency(model, x6, target=0), rtol=1e-3)


def test_occlusion_works_on_token_ids():
    model = TextModel()
    ids = np.array([[3, 7, 7, 1]])
    scores = occlusion(model, ids, target=0, window=1, baseline=0)
    with td.no_grad():
        full = model(td.tensor(ids)).numpy()[0, 0]
        dropped = model(td.tensor(np.array([[3, 0, 7, 1]]))).numpy()[0, 0]
    assert scores.dtype == np.float32
    assert scores[0, 1] == pytest.approx(full - dropped, abs=1e-6)


def test_errors_name_the_problem():
    model = mlp()
    x = data((2, 6))
    with pytest.raises(TypeError, match="gradients need floating inputs, got int64; for token ids pass layer="):
        saliency(TextModel(), np.array([[1, 2]]))
    with pytest.raises(ValueError, match="method must be one of"):
        integrated_gradients(model, x, target=0, method="simpson")
    with pytest.raises(ValueError, match=r"baseline of shape \(5,\) does not broadcast to the inputs of shape"):
        integrated_gradients(model, x, target=0, baseline=np.zeros(5))
    with pytest.raises(ValueError, match="steps must be an integer of at least 2"):
        integrated_gradients(model, x, target=0, steps=1)
    with pytest.raises(ValueError, match="target must be a class index"):
        saliency(model, x, target=[0, 1, 2])
    with pytest.raises(ValueError, match=r"window \(9,\) is larger than the sample shape"):
        occlusion(model, x, window=9)


@needs_torch
def test_saliency_matches_torch_autograd_through_a_tidu_model():
    model = mlp(6)
    x = data((3, 6), seed=9)
    xt = torch.from_numpy(x).requires_grad_()
    to_torch(model)(xt)[:, 1].sum().backward()
    np.testing.assert_allclose(saliency(model, x, target=1, abs=False), xt.grad.numpy(), atol=1e-6, rtol=1e-5)
