"""The digits CNN recipe (recipes/digits_cnn.py) on a reduced budget, and PyTorch weights for the same
architecture giving the same outputs in tidu (and back)."""
import importlib.util
import json
import os

import numpy as np
import pytest

import tidu as td
from helpers import needs_torch, torch

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("digits_cnn", os.path.join(ROOT, "recipes", "digits_cnn.py"))
digits_cnn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(digits_cnn)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def test_recipe_on_a_small_budget(tmp_path, capsys):
    # The full budget (40 epochs) reaches 0.997-1.0 test accuracy (recipes/README.md); 3 epochs reach
    # 0.978-0.989 over seeds 0-2, so 0.95 leaves a margin.
    out = tmp_path / "run"
    r = digits_cnn.main(["--out", str(out), "--epochs", "3", "--quiet"])
    assert r["test_accuracy"] >= 0.95, r
    assert (r["n_train"], r["n_val"], r["n_test"]) == (1258, 180, 359)  # the fixed stratified split
    assert f"test accuracy {r['test_accuracy']:.4f}" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert saved["test_accuracy"] == r["test_accuracy"] and saved["seed"] == 0 and saved["split_seed"] == 0
    for name in ("misclassified.png", "plots/loss.png", "plots/accuracy.png", "metrics.csv",
                 "checkpoints/last.safetensors", "checkpoints/best.safetensors"):
        assert (out / name).is_file(), name
    assert (out / "misclassified.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the last checkpoint holds the trained weights: loaded into a fresh model, the same predictions
    model = digits_cnn.make_model()
    td.train.checkpoint.load_weights(out / "checkpoints" / "last.safetensors", model)
    images, labels, (_, _, test) = digits_cnn.prepare()
    mean, std = saved["normalize"]
    with td.no_grad():
        pred = model.eval()(td.tensor((images[test] - mean) / std)).argmax(1).numpy()
    assert (pred == labels[test]).mean() == pytest.approx(r["test_accuracy"])


def test_misclassified_grid_with_no_mistakes(tmp_path):
    path = digits_cnn.save_misclassified(np.zeros((0, 1, 8, 8)), [], [], tmp_path / "none.png")
    assert os.path.getsize(path) > 0


def _torch_model_with_trained_statistics():
    torch.manual_seed(0)
    model = digits_cnn.make_model(torch.nn)
    images, labels, (train, _, _) = digits_cnn.prepare()
    x, y = torch.from_numpy(images[train[:128]]), torch.from_numpy(labels[train[:128]])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # a few steps: weights and BatchNorm running statistics away from their initial values
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@needs_torch
def test_pytorch_weights_give_the_same_outputs(tmp_path):
    from safetensors.torch import save_file
    tmodel = _torch_model_with_trained_statistics()
    path = str(tmp_path / "torch.safetensors")
    save_file(tmodel.state_dict(), path)
    model = digits_cnn.make_model()
    model.load_state_dict(td.load(path))
    model.eval()
    images = digits_cnn.prepare()[0][:200]
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(images)).numpy()
    with td.no_grad():
        got = model(td.tensor(images)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()


@needs_torch
def test_tidu_weights_load_in_pytorch(tmp_path):
    from safetensors.torch import load_file
    td.manual_seed(1)
    model = digits_cnn.make_model().eval()
    path = str(tmp_path / "tidu.safetensors")
    td.save(model.state_dict(), path)
    tmodel = digits_cnn.make_model(torch.nn)
    tmodel.load_state_dict(load_file(path))
    images = digits_cnn.prepare()[0][:50]
    with torch.no_grad():
        expected = tmodel.eval()(torch.from_numpy(images)).numpy()
    with td.no_grad():
        np.testing.assert_allclose(model(td.tensor(images)).numpy(), expected, rtol=1e-4, atol=1e-4)
