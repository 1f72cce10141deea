"""tidu.train: Trainer fit / evaluate / predict, callbacks, NaN guard, logs, progress, resume, plots."""
import io
import json
import os

import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
from tidu.data import DataLoader, TensorDataset
from tidu.train import (CSVLogger, EarlyStopping, GradientAccumulation, GradientClipping, JSONLLogger, LambdaCallback,
                        LRSchedulerCallback, ModelCheckpoint, NonFiniteLossError, ProgressBar, Trainer, callbacks,
                        metrics)
from tidu.train.callbacks import CallbackList

PNG = b"\x89PNG\r\n\x1a\n"


def blobs(n=150, classes=3, seed=0):
    rs = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])[:classes]
    y = rs.integers(0, classes, n)
    X = (centers[y] + rs.normal(scale=0.6, size=(n, 2))).astype(np.float32)
    return X, y.astype(np.int64)


def regression(n=200, seed=0):
    rs = np.random.default_rng(seed)
    X = rs.normal(size=(n, 3)).astype(np.float32)
    y = (X @ np.array([1.5, -2.0, 0.5]) + 0.3 + rs.normal(scale=0.05, size=n)).astype(np.float32)
    return X, y


def mlp(inp=2, out=3, hidden=16, dropout=0.0, seed=0):
    td.manual_seed(seed)
    layers = [nn.Linear(inp, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(hidden, out))


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


# --- fit / evaluate / predict ---

def test_classification_fit_evaluate_predict():
    X, y = blobs()
    Xv, yv = blobs(90, seed=1)
    model = mlp()
    trainer = Trainer(model, loss="cross_entropy", optimizer=td.optim.Adam(model.parameters(), lr=0.05),
                      metrics=["accuracy", "f1_macro", "roc_auc"], progress=False, seed=0)
    history = trainer.fit(DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True), val_data=(Xv, yv), epochs=8)
    assert history.epoch == list(range(8)) and trainer.epoch == 8 and trainer.global_step == 8 * 5
    assert set(history.history) == {"loss", "accuracy", "f1_macro", "roc_auc", "val_loss", "val_accuracy",
                                    "val_f1_macro", "val_roc_auc", "lr"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    # evaluate on the validation data gives the last epoch's validation values
    result = trainer.evaluate((Xv, yv))
    assert result["accuracy"] == history["val_accuracy"][-1]
    assert result["loss"] == pytest.approx(history["val_loss"][-1])
    assert trainer.confusion_matrix.shape == (3, 3) and trainer.confusion_matrix.sum() == 90
    # predict: logits; the metrics agree with the functions on them
    logits = trainer.predict(Xv)
    assert logits.shape == (90, 3) and logits.dtype == np.float32
    assert result["accuracy"] == metrics.accuracy(yv, logits)
    proba = trainer.predict_proba(Xv)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert result["roc_auc"] == pytest.approx(metrics.roc_auc(yv, proba))
    np.testing.assert_array_equal(trainer.predict_classes(Xv), logits.argmax(1))
    np.testing.assert_array_equal(trainer.predict(td.tensor(Xv)), logits)
    np.testing.assert_array_equal(trainer.predict(DataLoader(TensorDataset(Xv, yv), batch_size=7)), logits)
    np.testing.assert_array_equal(trainer.predict(DataLoader(TensorDataset(Xv), batch_size=7)), logits)
    assert model.training  # predict and evaluate put the mode back


def test_regression_with_column_outputs_and_flat_targets():
    X, y = regression()
    model = nn.Sequential(nn.Linear(3, 1))
    trainer = Trainer(model, loss="mse", optimizer=td.optim.SGD(model.parameters(), lr=0.1),
                      metrics=["mae", "r2", "mse"], progress=False, seed=0)
    history = trainer.fit((X, y), val_data=(X[:50], y[:50]), epochs=15, batch_size=20)  # (n, 1) vs (n,): no warning
    assert history["r2"][-1] > 0.99 and history["val_mae"][-1] < 0.1
    pred = trainer.predict(X)
    assert pred.shape == (200, 1)
    result = trainer.evaluate((X, y))
    assert result["r2"] == pytest.approx(metrics.r2(y, pred[:, 0]), rel=1e-6)
    assert result["mse"] == pytest.approx(result["loss"], rel=1e-5)
    assert trainer.task == "regression" and trainer.confusion_matrix is None
    with pytest.raises(ValueError, match="predict_proba: needs a classification loss"):
        trainer.predict_proba(X)


def test_binary_with_logits_and_module_loss():
    X, y = blobs(classes=2)
    for loss in ["bce_with_logits", nn.BCEWithLogitsLoss()]:
        model = mlp(out=1)
        trainer = Trainer(model, loss=loss, optimizer="adam", metrics=["accuracy", "roc_auc", "precision", "recall"],
                          progress=False)
        assert trainer.task == "binary"
        history = trainer.fit((X, y), epochs=10, batch_size=16)
        assert history["accuracy"][-1] > 0.95
        proba = trainer.predict_proba(X)
        assert proba.shape == (150, 1) and proba.min() >= 0 and proba.max() <= 1
        np.testing.assert_array_equal(trainer.predict_classes(X), (proba[:, 0] > 0.5).astype(np.int64))
        result = trainer.evaluate((X, y))
        assert result["precision"] == pytest.approx(metrics.precision(y, proba[:, 0]))
        assert trainer.confusion_matrix.shape == (2, 2)


def test_losses_by_function_and_task():
    X, y = regression(60)
    model = nn.Linear(3, 1)
    custom = Trainer(model, loss=lambda out, t: ((out[:, 0] - t) ** 2).mean(), optimizer="sgd", task="regression",
                     metrics=["r2"], progress=False)
    assert custom.task == "regression"
    custom.fit((X, y), epochs=2, batch_size=30)
    assert Trainer(mlp(), loss=nn.CrossEntropyLoss()).task == "multiclass"
    assert Trainer(mlp(), loss=td.nn.functional.cross_entropy).task == "multiclass"
    assert Trainer(mlp(), loss="nll").task == "multiclass"


def test_argument_errors():
    model = mlp()
    with pytest.raises(ValueError, match="unknown loss 'crossentropy'; known: .*cross_entropy"):
        Trainer(model, loss="crossentropy")
    with pytest.raises(ValueError, match="unknown metric 'acc_macro'"):
        Trainer(model, loss="mse", metrics=["acc_macro"])
    with pytest.raises(ValueError, match=r"metrics \['accuracy'\] are given twice"):
        Trainer(model, loss="mse", metrics=["accuracy", "acc"])
    with pytest.raises(ValueError, match="Trainer.fit: no optimizer"):
        Trainer(model, loss="mse").fit((np.zeros((4, 2), np.float32), np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match="accumulate_steps must be an integer >= 1, got 0"):
        Trainer(model, loss="mse", accumulate_steps=0)
    with pytest.raises(TypeError, match=r"callbacks\[0\] is a function"):
        Trainer(model, loss="mse", callbacks=[lambda: None])
    with pytest.raises(TypeError, match="is an iterator"):
        Trainer(model, loss="mse", optimizer="sgd").fit(iter([]))
    X = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="a training batch has no target"):
        Trainer(model, loss="cross_entropy", optimizer="sgd").fit(DataLoader(TensorDataset(X), batch_size=2))
    with pytest.raises(ValueError, match="progress must be"):
        Trainer(model, loss="mse", progress="fancy")


def test_metrics_given_as_dicts_and_functions():
    X, y = blobs(classes=2)
    model = mlp(out=2)
    trainer = Trainer(model, loss="cross_entropy", optimizer="adam", progress=False,
                      metrics=[{"name": "precision", "pos_label": 0},
                               metrics.FunctionMetric(lambda t, p: float(np.mean(t == p.argmax(1))), name="hits")])
    history = trainer.fit((X, y), epochs=2, batch_size=50)
    assert "precision" in history and "hits" in history


# --- callbacks ---

def scripted(key, values):
    """A callback that overwrites logs[key] with scripted values, to drive monitoring callbacks."""
    return LambdaCallback(on_epoch_end=lambda epoch, logs: logs.__setitem__(key, values[epoch]))


def test_early_stopping_and_restore_best_weights():
    X, y = blobs()
    model = mlp()
    seen = {}
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.__setitem__(epoch, weights(model)))
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    trainer = Trainer(model, loss="cross_entropy", optimizer="adam", progress=False,
                      callbacks=[scripted("val_loss", [1.0, 0.5, 0.7, 0.6, 0.4, 0.3]), keep, stop])
    history = trainer.fit((X, y), val_data=(X, y), epochs=6, batch_size=50)
    assert len(history) == 4 and stop.stopped_epoch == 3 and stop.best_epoch == 1
    final = weights(model)
    for k in final:
        np.testing.assert_array_equal(final[k], seen[1][k])  # the best epoch's weights came back
    with pytest.raises(ValueError, match="'val_loss' is not in the logs .*pass val_data.*available: "):
        Trainer(mlp(), loss="cross_entropy", optimizer="adam", progress=False,
                callbacks=[EarlyStopping()]).fit((X, y), epochs=1, batch_size=50)
    # mode 'auto' reads accuracy as higher-is-better
    assert EarlyStopping(monitor="val_accuracy").mode == "max" and EarlyStopping(monitor="val_loss").mode == "min"


