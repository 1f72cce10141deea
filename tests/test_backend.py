"""tidu.backend: dtypes, the seeded generator, the allocator setting, devices."""
import sys

import numpy as np
import pytest

import tidu as td
from tidu import backend


def test_rng_state_round_trip():
    td.manual_seed(5)
    state = td.get_rng_state()
    a = td.randn(3).tolist()
    td.set_rng_state(state)
    assert td.randn(3).tolist() == a


def test_default_dtype():
    assert backend.get_default_dtype() == np.float32
    with pytest.raises(TypeError, match="expected a floating dtype"):
        backend.set_default_dtype(np.int32)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_allocator_tuning_applies_on_glibc(monkeypatch):
    assert backend.tune_allocator() is True
    monkeypatch.setenv("TIDU_NO_MALLOPT", "1")
    assert backend.tune_allocator() is False


def test_cuda_without_cupy_is_a_clear_error():
    if backend.cupy_or_none() is not None:
        pytest.skip("CuPy is installed: the GPU path is available")
    with pytest.raises(RuntimeError, match="CuPy with a working CUDA device is required"):
        td.ones(2).to("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        td.ones(2).to("tpu")
