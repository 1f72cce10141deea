"""The core stays small enough to read in an afternoon (tinygrad's sz.py habit): a line budget, watched in CI."""
import pathlib

CORE = ["tidu/tensor.py", "tidu/autograd.py", "tidu/backend.py", "tidu/ops/*.py"]
BUDGET = 5000  # lines that are not blank; raise it only with a reason in the commit message


def core_lines():
    root = pathlib.Path(__file__).resolve().parent.parent
    files = [p for pattern in CORE for p in sorted(root.glob(pattern))]
    return {str(p.relative_to(root)): sum(1 for line in p.read_text().splitlines() if line.strip()) for p in files}


def test_core_fits_its_line_budget():
    lines = core_lines()
    total = sum(lines.values())
    biggest = sorted(lines.items(), key=lambda kv: -kv[1])[:3]
    assert total <= BUDGET, f"the core is {total} lines (budget {BUDGET}); largest: {biggest}"


if __name__ == "__main__":
    for name, n in sorted(core_lines().items(), key=lambda kv: -kv[1]):
        print(f"{n:6d}  {name}")
    print(f"{sum(core_lines().values()):6d}  total (budget {BUDGET})")