def test_model_checkpoint_keeps_the_best(tmp_path):
    X, y = blobs()
    model = mlp()
    trainer = Trainer(model, loss="cross_entropy", optimizer="adam", run_dir=tmp_path, progress=False, plots=False,
                      callbacks=[scripted("val_accuracy", [0.5, 0.8, 0.7, 0.9, 0.6]),
                                 ModelCheckpoint(tmp_path / "acc-{epoch}.safetensors", monitor="val_accuracy")])
    trainer.fit((X, y), val_data=(X[:30], y[:30]), epochs=5, batch_size=50)
    saved = sorted(p.name for p in tmp_path.glob("acc-*.safetensors"))
    assert saved == ["acc-1.safetensors", "acc-2.safetensors", "acc-4.safetensors"]
    best = td.train.load_checkpoint(tmp_path / "checkpoints" / "best.safetensors")  # the default: by val_loss
    assert best["epoch"] == 1 + int(np.argmin(trainer.history["val_loss"]))
    assert td.train.load_checkpoint(tmp_path / "checkpoints" / "last.safetensors")["epoch"] == 5


def test_lr_scheduler_per_epoch_per_batch_and_plateau():
    X, y = blobs(64)
    model = mlp()
    opt = td.optim.SGD(model.parameters(), lr=1.0)
    trainer = Trainer(model, loss="cross_entropy", optimizer=opt, progress=False,
                      scheduler=td.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    history = trainer.fit((X, y), epochs=3, batch_size=16)
    assert history["lr"] == [1.0, 0.5, 0.25] and opt.param_groups[0]["lr"] == 0.125

    model = mlp()
    opt = td.optim.SGD(model.parameters(), lr=1.0)
    sched = td.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    Trainer(model, loss="cross_entropy", optimizer=opt, progress=False, scheduler=sched, scheduler_interval="batch",
            accumulate_steps=2).fit((X, y), epochs=1, batch_size=16)  # 4 batches, 2 optimizer steps
    assert opt.param_groups[0]["lr"] == 0.25

    model = mlp()
    opt = td.optim.SGD(model.parameters(), lr=1.0)
    plateau = td.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=0)
    Trainer(model, loss="cross_entropy", optimizer=opt, progress=False,
            callbacks=[scripted("val_loss", [1.0, 1.0, 1.0]), LRSchedulerCallback(plateau)]).fit(
        (X, y), val_data=(X, y), epochs=3, batch_size=16)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_gradient_clipping():
    X, y = blobs(64)
    model = mlp()
    norms = []

    def measure(step, logs):
        g = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
        norms.append((float(np.linalg.norm(g)), logs["grad_norm"]))
    Trainer(model, loss="cross_entropy", optimizer="sgd", grad_clip=0.01, progress=False,
            callbacks=[LambdaCallback(on_before_optimizer_step=measure)]).fit((X, y), epochs=1, batch_size=16)
    assert len(norms) == 4
    assert all(after <= 0.01 + 1e-6 and before > 0.01 for after, before in norms)
    with pytest.raises(ValueError, match="give max_norm"):
        GradientClipping()


