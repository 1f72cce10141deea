"""tidu.optim: optimizers and schedules against PyTorch, state dicts, clipping, and the error messages."""
import math

import numpy as np
import pytest

import tidu as td
from tidu.optim import lr_scheduler as S

from helpers import needs_torch, torch

# --- a small problem, the same in both frameworks: a tanh MLP (4 → 8 → 3), MSE or cross-entropy ---
_rs = np.random.default_rng(0)
X = _rs.standard_normal((16, 4)).astype(np.float32)
Y = _rs.standard_normal((16, 3)).astype(np.float32)
LABELS = _rs.integers(0, 3, 16)
INIT = [(_rs.standard_normal(s) * 0.5).astype(np.float32) for s in [(8, 4), (8,), (3, 8), (3,)]]


def td_loss(ps, task="regression"):
    w1, b1, w2, b2 = ps
    out = td.linear(td.linear(td.tensor(X), w1, b1).tanh(), w2, b2)
    if task == "regression":
        return ((out - td.tensor(Y)) ** 2).mean()
    return td.cross_entropy(out, td.tensor(LABELS))


def torch_loss(ps, task="regression"):
    F = torch.nn.functional
    w1, b1, w2, b2 = ps
    out = F.linear(torch.tanh(F.linear(torch.from_numpy(X), w1, b1)), w2, b2)
    if task == "regression":
        return ((out - torch.from_numpy(Y)) ** 2).mean()
    return F.cross_entropy(out, torch.from_numpy(LABELS))


def _groups(ps, kwargs, two_groups):
    if not two_groups:
        return ps
    return [{"params": ps[:2]}, {"params": ps[2:], "lr": kwargs.get("lr", 0.01) * 0.3}]


def train(lib, name, kwargs, steps=50, two_groups=False, task="regression", init=INIT):
    """Parameters (as arrays) after ``steps`` steps of optimizer ``name`` in ``lib`` ('td' or 'torch')."""
    maximize = kwargs.get("maximize", False)  # then climb -loss, so that both runs still converge
    if lib == "td":
        ps = [td.tensor(a, requires_grad=True) for a in init]
        opt = getattr(td.optim, name)(_groups(ps, kwargs, two_groups), **kwargs)
        loss_fn = td_loss
    else:
        ps = [torch.tensor(a, requires_grad=True) for a in init]
        opt = getattr(torch.optim, name)(_groups(ps, kwargs, two_groups), **kwargs)
        loss_fn = torch_loss
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(ps, task)
        (-loss if maximize else loss).backward()
        opt.step()
    return [p.detach().numpy() for p in ps]


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.05, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.005)),
    ("RMSprop", dict(lr=0.005, centered=True)),
    # centered RMSprop divides by √(v − ḡ²), a float32 cancellation when a gradient is steady: with
    # alpha=0.9, eps=1e-8 rounding alone (NumPy vs PyTorch's fused multiply-add) moves a weight by 2e-5
    # in 50 steps (in float64 both agree to 1e-14), so this case takes a larger eps
    ("RMSprop", dict(lr=0.005, alpha=0.95, eps=1e-6, centered=True)),
    ("RMSprop", dict(lr=0.002, momentum=0.9)),
    ("RMSprop", dict(lr=0.002, momentum=0.5, centered=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.005, weight_decay=0.05, maximize=True)),
    ("Adagrad", dict(lr=0.05)),
    ("Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.05)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.1, eps=1e-6)),
    ("Adagrad", dict(lr=0.05, maximize=True)),
]


def _id(case):
    name, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items())


@needs_torch
@pytest.mark.parametrize("two_groups", [False, True], ids=["one-group", "two-groups"])
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_optimizer_matches_pytorch_after_50_steps(case, two_groups):
    name, kwargs = case
    ours, theirs = train("td", name, kwargs, two_groups=two_groups), train("torch", name, kwargs, two_groups=two_groups)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == np.float32, f"parameter {i} became {a.dtype}"
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"parameter {i} differs from PyTorch's")
    assert not np.allclose(ours[0], INIT[0]), "the parameters did not move"


