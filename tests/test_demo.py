"""`tidu demo`: the tutorial's linear regression, through the real command line entry point."""
import re
import subprocess
import sys

import numpy as np
import pytest

from tidu.cli import main
from tidu.cli.demo import fit, least_squares


def test_demo_prints_the_true_numbers(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    epochs = re.findall(r"^Epoch (\d+): Loss = ([\d.]+)$", out, re.M)
    assert [int(e) for e, _ in epochs] == list(range(0, 1000, 100))
    assert float(epochs[0][1]) == pytest.approx(17.2, rel=1e-6)  # mean(y^2) at θ = 0
    t0, t1 = map(float, re.search(r"Trained model: y = ([\d.]+) \+ ([\d.]+)·x", out).groups())
    # 1000 plain gradient steps from zero stop short of the optimum (2.2, 0.6): see shared/BENCHMARKS.md
    assert t0 == pytest.approx(2.136, abs=1e-3) and t1 == pytest.approx(0.618, abs=1e-3)
    assert "y = 2.2000 + 0.6000·x, MSE = 0.480000" in out
    assert float(re.search(r"Final loss after 1000 epochs: ([\d.]+)", out).group(1)) == pytest.approx(0.4807, abs=1e-4)


def test_gradient_descent_matches_numpy_reference():
    """The same iteration written in plain NumPy (float64) lands on the same parameters."""
    x, y = np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 4, 5, 4, 5])
    th = np.zeros(2)
    for _ in range(1000):
        r = th[0] + th[1] * x - y
        th -= 0.01 * np.array([2 * r.mean(), 2 * (r * x).mean()])
    t0, t1, losses = fit(log=lambda s: None)
    assert (t0, t1) == pytest.approx(tuple(th), abs=1e-4)
    assert len(losses) == 1000 and losses[-1] < losses[0]


@pytest.mark.parametrize("optimizer,lr", [("momentum", 0.01), ("adam", 0.1)])
def test_other_optimizers_reach_the_optimum(optimizer, lr):
    t0, t1, _ = fit(lr=lr, epochs=1000, optimizer=optimizer, log=lambda s: None)
    s0, s1, _ = least_squares(np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 4, 5, 4, 5]))
    assert (t0, t1) == pytest.approx((s0, s1), abs=2e-2)


def test_bad_options_get_a_clear_error(capsys):
    assert main(["demo", "--epochs", "0"]) == 1
    assert "--epochs must be at least 1, got 0" in capsys.readouterr().err
    assert main(["demo", "--lr", "-1"]) == 1
    assert "--lr must be positive" in capsys.readouterr().err


def test_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    png = tmp_path / "demo.png"
    assert main(["demo", "--epochs", "200", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_runs():
    """`python -m tidu.cli demo` is what the `tidu` console script calls."""
    out = subprocess.run([sys.executable, "-m", "tidu.cli", "demo", "--epochs", "101"],
                         capture_output=True, text=True, check=True).stdout
    assert "Epoch 100: Loss" in out
