"""tidu.train.checkpoint: what a checkpoint holds, and the refusal of truncated or mismatched ones."""
import os

import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
from tidu.data import DataLoader, TensorDataset
from tidu.io import CheckpointError
from tidu.train import Trainer, checkpoint


def data(n=64, seed=0):
    rs = np.random.default_rng(seed)
    X = rs.normal(size=(n, 4)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def net(hidden=8, seed=0):
    td.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def trained_run(run_dir, hidden=8, epochs=2):
    X, y = data()
    model = net(hidden)
    opt = td.optim.Adam(model.parameters(), lr=0.01)
    sched = td.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    trainer = Trainer(model, loss="cross_entropy", optimizer=opt, scheduler=sched, run_dir=run_dir, progress=False,
                      plots=False, config={"model": {"hidden": hidden}, "seed": 0})
    trainer.fit(DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True), epochs=epochs)
    return trainer, os.path.join(run_dir, "checkpoints", "last.safetensors")


def test_checkpoint_holds_everything(tmp_path):
    trainer, path = trained_run(tmp_path)
    state = checkpoint.load_checkpoint(path)
    assert state["format"] == "tidu.train.checkpoint" and state["epoch"] == 2 and state["global_step"] == 8
    assert set(state["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    np.testing.assert_array_equal(state["model"]["0.weight"].numpy(), trainer.model.state_dict()["0.weight"].numpy())
    opt_state = state["optimizer"]
    assert state["optimizer_class"] == "Adam" and opt_state["state"][0]["step"] == 8
    np.testing.assert_array_equal(opt_state["state"][0]["exp_avg"].numpy(),
                                  trainer.optimizer.state_dict()["state"][0]["exp_avg"].numpy())
    assert state["scheduler"]["last_epoch"] == 2 and state["scheduler_class"] == "ExponentialLR"
    assert state["rng"] == td.get_rng_state()
    loader = state["loaders"]["train"]
    assert loader["batches"] == 4 and loader["state"]["epoch"] == 2 and loader["state"]["rng_state"] is not None
    assert state["history"]["epoch"] == [0, 1] and len(state["history"]["history"]["loss"]) == 2
    assert state["config"] == {"model": {"hidden": 8}, "seed": 0}
    assert "NonFiniteGuard" in state["callbacks"] and "ModelCheckpoint" in state["callbacks"]
    assert state["extra"]["task"] == "multiclass"


def test_preprocessor_state_is_saved(tmp_path):
    pd = pytest.importorskip("pandas", reason="pandas (the data extra) is not installed")
    pytest.importorskip("sklearn", reason="scikit-learn (the data extra) is not installed")
    df = pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0], "c": ["x", "y", "x", None], "t": ["no", "yes", "no", "yes"]})
    prep = td.data.TabularPreprocessor(numeric=["a"], categorical=["c"], target="t").fit(df)
    X, y = prep.transform(df)
    model = nn.Linear(X.shape[1], 2)
    trainer = Trainer(model, loss="cross_entropy", optimizer="sgd", preprocessor=prep, run_dir=tmp_path,
                      progress=False, plots=False)
    trainer.fit((X, y), epochs=1, batch_size=2)
    state = checkpoint.load_checkpoint(tmp_path / "checkpoints" / "last.safetensors")
    again = td.data.TabularPreprocessor.from_state_dict(state["preprocessor"])
    np.testing.assert_array_equal(again.transform(df)[0], X)
    np.testing.assert_array_equal(trainer.predict(df), trainer.predict(X))  # raw rows go through the preprocessor
    assert trainer.history.class_names == ["no", "yes"]


def test_truncated_checkpoint_is_refused(tmp_path):
    trainer, path = trained_run(tmp_path)
    with open(path, "rb") as f:
        raw = f.read()
    for cut in (len(raw) // 2, 5):
        with open(path, "wb") as f:
            f.write(raw[:cut])
        with pytest.raises(CheckpointError, match=r"last\.safetensors.*(truncated|corrupted)"):
            checkpoint.load_checkpoint(path)
        X, y = data()
        model = net()
        with pytest.raises(CheckpointError, match=r"last\.safetensors"):
            Trainer(model, loss="cross_entropy", optimizer="adam", run_dir=tmp_path, progress=False).fit(
                (X, y), epochs=3, resume=True)


def test_mismatched_model_is_refused_with_key_and_shapes(tmp_path):
    _, path = trained_run(tmp_path, hidden=8)
    model = net(hidden=16)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt = td.optim.Adam(model.parameters(), lr=0.01)
    message = r"last\.safetensors' does not fit the model Sequential: '0\.weight' has shape \(8, 4\) in the " \
              r"checkpoint but \(16, 4\) in the model"
    with pytest.raises(CheckpointError, match=message):
        Trainer.resume(tmp_path, model, opt, loss="cross_entropy", progress=False)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_weights(path, model)
    for k, v in model.state_dict().items():  # nothing was changed
        np.testing.assert_array_equal(v.numpy(), before[k])
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.ReLU(), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"keys missing from the checkpoint: \['4\.weight', '4\.bias'\]"):
        checkpoint.load_weights(path, other)


def test_other_mismatches_are_refused(tmp_path):
    _, path = trained_run(tmp_path)
    X, y = data()
    model = net()
    with pytest.raises(CheckpointError, match="holds the state of a Adam optimizer, not of a SGD"):
        Trainer.resume(tmp_path, model, td.optim.SGD(model.parameters(), lr=0.1), loss="cross_entropy")
    trainer = Trainer(net(), loss="cross_entropy", optimizer="adam", run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="the train loader had 4 batches per epoch when saved and has 2 now"):
        trainer.fit(DataLoader(TensorDataset(X, y), batch_size=32), epochs=3, resume=True)
    plain = tmp_path / "weights.safetensors"
    td.save(model.state_dict(), plain)
    with pytest.raises(CheckpointError, match="weights.safetensors' is not a tidu training checkpoint"):
        checkpoint.load_checkpoint(plain)
    checkpoint.load_weights(plain, net())  # a plain state dict loads as weights
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from at .*last.safetensors"):
        Trainer(net(), loss="cross_entropy", optimizer="adam", run_dir=tmp_path / "empty").fit((X, y), resume=True)


def test_best_checkpoint_gives_the_best_weights(tmp_path):
    trainer, _ = trained_run(tmp_path, epochs=3)
    best = os.path.join(tmp_path, "checkpoints", "best.safetensors")
    state = checkpoint.load_checkpoint(best)
    assert state["epoch"] - 1 == int(np.argmin(trainer.history["loss"]))
    model = trainer.load_weights(best)
    np.testing.assert_array_equal(model.state_dict()["2.bias"].numpy(), state["model"]["2.bias"].numpy())


def test_save_checkpoint_by_hand(tmp_path):
    model = net()
    opt = td.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    X, y = data()
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True, seed=1)
    batches = iter(loader)
    next(batches)
    path = tmp_path / "hand.safetensors"
    checkpoint.save_checkpoint(path, model, opt, loaders={"train": loader}, epoch=0, global_step=1)
    rest = [yb.tolist() for _, yb in batches]
    assert len(rest) == 3
    td.manual_seed(42)
    model2, loader2 = net(seed=9), DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True, seed=5)
    opt2 = td.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    checkpoint.restore(checkpoint.load_checkpoint(path), path, model2, opt2, loaders={"train": loader2})
    assert [yb.tolist() for _, yb in loader2] == rest  # the loader continues where it was saved
    np.testing.assert_array_equal(model2.state_dict()["0.weight"].numpy(), model.state_dict()["0.weight"].numpy())