@needs_torch
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_optimizer_matches_pytorch_on_classification(name):
    kwargs = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    ours = train("td", name, kwargs, task="classification")
    theirs = train("torch", name, kwargs, task="classification")
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_updates_keep_the_dtype(name, dtype):
    w = td.tensor(np.ones((3, 2), dtype=dtype), requires_grad=True)
    extra = dict(momentum=0.9, weight_decay=0.1) if name in ("SGD", "RMSprop") else dict(weight_decay=0.1)
    opt = getattr(td.optim, name)([w], lr=0.1, **extra)
    for _ in range(3):
        opt.zero_grad()
        (w * w).sum().backward()
        opt.step()
    assert w.dtype == dtype
    assert all(v.dtype == dtype for v in opt.state[w].values() if hasattr(v, "dtype"))


def test_step_skips_parameters_without_gradient_and_zero_grad():
    a = td.tensor([1.0, 2.0], requires_grad=True)
    b = td.tensor([3.0], requires_grad=True)
    opt = td.optim.Adam([a, b], lr=0.1)
    (a * a).sum().backward()
    opt.step()
    assert b.tolist() == [3.0] and b not in opt.state and a in opt.state
    opt.zero_grad(set_to_none=False)
    assert a.grad.tolist() == [0.0, 0.0] and b.grad is None
    opt.zero_grad()
    assert a.grad is None


def test_step_with_closure_returns_the_loss():
    w = td.tensor([2.0], requires_grad=True)
    opt = td.optim.SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss
    with td.no_grad():  # the closure still records its graph
        loss = opt.step(closure)
    assert loss.item() == 4.0 and w.tolist() == [1.0]


def test_add_param_group_and_named_parameters():
    a, b = td.tensor([1.0], requires_grad=True), td.tensor([1.0], requires_grad=True)
    opt = td.optim.SGD([("layer.weight", a)], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert opt.param_groups[0]["param_names"] == ["layer.weight"]
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.9
    (a + b).sum().backward()
    opt.step()
    assert a.tolist() == pytest.approx([0.9]) and b.tolist() == pytest.approx([0.5])
    assert "Parameter Group 1" in repr(opt) and "lr: 0.5" in repr(opt)


# --- state dicts ---
STATEFUL = [("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)), ("Adam", dict(lr=0.01, amsgrad=True)),
            ("AdamW", dict(lr=0.01)), ("RMSprop", dict(lr=0.005, momentum=0.5, centered=True)),
            ("Adagrad", dict(lr=0.05, lr_decay=0.01))]


def _steps(opt, ps, n):
    for _ in range(n):
        opt.zero_grad()
        td_loss(ps).backward()
        opt.step()


@pytest.mark.parametrize("case", STATEFUL, ids=[c[0] for c in STATEFUL])
def test_state_dict_round_trip_is_bit_for_bit(case):
    name, kwargs = case
    cls = getattr(td.optim, name)
    ps = [td.tensor(a, requires_grad=True) for a in INIT]
    opt = cls(_groups(ps, kwargs, True), **kwargs)
    _steps(opt, ps, 20)
    uninterrupted = [p.numpy().copy() for p in ps]

    ps = [td.tensor(a, requires_grad=True) for a in INIT]
    opt = cls(_groups(ps, kwargs, True), **kwargs)
    _steps(opt, ps, 10)
    saved, saved_params = opt.state_dict(), [p.numpy().copy() for p in ps]
    assert sorted(saved["state"]) == [0, 1, 2, 3]
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2, 3]]
    assert all(isinstance(v, td.Tensor) for s in saved["state"].values() for k, v in s.items() if k != "step")
    _steps(opt, ps, 3)  # training on does not change what was saved

    resumed = [td.tensor(a, requires_grad=True) for a in saved_params]
    opt2 = cls(_groups(resumed, {"lr": 123.0}, True), lr=123.0)  # hyper-parameters come from the saved state
    opt2.load_state_dict(saved)
    assert opt2.param_groups[1]["lr"] == opt.param_groups[1]["lr"]
    _steps(opt2, resumed, 10)
    for a, b in zip(resumed, uninterrupted):
        assert np.array_equal(a.numpy(), b)