@pytest.mark.parametrize("how", ["argument", "callback"])
def test_gradient_accumulation_matches_a_larger_batch(how):
    X, y = regression(64)
    runs = []
    for batch, steps in ((16, 1), (8, 2)):
        model = nn.Linear(3, 1)
        with td.no_grad():
            model.weight.data[...] = 0.1
            model.bias.data[...] = 0.0
        kw = {"accumulate_steps": steps} if how == "argument" else {"callbacks": [GradientAccumulation(steps)]}
        Trainer(model, loss="mse", optimizer=td.optim.SGD(model.parameters(), lr=0.1), progress=False, **kw).fit(
            DataLoader(TensorDataset(X, y), batch_size=batch), epochs=2)
        runs.append(weights(model))
    for k in runs[0]:
        np.testing.assert_allclose(runs[0][k], runs[1][k], rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_last_partial_group_is_stepped():
    X, y = regression(40)
    model = nn.Linear(3, 1)
    steps = []
    Trainer(model, loss="mse", optimizer="sgd", accumulate_steps=2, progress=False,
            callbacks=[LambdaCallback(on_before_optimizer_step=lambda s, logs: steps.append(s))]).fit(
        DataLoader(TensorDataset(X, y), batch_size=8), epochs=1)  # 5 batches: groups of 2, 2, 1
    assert steps == [1, 3, 4]


def test_nan_guard_names_the_step_and_last_finite_loss():
    X, y = regression(40)
    X[25] = np.nan  # in the 4th batch of 8
    model = nn.Linear(3, 1)
    before = {}
    trainer = Trainer(model, loss="mse", optimizer="sgd", progress=False,
                      callbacks=[LambdaCallback(on_batch_end=lambda b, logs: before.update(weights(model)))])
    with pytest.raises(NonFiniteLossError, match=r"the loss is nan at step 4 \(epoch 1, batch 4\); the last finite "
                                                 r"loss was [0-9.]+ at step 3\. .*grad_clip") as info:
        trainer.fit(DataLoader(TensorDataset(X, y), batch_size=8), epochs=1)
    assert isinstance(info.value, RuntimeError)
    for k, v in weights(model).items():  # stopped before the bad step's update
        np.testing.assert_array_equal(v, before[k])
        assert np.all(np.isfinite(v))


def test_nan_guard_in_a_hand_written_loop():
    guard = callbacks.NonFiniteGuard()
    guard.check(td.tensor(0.25))
    with pytest.raises(NonFiniteLossError, match="the loss is inf at step 2; the last finite loss was 0.25 at step 1"):
        guard.on_batch_end(1, {"loss": float("inf")})


def test_logs_jsonl_csv_and_history(tmp_path):
    X, y = blobs()
    trainer = Trainer(mlp(), loss="cross_entropy", optimizer="adam", metrics=["accuracy"], run_dir=tmp_path,
                      progress=False, plots=False)
    history = trainer.fit((X, y), val_data=(X[:40], y[:40]), epochs=3, batch_size=50)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert [r["val_accuracy"] for r in rows] == history["val_accuracy"]
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr" and len(lines) == 4
    assert float(lines[3].split(",")[1]) == history["loss"][2]
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["history"]["loss"] == history["loss"] and saved["epoch"] == [0, 1, 2]
    assert np.asarray(saved["confusion_matrix"]).sum() == 40
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["best.safetensors", "last.safetensors"]


def test_loggers_write_null_for_nan(tmp_path):
    log = JSONLLogger(tmp_path / "m.jsonl")
    csv_log = CSVLogger(tmp_path / "m.csv")
    for cb in (log, csv_log):
        cb.on_train_begin()
        cb.on_epoch_end(0, {"loss": 0.5, "roc_auc": float("nan")})
    assert json.loads((tmp_path / "m.jsonl").read_text()) == {"epoch": 0, "loss": 0.5, "roc_auc": None}
    assert (tmp_path / "m.csv").read_text() == "epoch,loss,roc_auc\n0,0.5,\n"


def test_callbacks_and_progress_in_a_hand_written_loop(tmp_path):
    X, y = blobs(60)
    model = mlp()
    opt = td.optim.SGD(model.parameters(), lr=0.1)
    out = io.StringIO()
    cbs = CallbackList([EarlyStopping(monitor="loss", patience=1), JSONLLogger(tmp_path / "log.jsonl"),
                        GradientClipping(max_norm=1.0), ProgressBar("lines", file=out, epochs=3)],
                       model=model, optimizer=opt)
    loader = DataLoader(TensorDataset(X, y), batch_size=20)
    acc = metrics.Accuracy()
    cbs.on_train_begin()
    for epoch in range(3):
        cbs.on_epoch_begin(epoch)
        acc.reset()
        mean = metrics.Mean()
        for b, (xb, yb) in enumerate(loader):
            out_b = model(xb)
            loss = td.nn.functional.cross_entropy(out_b, yb)
            opt.zero_grad()
            loss.backward()
            cbs.on_before_optimizer_step(b)
            opt.step()
            mean.update(loss.item(), len(yb))
            acc.update(yb, out_b)
            cbs.on_batch_end(b, {"loss": mean.compute()})
        cbs.on_epoch_end(epoch, {"loss": mean.compute(), "accuracy": acc.compute()})
        if cbs.stop_training:
            break
    cbs.on_train_end()
    lines = out.getvalue().splitlines()
    assert len(lines) == epoch + 1 and lines[0].startswith("epoch 1/3 - loss: ") and "accuracy: " in lines[0]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == epoch + 1


def test_progress_modes(capsys):
    X, y = blobs(40)
    Trainer(mlp(), loss="cross_entropy", optimizer="sgd", progress=False).fit((X, y), epochs=2, batch_size=20)
    assert capsys.readouterr().out == ""
    Trainer(mlp(), loss="cross_entropy", optimizer="sgd", metrics=["accuracy"]).fit((X, y), epochs=2, batch_size=20)
    out = capsys.readouterr().out.splitlines()  # not a terminal: one line per epoch
    assert len(out) == 2 and out[1].startswith("epoch 2/2 - loss: ") and " - accuracy: " in out[1]
    pytest.importorskip("tqdm", reason="tqdm (the progress extra) is not installed")
    stream = io.StringIO()
    Trainer(mlp(), loss="cross_entropy", optimizer="sgd", progress=ProgressBar("bar", file=stream)).fit(
        (X, y), epochs=2, batch_size=20)
    text = stream.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text and "2/2" in text and "loss: " in text


# --- resume, bit for bit ---

class Kill(Exception):
    pass


def _job(run_dir, kill_at=None, kill_batch=None, accumulate_steps=1, resume=False, init_seed=0):
    """A classification job with Dropout, a shuffled loader, AdamW and a schedule; returns (trainer, model)."""
    X, y = blobs(100)
    Xv, yv = blobs(40, seed=3)
    model = mlp(hidden=32, dropout=0.3, seed=init_seed)
    opt = td.optim.AdamW(model.parameters(), lr=0.01)
    sched = td.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True)
    extra = []
    if kill_at is not None and kill_batch is None:
        def die(epoch, logs):
            if epoch == kill_at:
                raise Kill
        extra.append(LambdaCallback(on_epoch_end=die))
    if kill_batch is not None:
        def die_mid(batch, logs):
            if trainer.epoch == kill_at and batch == kill_batch:
                trainer.save_checkpoint(os.path.join(run_dir, "mid.safetensors"))
                raise Kill
        extra.append(LambdaCallback(on_batch_end=die_mid))
    trainer = Trainer(model, loss="cross_entropy", optimizer=opt, scheduler=sched, metrics=["accuracy"],
                      callbacks=[EarlyStopping(monitor="val_loss", patience=10), *extra], run_dir=run_dir,
                      accumulate_steps=accumulate_steps, progress=False, plots=False)
    return trainer, model, loader, (Xv, yv)


