"""td.save / td.load: safetensors + JSON metadata, atomic, never pickle."""
import os

import numpy as np
import pytest

import tidu as td


def test_round_trip_nested(tmp_path):
    p = tmp_path / "state.safetensors"
    state = {"model": {"0.weight": td.randn(3, 2), "0.bias": td.zeros(3, dtype=td.float64)},
             "optimizer": {"state": {0: {"step": 5, "exp_avg": td.ones(3)}}, "lr": 1e-3},
             "labels": td.tensor([1, 2, 3]), "mask": td.tensor([True, False]), "name": "run", "hist": [1.5, None],
             "pair": (1, 2), "raw": np.arange(4, dtype=np.int32)}
    td.save(state, p)
    back = td.load(p)
    np.testing.assert_array_equal(back["model"]["0.weight"].numpy(), state["model"]["0.weight"].numpy())
    assert back["model"]["0.bias"].dtype == np.float64 and back["labels"].dtype == np.int64
    assert back["mask"].dtype == np.bool_ and back["optimizer"]["state"][0]["step"] == 5
    assert back["optimizer"]["lr"] == 1e-3 and back["name"] == "run" and back["hist"] == [1.5, None]
    assert back["pair"] == (1, 2) and isinstance(back["raw"], np.ndarray) and back["raw"].dtype == np.int32


def test_flat_state_dict_keeps_keys_for_other_readers(tmp_path):
    from safetensors.numpy import load_file
    p = tmp_path / "m.safetensors"
    td.save({"layer.weight": td.ones(2, 2), "layer.bias": td.zeros(2)}, p)
    assert set(load_file(p)) == {"layer.weight", "layer.bias"}


def test_foreign_safetensors_file_loads_flat(tmp_path):
    from safetensors.numpy import save_file
    p = tmp_path / "foreign.safetensors"
    save_file({"a": np.ones(3, np.float32)}, p)
    back = td.load(p)
    assert list(back) == ["a"] and back["a"].dtype == np.float32


def test_truncated_file_is_refused(tmp_path):
    p = tmp_path / "m.safetensors"
    td.save({"w": td.ones(100)}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(td.io.CheckpointError, match="not a valid safetensors file"):
        td.load(p)
    with pytest.raises(FileNotFoundError, match="no such file"):
        td.load(tmp_path / "missing.safetensors")


def test_failed_save_keeps_the_old_file(tmp_path):
    p = tmp_path / "m.safetensors"
    td.save({"w": td.ones(2)}, p)
    before = p.read_bytes()
    with pytest.raises(TypeError, match="cannot store object"):
        td.save({"w": td.zeros(2), "bad": object()}, p)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind


def test_save_refuses_non_dict(tmp_path):
    with pytest.raises(TypeError, match="expected a dict"):
        td.save(td.ones(2), tmp_path / "x.safetensors")


def test_zero_dim_tensors_keep_their_shape(tmp_path):
    p = tmp_path / "s.safetensors"
    td.save({"num_batches_tracked": td.tensor(7), "scale": td.tensor(0.5)}, p)
    back = td.load(p)
    assert back["num_batches_tracked"].shape == () and back["num_batches_tracked"].item() == 7
    assert back["scale"].shape == () and back["scale"].dtype == np.float32