@needs_torch
def test_loads_a_pytorch_state_dict():
    kwargs = dict(lr=0.01, amsgrad=True)
    tps = [torch.tensor(a, requires_grad=True) for a in INIT]
    topt = torch.optim.Adam(tps, **kwargs)
    for _ in range(10):
        topt.zero_grad()
        torch_loss(tps).backward()
        topt.step()
    ps = [td.tensor(p.detach().numpy().copy(), requires_grad=True) for p in tps]
    opt = td.optim.Adam(ps, **kwargs)
    opt.load_state_dict(topt.state_dict())
    assert opt.state[ps[0]]["step"] == 10 and "foreach" not in opt.param_groups[0]
    for _ in range(10):
        topt.zero_grad()
        torch_loss(tps).backward()
        topt.step()
    _steps(opt, ps, 10)
    for a, b in zip(ps, tps):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=1e-5, rtol=0)


def test_state_dict_survives_td_save_and_load(tmp_path):
    ps = [td.tensor(a, requires_grad=True) for a in INIT]
    opt = td.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.9))
    _steps(opt, ps, 3)
    td.save(opt.state_dict(), tmp_path / "opt.safetensors")
    opt2 = td.optim.AdamW(ps)
    opt2.load_state_dict(td.load(tmp_path / "opt.safetensors"))
    assert opt2.param_groups[0]["betas"] == (0.8, 0.9) and opt2.state[ps[2]]["step"] == 3
    assert np.array_equal(opt2.state[ps[2]]["exp_avg_sq"], opt.state[ps[2]]["exp_avg_sq"])