def test_kill_and_resume_gives_identical_weights(tmp_path):
    td.manual_seed(123)
    trainer, model, loader, val = _job(tmp_path / "a")
    history = trainer.fit(loader, val_data=val, epochs=5)
    expected = weights(model)

    td.manual_seed(123)
    trainer, model, loader, val = _job(tmp_path / "b", kill_at=2)
    with pytest.raises(Kill):
        trainer.fit(loader, val_data=val, epochs=5)
    assert td.train.load_checkpoint(tmp_path / "b" / "checkpoints" / "last.safetensors")["epoch"] == 2
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 2  # killed before its loggers ran

    # a fresh process: another seed, another initialization; everything comes from the checkpoint
    td.manual_seed(999)
    trainer, model, loader, val = _job(tmp_path / "b", init_seed=7)
    resumed = trainer.fit(loader, val_data=val, epochs=5, resume=True)
    got = weights(model)
    for k in expected:
        assert np.array_equal(got[k], expected[k]), k
    assert resumed.history == history.history and trainer.global_step == 5 * 7
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["loss"] for r in rows] == history["loss"]


def test_resume_classmethod(tmp_path):
    td.manual_seed(5)
    trainer, model, loader, val = _job(tmp_path / "a")
    trainer.fit(loader, val_data=val, epochs=4)
    expected = weights(model)

    td.manual_seed(5)
    trainer, model, loader, val = _job(tmp_path / "b", kill_at=1)
    with pytest.raises(Kill):
        trainer.fit(loader, val_data=val, epochs=4)
    td.manual_seed(0)
    model = mlp(hidden=32, dropout=0.3, seed=1)
    opt = td.optim.AdamW(model.parameters(), lr=0.01)
    sched = td.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    trainer = Trainer.resume(tmp_path / "b", model, opt, loss="cross_entropy", scheduler=sched, metrics=["accuracy"],
                             callbacks=[EarlyStopping(monitor="val_loss", patience=10)], progress=False, plots=False)
    assert trainer.epoch == 1 and len(trainer.history) == 1
    X, y = blobs(100)
    trainer.fit(DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True), val_data=val, epochs=4)
    for k, v in weights(model).items():
        assert np.array_equal(v, expected[k]), k


