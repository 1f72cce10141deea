"""One helper to check an op twice: float64 finite differences, and PyTorch parity.

    check(lambda x: x.exp(), shapes=[(3, 4), (0, 2)])
    check(F.cross_entropy, torch_fn=torch.nn.functional.cross_entropy, inputs=[logits, labels])

``fn`` takes tidu tensors; ``torch_fn`` (default: ``fn`` itself, when the same code reads right for
both libraries) takes torch tensors. Float inputs are differentiated, integer/bool ones passed as is.
"""
import numpy as np
import pytest

import tidu as td

try:
    import torch
except ImportError:  # parity tests skip, with the reason shown
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: parity with PyTorch not checked")


def make_inputs(shapes, seed=0, low=-2.0, high=2.0, positive=False):
    rs = np.random.default_rng(seed)
    arrays = []
    for s in shapes:
        a = rs.uniform(low, high, size=s)
        if positive:
            a = np.abs(a) + 0.1
        arrays.append(np.asarray(a))
    return arrays


def _is_float(a):
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _td_inputs(arrays, dtype):
    return [td.tensor(a.astype(dtype), requires_grad=True) if _is_float(a) else
            (td.tensor(a) if isinstance(a, np.ndarray) else a) for a in arrays]


def _outputs(out):
    if isinstance(out, (tuple, list)):
        return [o for o in out if hasattr(o, "shape")]
    return [out]


def gradcheck_op(fn, arrays, eps=1e-6, atol=1e-5, rtol=1e-3):
    inputs = _td_inputs(arrays, np.float64)
    assert td.gradcheck(fn, *inputs, eps=eps, atol=atol, rtol=rtol)


def torch_parity(fn, torch_fn, arrays, atol=1e-5, rtol=1e-4, check_grad=True):
    if torch is None:
        pytest.skip("PyTorch is not installed: parity with PyTorch not checked")
    ours = _td_inputs(arrays, np.float32)
    theirs = [torch.tensor(a.astype(np.float32), requires_grad=True) if _is_float(a) else
              (torch.from_numpy(a) if isinstance(a, np.ndarray) else a) for a in arrays]
    out_ours, out_theirs = _outputs(fn(*ours)), _outputs(torch_fn(*theirs))
    assert len(out_ours) == len(out_theirs)
    rs = np.random.default_rng(1)
    loss_ours, loss_theirs = 0, 0
    for o, t in zip(out_ours, out_theirs):
        t_np = t.detach().numpy()
        assert tuple(o.shape) == tuple(t_np.shape), f"shape {tuple(o.shape)} vs torch {tuple(t_np.shape)}"
        if t_np.dtype.kind == "f":
            assert o.dtype == np.float32, f"dtype {o.dtype}: float32 in, float32 out"
        np.testing.assert_allclose(o.numpy(), t_np, atol=atol, rtol=rtol, err_msg="forward values differ")
        if check_grad and o.requires_grad and t.requires_grad:
            v = rs.standard_normal(o.shape).astype(np.float32)
            loss_ours = loss_ours + (o * td.tensor(v)).sum()
            loss_theirs = loss_theirs + (t * torch.from_numpy(v)).sum()
    if check_grad and not isinstance(loss_ours, int):
        loss_ours.backward()
        loss_theirs.backward()
        for i, (a, b) in enumerate(zip(ours, theirs)):
            if isinstance(b, torch.Tensor) and b.requires_grad:
                ga = None if a.grad is None else a.grad.numpy()
                gb = None if b.grad is None else b.grad.numpy()
                if gb is None:
                    assert ga is None or not np.any(ga), f"input {i}: torch gives no gradient, tidu does"
                    continue
                assert ga is not None, f"input {i}: tidu gives no gradient"
                assert ga.dtype == np.float32, f"input {i}: gradient dtype {ga.dtype}"
                np.testing.assert_allclose(ga, gb, atol=atol, rtol=rtol, err_msg=f"gradient of input {i} differs")


def check(fn, shapes=None, inputs=None, torch_fn=None, grad=True, atol=1e-5, rtol=1e-4,
          low=-2.0, high=2.0, positive=False, seed=0, fd_atol=1e-5, fd_rtol=1e-3):
    """Gradcheck ``fn`` in float64, then compare values and gradients with PyTorch in float32."""
    arrays = inputs if inputs is not None else make_inputs(shapes, seed, low, high, positive)
    if grad:
        gradcheck_op(fn, arrays, atol=fd_atol, rtol=fd_rtol)
    torch_parity(fn, torch_fn or fn, arrays, atol=atol, rtol=rtol, check_grad=grad)


def run_cli(capsys, *args):
    """Run ``tidu ARGS…`` in-process; (exit code, stdout, stderr)."""
    from tidu.cli import main
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err
