"""The graph and the backward walk: accumulation, reuse, depth, freeing, grad mode, functional grad."""
import numpy as np
import pytest

import tidu as td


def test_reused_node_accumulates():
    a = td.tensor([2.0], requires_grad=True)
    b = a + a
    c = b + b
    c.backward(td.ones(1))
    assert a.grad.tolist() == [4.0]
    d = a * a * a  # used twice inside one expression
    d.sum().backward()
    assert a.grad.tolist() == [4.0 + 12.0]  # gradients accumulate across backward calls


def test_deep_graph_no_recursion_limit():
    x = td.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y + 0.0001 * y
    y.backward()
    assert np.isclose(x.grad.item(), 1.0001 ** 10_000, rtol=1e-3)


def test_graph_freed_after_backward_and_retain_graph():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_backward_errors():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient can be implicit only for a scalar output, got shape \(2,\)"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        td.tensor([1.0]).sum().backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\) but the output has shape \(2,\)"):
        (x * 2).backward(td.ones(3))
    with pytest.raises(TypeError, match="only floating tensors can require gradients"):
        td.tensor([1, 2]).requires_grad_()


def test_explicit_gradient():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(td.tensor([1.0, 10.0]))
    assert x.grad.tolist() == [3.0, 30.0]


def test_no_grad_and_detach():
    x = td.tensor([1.0], requires_grad=True)
    with td.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert td.is_grad_enabled()
    z = (x * 2).detach()
    assert not z.requires_grad

    @td.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad
    with td.no_grad():
        with td.enable_grad():
            assert (x * 2).requires_grad


def test_leaf_grads_do_not_alias():
    """Two leaves fed by one add get separate gradient arrays; in-place clipping of one leaves the other."""
    a = td.tensor([1.0], requires_grad=True)
    b = td.tensor([1.0], requires_grad=True)
    (a + b).sum().backward()
    with td.no_grad():
        a.grad.mul_(0.5)
    assert b.grad.tolist() == [1.0]


def test_functional_grad_leaves_dot_grad_alone():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    w = td.tensor([3.0, 4.0], requires_grad=True)
    h = x * w
    y = (h * h).sum()
    gx, gh = td.grad(y, [x, h])
    assert gx.tolist() == [2 * 1 * 9, 2 * 2 * 16] and gh.tolist() == [6.0, 16.0]
    assert x.grad is None and w.grad is None
    unused = td.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="was not used"):
        td.grad((x * 2).sum(), [unused])
    assert td.grad((x * 2).sum(), [x, unused], allow_unused=True)[1] is None


def test_hooks_and_retain_grad():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda g: g * 10)
    h = (x * 2).retain_grad()
    (h * h).sum().backward()
    assert h.grad.tolist() == [4.0, 8.0]
    assert x.grad.tolist() == [80.0, 160.0]


def test_inplace_on_graph_leaf_refused():
    w = td.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place change of a tensor that requires grad"):
        w += 1
    with td.no_grad():
        w -= 0.5
    assert w.tolist() == [0.5]


def test_gradcheck_reports_the_element():
    def wrong(t):  # forward x^2, backward claims 3x
        from tidu.tensor import _result
        return _result(t.data ** 2, (t,), lambda g: (g * 3 * t.data,)).sum()
    x = td.tensor([1.0, 2.0], dtype=td.float64, requires_grad=True)
    with pytest.raises(td.GradcheckError, match=r"input 0 \(shape \(2,\)\), element \(0,\): analytic [-\d.]+ vs numeric [-\d.]+"):
        td.gradcheck(wrong, x)
    with pytest.raises(td.GradcheckError, match="need float64"):
        td.gradcheck(lambda t: t.sum(), td.tensor([1.0], requires_grad=True))


def test_item_numpy_repr():
    x = td.tensor([[1.0, 2.0]], requires_grad=True)
    assert x.numpy().dtype == np.float32 and x.shape == (1, 2) and x.ndim == 2
    assert (x.sum()).item() == 3.0
    assert "requires_grad=True" in repr(x) and "grad_fn" in repr(x * 2)
    with pytest.raises(ValueError, match="only a one-element tensor"):
        x.item()


def test_leaf_hook_fires_once_with_the_summed_gradient():
    w = td.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    handle = w.register_hook(lambda g: seen.append(g.tolist()))
    ((w * 3).sum() + (w * w).sum()).backward()  # two uses of w
    assert seen == [[5.0, 7.0]] and w.grad.tolist() == [5.0, 7.0]
    handle.remove()
    (w * 1).sum().backward()
    assert len(seen) == 1


def test_post_accumulate_hook_and_queue_callback():
    w = td.tensor([1.0], requires_grad=True)
    b = td.tensor([2.0], requires_grad=True)
    events = []

    def after(p):
        events.append(("post", p.grad.item()))
        td.autograd.queue_callback(lambda: events.append(("end", w.grad.item(), b.grad.item())))
    w.register_post_accumulate_grad_hook(after)
    (w * b * 4).sum().backward()
    assert events == [("post", 8.0), ("end", 8.0, 4.0)]
    with pytest.raises(RuntimeError, match="only be called while backward is running"):
        td.autograd.queue_callback(lambda: None)


def test_hook_on_intermediate_tensor():
    x = td.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    h.register_hook(lambda g: g * 0)  # cut the gradient at h
    (h * h + x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]