@pytest.mark.parametrize("accumulate_steps,kill_batch", [(1, 3), (2, 2)])
def test_resume_from_the_middle_of_an_epoch(tmp_path, accumulate_steps, kill_batch):
    td.manual_seed(11)
    trainer, model, loader, val = _job(tmp_path / "a", accumulate_steps=accumulate_steps)
    history = trainer.fit(loader, val_data=val, epochs=3)
    expected = weights(model)

    td.manual_seed(11)
    trainer, model, loader, val = _job(tmp_path / "b", kill_at=1, kill_batch=kill_batch,
                                       accumulate_steps=accumulate_steps)
    with pytest.raises(Kill):
        trainer.fit(loader, val_data=val, epochs=3)
    td.manual_seed(0)
    trainer, model, loader, val = _job(tmp_path / "b", init_seed=3, accumulate_steps=accumulate_steps)
    resumed = trainer.fit(loader, val_data=val, epochs=3, resume=tmp_path / "b" / "mid.safetensors")
    for k, v in weights(model).items():
        assert np.array_equal(v, expected[k]), k
    assert resumed.history == history.history  # the running loss and metrics of the interrupted epoch were kept


# --- plots ---

def test_plots_are_pngs_and_redraw(tmp_path):
    X, y = blobs()
    trainer = Trainer(mlp(), loss="cross_entropy", optimizer="adam", metrics=["accuracy"], run_dir=tmp_path,
                      progress=False)
    trainer.fit((X, y), val_data=(X[:60], y[:60]), epochs=4, batch_size=32)
    names = sorted(os.listdir(tmp_path / "plots"))
    assert names == ["accuracy.png", "confusion_matrix.png", "loss.png", "lr.png"]
    for name in names:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG
    for name in names:
        os.remove(tmp_path / "plots" / name)
    paths = td.train.redraw(tmp_path)
    assert sorted(os.path.basename(p) for p in paths) == names
    os.remove(tmp_path / "history.json")  # metrics.jsonl is enough for the curves
    assert sorted(os.path.basename(p) for p in td.train.redraw(tmp_path)) == ["accuracy.png", "loss.png", "lr.png"]
    with pytest.raises(FileNotFoundError, match="neither history.json nor metrics.jsonl"):
        td.train.redraw(tmp_path / "plots")


