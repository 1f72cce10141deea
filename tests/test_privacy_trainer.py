"""DP-SGD in the Trainer: PrivacyCallback logs ε per epoch and stops cleanly before a target ε;
the [privacy] section of a config trains privately through `tidu train` (and resumes bit for bit)."""
import io
import json
import os
import textwrap

import numpy as np
import pytest

pytest.importorskip("dp_accounting")

import tidu as td  # noqa: E402
import tidu.nn as nn  # noqa: E402
from tidu import config  # noqa: E402
from tidu.data import DataLoader, TensorDataset  # noqa: E402
from tidu.privacy import PrivacyBudgetExceeded, compute_epsilon, make_private  # noqa: E402
from tidu.privacy.callback import PrivacyCallback  # noqa: E402
from tidu.train import Trainer  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def cancer():
    """breast_cancer, standardized: 569 rows, 30 features, 2 classes."""
    pytest.importorskip("sklearn")
    from tidu.data import load
    d = load("breast_cancer")
    X = ((d.X - d.X.mean(0)) / d.X.std(0)).astype(np.float32)
    return X, d.y


def private_trainer(data, batch_size=32, callback=None, seed=0, progress=False, run_dir=None, **private):
    X, y = data
    td.manual_seed(seed)
    model = nn.Sequential(nn.Linear(X.shape[1], 8), nn.Tanh(), nn.Linear(8, 2))
    opt = td.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True, seed=seed)
    model, opt, loader = make_private(model, opt, loader, max_grad_norm=1.0, seed=seed, **private)
    callback = callback if callback is not None else PrivacyCallback(file=io.StringIO())
    trainer = Trainer(model, loss="cross_entropy", optimizer=opt, metrics=["accuracy"], callbacks=[callback],
                      progress=progress, run_dir=run_dir, plots=False)
    return trainer, loader, callback


def test_epsilon_is_logged_per_epoch_increasing_and_matches_the_accountant(cancer, tmp_path):
    trainer, loader, cb = private_trainer(cancer, noise_multiplier=1.0, run_dir=tmp_path)
    history = trainer.fit(loader, epochs=4, val_data=cancer)
    eps = history["epsilon"]
    assert len(eps) == 4 and all(b > a > 0 for a, b in zip(eps, eps[1:]))
    opt = trainer.optimizer
    q, steps = opt.sample_rate, len(loader)
    for epoch, e in enumerate(eps, start=1):  # ε after k epochs is that of k·(1/q) steps of (σ, q)
        assert e == pytest.approx(compute_epsilon(1.0, q, epoch * steps, 1e-5), rel=1e-9)
    assert cb.epsilon == eps[-1] == opt.epsilon(1e-5)
    assert history["val_accuracy"][-1] > 0.85  # private, yet it learns
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epsilon"] for r in rows] == pytest.approx(eps)
    saved = json.loads((tmp_path / "history.json").read_text())["history"]["epsilon"]
    assert saved == pytest.approx(eps)


def test_progress_line_shows_epsilon(cancer):
    from tidu.train import ProgressBar
    out = io.StringIO()
    trainer, loader, _ = private_trainer(cancer, noise_multiplier=1.0, progress=ProgressBar("lines", file=out))
    trainer.fit(loader, epochs=2)
    assert out.getvalue().startswith("epoch 1/2 - loss: ") and out.getvalue().count("epsilon: ") == 2


def test_training_stops_before_the_target_epsilon_with_a_clear_message(cancer):
    out = io.StringIO()
    trainer, loader, cb = private_trainer(cancer, target_epsilon=2.0, epochs=3,
                                          callback=PrivacyCallback(file=out))
    history = trainer.fit(loader, epochs=20)  # the budget was planned for 3 epochs
    eps = history["epsilon"]
    assert len(history) == 3 and eps[-1] <= 2.0 and cb.stopped_epoch == 2
    assert trainer.optimizer.epsilon() == eps[-1]
    message = out.getvalue()
    assert message.startswith("privacy budget: stopped after epoch 3 of 20: ε = ")
    assert "past the target ε = 2" in message and cb.message in message
    # the same budget by hand: one more epoch would have passed it
    opt = trainer.optimizer
    assert opt.accountant.epsilon_after(len(loader), opt.noise_multiplier, opt.sample_rate, 1e-5) > 2.0


