"""The README's "From Python" section runs as written (from a checkout's root: here a scratch
directory with a copy of ``examples/``)."""

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_section() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]


@pytest.mark.slow
def test_the_readme_s_python_section_runs(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    exec(compile(python_section(), "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "keenest-first: objective" in out and "exact: objective" in out
    assert "16 examples/policies/slowest_first.py:solve score" in out
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