def test_confusion_matrix_plot_with_class_names(tmp_path):
    from tidu.train.plots import plot_confusion_matrix
    path = plot_confusion_matrix([[50, 3], [4, 40]], tmp_path / "cm.png", class_names=["benign", "malignant"])
    with open(path, "rb") as f:
        assert f.read(8) == PNG
    with pytest.raises(ValueError, match="expected a square matrix, got shape"):
        plot_confusion_matrix([[1, 2, 3]], tmp_path / "bad.png")


def test_soft_targets_train_without_a_confusion_matrix():
    X, y = blobs(60)
    soft = (0.9 * np.eye(3)[y] + 0.1 / 3).astype(np.float32)  # label smoothing written into the targets
    trainer = Trainer(mlp(), loss="cross_entropy", optimizer="adam", progress=False)
    history = trainer.fit((X, soft), epochs=2, batch_size=20)
    assert len(history) == 2 and trainer.confusion_matrix is None


def test_resume_rewrites_logs_with_nan_values(tmp_path):
    X, y = blobs(60)
    Xv, yv = X[:10], np.zeros(10, np.int64)  # one class in the validation targets: ROC AUC is NaN

    def job():
        td.manual_seed(0)
        return Trainer(mlp(), loss="cross_entropy", optimizer="adam", metrics=["roc_auc"], run_dir=tmp_path,
                       progress=False, plots=False)
    job().fit((X, y), val_data=(Xv, yv), epochs=1, batch_size=20)
    history = job().fit((X, y), val_data=(Xv, yv), epochs=2, batch_size=20, resume=True)
    assert np.isnan(history["val_roc_auc"]).all()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_roc_auc"] for r in rows] == [None, None]
    assert json.loads((tmp_path / "history.json").read_text())["history"]["val_roc_auc"] == [None, None]