def test_load_state_dict_refuses_a_mismatch():
    ps = [td.tensor(a, requires_grad=True) for a in INIT]
    opt = td.optim.Adam(ps, lr=0.01)
    _steps(opt, ps, 1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: the saved state has 1 parameter group\(s\), "
                                         r"this optimizer has 2"):
        td.optim.Adam(_groups(ps, {}, True)).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"parameter group 0 has 4 parameter\(s\) in the saved state and 2 in this"):
        td.optim.Adam(ps[:2]).load_state_dict(sd)
    swapped = [ps[2], ps[1], ps[0], ps[3]]  # (3, 8) where (8, 4) was
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(8, 4\) in the saved state, "
                                         r"but the parameter has shape \(3, 8\)"):
        td.optim.Adam(swapped).load_state_dict(sd)
    with pytest.raises(ValueError, match="expected a dict with 'state' and 'param_groups'"):
        opt.load_state_dict({"weight": 1})
    bad = opt.state_dict()
    bad["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"Adam: invalid learning rate -1.0 \(expected lr >= 0\)"):
        opt.load_state_dict(bad)


# --- argument errors ---
def _p():
    return [td.tensor([1.0], requires_grad=True)]


@pytest.mark.parametrize("make, error, message", [
    (lambda: td.optim.AdamW(_p(), lr=-1), ValueError, r"AdamW: invalid learning rate -1 \(expected lr >= 0\)"),
    (lambda: td.optim.Adam(_p(), betas=(1.0, 0.999)), ValueError,
     r"Adam: invalid beta parameter at index 0: 1.0 \(expected 0 <= betas\[0\] < 1\)"),
    (lambda: td.optim.Adam(_p(), betas=(0.9, -0.1)), ValueError, r"invalid beta parameter at index 1: -0.1"),
    (lambda: td.optim.Adam(_p(), betas=0.9), TypeError, r"Adam: betas must be a pair of numbers"),
    (lambda: td.optim.Adam(_p(), eps=-1e-8), ValueError, r"Adam: invalid epsilon value -1e-08 \(expected eps >= 0\)"),
    (lambda: td.optim.AdamW(_p(), weight_decay=-0.1), ValueError, r"AdamW: invalid weight_decay value -0.1"),
    (lambda: td.optim.Adam(_p(), lr="0.1"), TypeError, r"Adam: lr must be a real number, got str '0.1'"),
    (lambda: td.optim.SGD(_p(), lr=0.1, nesterov=True), ValueError,
     r"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, got momentum=0.0, dampening=0.0"),
    (lambda: td.optim.SGD(_p(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     r"Nesterov momentum requires a momentum > 0 and zero dampening"),
    (lambda: td.optim.SGD(_p(), momentum=-0.5), ValueError, r"SGD: invalid momentum value -0.5 \(expected momentum >= 0"),
    (lambda: td.optim.RMSprop(_p(), alpha=-0.1), ValueError, r"RMSprop: invalid alpha value -0.1"),
    (lambda: td.optim.Adagrad(_p(), lr_decay=-1.0), ValueError, r"Adagrad: invalid lr_decay value -1.0"),
    (lambda: td.optim.Adagrad(_p(), initial_accumulator_value=-1.0), ValueError,
     r"Adagrad: invalid initial_accumulator_value -1.0"),
    (lambda: td.optim.SGD([{"params": _p(), "lr": -0.5}], lr=0.1), ValueError, r"SGD: invalid learning rate -0.5"),
    (lambda: td.optim.SGD([], lr=0.1), ValueError, r"SGD: got an empty parameter list"),
    (lambda: td.optim.SGD(_p()[0], lr=0.1), TypeError, r"SGD: params must be an iterable of Tensors or of dicts, "
                                                        r"got a single Tensor"),
    (lambda: td.optim.SGD([np.ones(2)], lr=0.1), TypeError, r"SGD: can only optimize Tensors, but parameter 0 "
                                                            r"of the group is a ndarray"),
    (lambda: td.optim.SGD([td.tensor([1.0], requires_grad=True) * 2], lr=0.1), ValueError,
     r"SGD: cannot optimize a non-leaf Tensor"),
    (lambda: td.optim.SGD([td.tensor([1, 2])], lr=0.1), TypeError, r"parameter 0 of the group has dtype int64"),
    (lambda: td.optim.SGD(_p() * 2, lr=0.1), ValueError,
     r"SGD: parameter 1 \(shape \(1,\)\) appears twice in one parameter group"),
])
def test_invalid_arguments_are_refused_with_a_clear_message(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_parameter_in_two_groups_is_refused():
    p = _p()
    opt = td.optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="SGD: some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": p})
    with pytest.raises(ValueError, match=r"SGD.add_param_group: the group has no 'params' key"):
        opt.add_param_group({"lr": 0.1})


# --- learning-rate schedules, against PyTorch over 50 steps ---
SCHEDULES = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 30], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.93)),
    ("CosineAnnealingLR", dict(T_max=20, eta_min=0.001)),   # past T_max: back up, as in PyTorch
    ("CosineAnnealingLR", dict(T_max=50)),
    ("LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=10)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=30)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (1 + e) ** 0.5)),
]


def _sgd_pair():
    ours = td.optim.SGD([{"params": _p()}, {"params": _p(), "lr": 0.05}], lr=0.2)
    theirs = torch.optim.SGD([{"params": [torch.ones(1, requires_grad=True)]},
                              {"params": [torch.ones(1, requires_grad=True)], "lr": 0.05}], lr=0.2)
    return ours, theirs


def _lr_sequence(opt, sched, steps=50, metrics=None):
    lrs = [list(sched.get_last_lr())]
    for i in range(steps):
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
        lrs.append([g["lr"] for g in opt.param_groups])
        assert lrs[-1] == list(sched.get_last_lr())
    return lrs