def test_a_callback_target_below_the_optimizers_stops_earlier(cancer):
    trainer, loader, cb = private_trainer(cancer, noise_multiplier=1.0,
                                          callback=PrivacyCallback(target_epsilon=4.0, file=io.StringIO()))
    history = trainer.fit(loader, epochs=10)
    assert len(history) >= 2 and history["epsilon"][-1] <= 4.0 < compute_epsilon(1.0, trainer.optimizer.sample_rate,
                                                           (len(history) + 1) * len(loader), 1e-5)
    assert cb.stopped_epoch == len(history) - 1


def test_a_budget_too_small_for_one_epoch_trains_nothing(cancer):
    out = io.StringIO()
    trainer, loader, cb = private_trainer(cancer, noise_multiplier=1.0,
                                          callback=PrivacyCallback(target_epsilon=0.1, file=out))
    before = {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}
    history = trainer.fit(loader, epochs=5)
    assert len(history) == 0 and trainer.optimizer.accountant.steps == 0
    assert all(np.array_equal(before[k], v.numpy()) for k, v in trainer.model.state_dict().items())
    assert "training did not start: one epoch would spend ε = " in out.getvalue()


def test_the_optimizer_guard_still_refuses_a_step_past_the_target(cancer):
    """Without the callback's look-ahead (here: a hand-written loop), the DPOptimizer refuses the step."""
    trainer, loader, _ = private_trainer(cancer, target_epsilon=1.0, epochs=1)
    opt = trainer.optimizer
    with pytest.raises(PrivacyBudgetExceeded, match="the privacy budget is spent"):
        for _ in range(5):
            for _ in loader:
                opt.zero_grad()
                opt.step()  # noise-only steps still spend ε
    assert opt.epsilon() <= 1.0


def test_empty_poisson_batches_are_noise_only_steps(cancer):
    X, y = cancer[0][:40], cancer[1][:40]
    trainer, loader, _ = private_trainer((X, y), batch_size=1, noise_multiplier=1.0)  # q = 1/40: many empty
    sizes = [len(b[0]) for b in loader]
    assert 0 in sizes
    history = trainer.fit(loader, epochs=2)
    assert trainer.optimizer.accountant.steps == 2 * len(loader)  # every batch stepped, empty ones too
    assert np.all(np.isfinite(history["loss"])) and len(history["epsilon"]) == 2


def test_refusals_name_the_problem(cancer):
    X, y = cancer
    model = nn.Linear(30, 2)
    with pytest.raises(TypeError, match="PrivacyCallback: the optimizer must be a DPOptimizer; make the model"):
        Trainer(model, loss="cross_entropy", optimizer=td.optim.SGD(model.parameters(), lr=0.1),
                callbacks=[PrivacyCallback()])
    _, opt, _ = make_private(model, td.optim.SGD(model.parameters(), lr=0.1),
                             DataLoader(TensorDataset(X, y), batch_size=32), noise_multiplier=1.0)
    with pytest.raises(ValueError, match="accumulate_steps=2 does not go with DP-SGD"):
        Trainer(model, loss="cross_entropy", optimizer=opt, callbacks=[PrivacyCallback()], accumulate_steps=2)
    trainer = Trainer(model, loss="cross_entropy", optimizer=opt, callbacks=[PrivacyCallback()], grad_clip=1.0,
                      progress=False)
    with pytest.raises(ValueError, match="gradient clipping .* does nothing under DP-SGD"):
        trainer.fit((X, y), epochs=1)
    with pytest.raises(ValueError, match="target_epsilon must be a positive number"):
        PrivacyCallback(target_epsilon=0)
    with pytest.raises(ValueError, match="delta must lie in"):
        PrivacyCallback(delta=1.5)


