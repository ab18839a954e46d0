"""docs/your-policy.md runs as written: every ``edgediff`` line of its ```bash blocks, top to
bottom, in a scratch directory holding a copy of ``examples/`` (through the same ``main``)."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from edgediff.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "your-policy.md"


def page_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_page_names_only_edgediff_commands_and_both_examples():
    commands = page_commands()
    assert commands and all(line.startswith("edgediff ") for line in commands)
    text = " ".join(commands)
    for needed in ("slowest_first.py", "value_aware_cache.py", "compare", "--plot", "simulate", "cache-sim"):
        assert needed in text


@pytest.mark.slow
def test_every_command_of_the_page_runs(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for line in page_commands():
        assert main(shlex.split(line)[1:]) == 0, line
        capsys.readouterr()
    for made in ("window.json", "results/compare.csv", "results/compare.png", "figures/fig11a.png"):
        assert (tmp_path / made).stat().st_size > 0, made
    assert (tmp_path / "twin-run" / "twin.md").exists() and (tmp_path / "cache-run.png").exists()
    rows = (tmp_path / "figures" / "fig11a.csv").read_text()
    assert "slowest_first.py:solve" in rows and ",exact," in rows
