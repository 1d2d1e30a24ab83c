"""Documentation that runs: every ```python block of README.md and docs/*.md executes."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path):
    text = path.read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


CASES = [(p, i, code) for p in DOCS for i, code in enumerate(python_blocks(p))]


def test_the_readme_has_python_examples():
    assert python_blocks(ROOT / "README.md")


@pytest.mark.parametrize("path, index, code", CASES, ids=[f"{p.name}-{i}" for p, i, _ in CASES])
def test_doc_example_runs(path, index, code, tmp_path, monkeypatch):
    """Blocks of one file run in order in one namespace (later blocks use earlier names),
    in a scratch directory that sees the repository's data/."""
    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "data", tmp_path / "data")
    namespace = {"__name__": "__doc_example__"}
    for earlier in python_blocks(path)[:index]:
        exec(compile(earlier, f"{path.name}[earlier]", "exec"), namespace)
    exec(compile(code, f"{path.name}[{index}]", "exec"), namespace)