# --- the config's [privacy] section through `tidu train` ---

BASE = {"data": {"source": "breast_cancer"}, "model": {"hidden": [8]}}


@pytest.mark.parametrize("privacy, extra, message", [
    ({}, {}, "privacy: give exactly one of privacy.noise_multiplier"),
    ({"noise_multiplier": 1.0, "target_epsilon": 3.0}, {}, "give exactly one of"),
    ({"target_epsilon": -1.0}, {}, "privacy.target_epsilon: expected a number > 0"),
    ({"noise_multiplier": 1.0, "accountant": "gdp"}, {}, "privacy.accountant: unknown value 'gdp'"),
    ({"noise_multiplier": 1.0, "delta": 1.0}, {}, "privacy.delta: expected a number > 0 and < 1"),
    ({"noise_multiplier": 1.0}, {"model": {"batch_norm": True}}, "model.batch_norm: does not go with \\[privacy\\]"),
    ({"noise_multiplier": 1.0}, {"train": {"grad_clip": 1.0}}, "train.grad_clip: does not go with \\[privacy\\]"),
    ({"noise_multiplier": 1.0, "noise": 2}, {}, "unknown field privacy.noise"),
])
def test_privacy_config_errors(privacy, extra, message):
    raw = {**BASE, **extra, "privacy": privacy}
    with pytest.raises(config.ConfigError, match=message):
        config.validate(raw)


def test_privacy_config_is_optional_and_validates_to_itself():
    assert config.validate(dict(BASE))["privacy"] is None
    cfg = config.validate({**BASE, "privacy": {"target_epsilon": 3}})
    assert cfg["privacy"] == {"noise_multiplier": None, "target_epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0,
                              "accountant": "rdp"}
    assert config.validate(cfg) == cfg


PRIVATE = """
    seed = 1
    [data]
    source = "breast_cancer"
    split = [0.7, 0.15, 0.15]
    batch_size = 32
    [model]
    hidden = [8]
    activation = "tanh"
    [optimizer]
    name = "sgd"
    lr = 0.05
    momentum = 0.9
    [train]
    epochs = 4
    [privacy]
    target_epsilon = 2.0
    [output]
    plots = false
    """


def test_tidu_train_with_privacy_logs_epsilon_stays_in_budget_and_resumes_bit_for_bit(tmp_path, capsys):
    from tidu.cli import main
    path = tmp_path / "private.toml"
    path.write_text(textwrap.dedent(PRIVATE))
    assert main(["train", str(path), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert out.count("epsilon: ") == 4
    history = json.loads((tmp_path / "a" / "history.json").read_text())["history"]
    eps = history["epsilon"]
    assert len(eps) == 4 and all(b > a for a, b in zip(eps, eps[1:])) and 1.5 < eps[-1] <= 2.0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["history"]["epsilon"] == eps[-1] and summary["test"]["accuracy"] > 0.8
    # killed after epoch 2, resumed: the same weights and the same ε
    assert main(["train", str(path), "--out", str(tmp_path / "b"), "--stop-after-epoch", "2"]) == 1
    assert main(["train", "--resume", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    a = td.load(os.path.join(tmp_path, "a", "checkpoints", "final.safetensors"))
    b = td.load(os.path.join(tmp_path, "b", "checkpoints", "final.safetensors"))
    assert all(np.array_equal(a["model"][k].numpy(), b["model"][k].numpy()) for k in a["model"])
    assert json.loads((tmp_path / "b" / "history.json").read_text())["history"]["epsilon"] == eps
    assert a["optimizer"]["privacy"]["accountant"] == b["optimizer"]["privacy"]["accountant"]
