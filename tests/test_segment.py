"""recipes/segment_shapes.py: a U-Net segmenting generated images of circles, squares and triangles, run end to end
on its small budget; the generated images and the IoU."""
import json
import math
import os
from importlib.util import module_from_spec, spec_from_file_location

import numpy as np
import pytest

import tidu as td

pytest.importorskip("matplotlib")

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "segment_shapes.py")
_spec = spec_from_file_location("segment_shapes", RECIPE)
S = module_from_spec(_spec)
_spec.loader.exec_module(S)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def test_generated_images_and_masks():
    x, y = S.make_images(200, seed=5)
    assert x.shape == (200, 1, 32, 32) and x.dtype == np.float32
    assert y.shape == (200, 32, 32) and y.dtype == np.int64 and set(np.unique(y)) == {0, 1, 2, 3}
    x2, y2 = S.make_images(200, seed=5)
    assert (x == x2).all() and (y == y2).all()  # a seed gives the same images
    assert not (S.make_images(5, seed=6)[1] == y[:5]).all()
    # shapes are brighter than the background, on average over the set
    assert x[:, 0][y > 0].mean() > x[:, 0][y == 0].mean() + 0.3
    # every image holds at least one shape
    assert ((y > 0).reshape(200, -1).sum(1) >= 12).all()


def test_shape_rasterization():
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    circle = S._shape_mask(1, 32.0, 32.0, 10.0, 0.0, yy, xx)
    assert abs(circle.sum() - math.pi * 100) < 15
    square = S._shape_mask(2, 32.0, 32.0, 5.0, 0.0, yy, xx)
    assert square.sum() == 100  # pixel centres 27.5 … 36.5 on each axis
    triangle = S._shape_mask(3, 32.0, 32.0, 12.0, 0.3, yy, xx)
    assert abs(triangle.sum() - 3 * math.sqrt(3) / 4 * 144) < 15  # area of an equilateral triangle of circumradius R


def test_iou_per_class():
    true = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = np.array([[0, 0, 1, 0], [0, 2, 2, 2]])
    iou = S.iou_per_class(pred, true)
    np.testing.assert_allclose(iou[:3], [3 / 4, 1 / 3, 2 / 3])
    assert np.isnan(iou[3])  # triangles: neither true nor predicted


def test_unet_shapes_and_skip_connections():
    td.manual_seed(0)
    model = S.UNet(widths=(4, 8, 16))
    x = td.randn(2, 1, 32, 32)
    assert model(x).shape == (2, 4, 32, 32)
    assert model.dec1[0].weight.shape == (4, 8, 3, 3)  # reads the upsampled features and the skip, concatenated
    assert model.up2.weight.shape == (16, 8, 2, 2)     # ConvTranspose2d: (in, out, kH, kW)


def test_recipe_on_a_small_budget(tmp_path, capsys):
    # Full budget: mean IoU 0.984 (the recipe's docstring). Small budget (150 steps of 16 images): mean IoU
    # 0.69-0.82 over seeds 0-3, pixel accuracy 0.967-0.971 (seeds 0, 3); 0.55 and 0.93 leave a margin.
    out = tmp_path / "run"
    r = S.main(["--budget", "small", "--out", str(out), "--quiet"])
    assert r["mean_iou"] >= 0.55, r
    assert r["pixel_accuracy"] >= 0.93, r
    assert r["iou"]["background"] >= 0.95 and r["n_test"] == 500
    assert f"mean IoU {r['mean_iou']:.4f}" in capsys.readouterr().out
    assert (out / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert saved["mean_iou"] == r["mean_iou"]
    model = S.UNet()
    model.load_state_dict(td.load(str(out / "model.safetensors")))
    x, y = S.make_images(S.N_TEST, seed=S.TEST_SEED)
    pred = S.predict(model, x[:100])
    assert (pred == y[:100]).mean() >= 0.9