@needs_torch
@pytest.mark.parametrize("case", SCHEDULES, ids=[c[0] + str(i) for i, c in enumerate(SCHEDULES)])
def test_schedule_matches_pytorch(case):
    name, kwargs = case
    ours, theirs = _sgd_pair()
    a = _lr_sequence(ours, getattr(S, name)(ours, **kwargs))
    b = _lr_sequence(theirs, getattr(torch.optim.lr_scheduler, name)(theirs, **kwargs))
    assert a == b  # the same formulas in the same order: equal to the last bit


@needs_torch
def test_two_schedulers_on_one_optimizer_compose_as_in_pytorch():
    ours, theirs = _sgd_pair()
    scheds = [(S.CosineAnnealingLR(ours, T_max=15), S.MultiStepLR(ours, milestones=[10, 20])),
              (torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=15),
               torch.optim.lr_scheduler.MultiStepLR(theirs, milestones=[10, 20]))]
    seqs = []
    for opt, (s1, s2) in zip((ours, theirs), scheds):
        seq = []
        for _ in range(40):
            opt.step()
            s1.step()
            s2.step()
            seq.append([g["lr"] for g in opt.param_groups])
        seqs.append(seq)
    assert seqs[0] == seqs[1]


@needs_torch
def test_sequential_lr_matches_pytorch():
    seqs = []
    for lib, opt in zip((S, torch.optim.lr_scheduler), _sgd_pair()):
        warm = lib.LinearLR(opt, start_factor=0.2, total_iters=5)
        cos = lib.CosineAnnealingLR(opt, T_max=30, eta_min=0.01)
        seqs.append(_lr_sequence(opt, lib.SequentialLR(opt, [warm, cos], milestones=[5])))
    assert seqs[0] == seqs[1]


@needs_torch
def test_warmup_cosine_matches_its_formula_in_pytorch_lambda_lr():
    warmup, total, min_lr = 8, 40, 0.01
    ours, theirs = _sgd_pair()
    a = _lr_sequence(ours, S.WarmupCosineLR(ours, warmup_steps=warmup, total_steps=total, min_lr=min_lr))

    def factor(base):
        def f(t):
            if t < warmup:
                return t / warmup
            p = min(1.0, (t - warmup) / (total - warmup))
            return (min_lr + (base - min_lr) * (1 + math.cos(math.pi * p)) / 2) / base
        return f
    b = _lr_sequence(theirs, torch.optim.lr_scheduler.LambdaLR(theirs, [factor(0.2), factor(0.05)]))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    assert a[0] == [0.0, 0.0] and a[warmup] == [0.2, 0.05] and a[total] == a[-1] == [min_lr, min_lr]
    assert all(x[0] >= y[0] for x, y in zip(a[warmup:], a[warmup + 1:]))


def test_cosine_recursion_equals_its_closed_form():
    opt = td.optim.SGD(_p(), lr=0.3)
    sched = S.CosineAnnealingLR(opt, T_max=25, eta_min=0.02)
    for t in range(1, 60):
        opt.step()
        sched.step()
        closed = 0.02 + (0.3 - 0.02) * (1 + math.cos(math.pi * t / 25)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(closed, rel=1e-9, abs=1e-12)
        assert sched._get_closed_form_lr()[0] == pytest.approx(closed, rel=1e-12, abs=1e-15)


@needs_torch
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(mode="min", factor=0.5, patience=2, cooldown=2, min_lr=0.01),
    dict(mode="max", factor=0.3, patience=1, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", factor=0.5, patience=0, threshold=0.01, threshold_mode="rel", min_lr=[0.0, 0.02], eps=1e-3),
], ids=["defaults", "min-cooldown", "max-abs", "max-rel-minlrs"])
def test_reduce_lr_on_plateau_matches_pytorch(kwargs):
    rs = np.random.default_rng(3)
    metrics = list(np.round(np.abs(rs.standard_normal(50)) + np.linspace(2, 1, 50), 2))  # noisy, slowly improving
    ours, theirs = _sgd_pair()
    a = _lr_sequence(ours, S.ReduceLROnPlateau(ours, **kwargs), metrics=metrics)
    b = _lr_sequence(theirs, torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs), metrics=metrics)
    assert a == b
    assert a[-1] != a[0]


