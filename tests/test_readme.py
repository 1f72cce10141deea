"""The READMEs are a tour that runs: every ```python block executes, and the set-up commands are there."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
READMES = ["README.md", "README.zh-CN.md"]


def python_blocks(name):
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("name", READMES)
def test_readme_opens_with_the_two_commands(name):
    head = (ROOT / name).read_text(encoding="utf-8")[:800]
    assert "pip install -e . && tidu demo" in head
    assert 'pip install -e ".[test]" && python -m pytest' in head


@pytest.mark.parametrize("name", READMES)
def test_readme_python_blocks_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks may write files (model.safetensors)
    blocks = python_blocks(name)
    assert blocks, f"{name} has no python example"
    for block in blocks:
        exec(compile(block, name, "exec"), {"__name__": "__readme__"})