def test_scheduler_state_dict_round_trip():
    opt = td.optim.SGD(_p(), lr=1.0)
    sched = S.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        opt.step()
        sched.step()
    saved_opt, saved = opt.state_dict(), sched.state_dict()
    rest = []
    for _ in range(4):
        opt.step()
        sched.step()
        rest.append(sched.get_last_lr())
    opt2 = td.optim.SGD(_p(), lr=1.0)
    opt2.load_state_dict(saved_opt)
    sched2 = S.CosineAnnealingLR(opt2, T_max=10, last_epoch=saved["last_epoch"])
    sched2.load_state_dict(saved)
    rest2 = []
    for _ in range(4):
        opt2.step()
        sched2.step()
        rest2.append(sched2.get_last_lr())
    assert rest == rest2


def test_scheduler_errors():
    opt = td.optim.SGD(_p(), lr=1.0)
    with pytest.raises(TypeError, match="StepLR: expected a tidu Optimizer, got list"):
        S.StepLR([1], step_size=2)
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive int, got 0"):
        S.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match=r"WarmupCosineLR: total_steps must be an int > warmup_steps \(10\), got 5"):
        S.WarmupCosineLR(opt, warmup_steps=10, total_steps=5)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: factor must be < 1.0, got 1.5"):
        S.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="LambdaLR: expected 1 lr_lambdas"):
        S.LambdaLR(opt, [lambda e: 1.0, lambda e: 1.0])
    with pytest.raises(KeyError, match="param_groups\\[0\\] has no 'initial_lr'"):
        S.ExponentialLR(td.optim.SGD(_p(), lr=1.0), gamma=0.9, last_epoch=3)


# --- gradient clipping ---
def _with_grads(lib, grads):
    ps = []
    for g in grads:
        if lib == "td":
            p = td.tensor(np.zeros_like(g), requires_grad=True)
            p.grad = td.tensor(g.copy())
        else:
            p = torch.zeros(g.shape, requires_grad=True)
            p.grad = torch.tensor(g.copy())
        ps.append(p)
    return ps


@needs_torch
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_pytorch(norm_type, max_norm):
    rs = np.random.default_rng(1)
    grads = [rs.standard_normal(s).astype(np.float32) for s in [(4, 3), (3,), (1,)]]
    ours, theirs = _with_grads("td", grads), _with_grads("torch", grads)
    total = td.optim.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, td.Tensor) and total.dtype == np.float32 and total.shape == ()
    np.testing.assert_allclose(total.item(), expected.item(), rtol=1e-6)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-7)
    if max_norm == 1e3:
        assert all(np.array_equal(a.grad.numpy(), g) for a, g in zip(ours, grads))  # not clipped: untouched


def test_clip_grad_norm_non_finite_and_empty():
    p = _with_grads("td", [np.array([1.0, np.nan], dtype=np.float32)])
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm of order 2.0 of the gradients is nan"):
        td.optim.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    assert td.optim.clip_grad_norm_([td.tensor([1.0], requires_grad=True)], 1.0).item() == 0.0


@needs_torch
def test_clip_grad_value_matches_pytorch():
    grads = [np.linspace(-3, 3, 7, dtype=np.float32)]
    ours, theirs = _with_grads("td", grads), _with_grads("torch", grads)
    td.optim.clip_grad_value_(ours, 1.5)
    torch.nn.utils.clip_grad_value_(theirs, 1.5)
    np.testing.assert_array_equal(ours[0].grad.numpy(), theirs[0].grad.numpy())
    with pytest.raises(ValueError, match="clip_grad_value_: clip_value must be >= 0, got -1.0"):
        td.optim.clip_grad_value_(ours, -1)
