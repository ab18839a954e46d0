"""docs/serve-your-model.md runs as written: every ```bash block, top to bottom, on the tiny models.

The page's stand-in files are made first (see its table): ``my-model.safetensors`` (``tiny`` in the
original Stable Diffusion layout), ``base-config/`` (tiny's pipeline directory without weights) and
``my-personal-model/`` (``tiny-bold``). ``edgediff`` runs as ``python -m edgediff`` of this
checkout (plain ``edgediff`` lines in this process, through the same ``main``); port 8000
becomes a free loopback port. The block that starts ``edgediff serve`` runs in the background
until the page's last block has run, then gets SIGTERM.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from helpers import free_port

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "serve-your-model.md"
sys.path.insert(0, str(ROOT / "tests" / "runtime"))
SHELL = re.compile(r"[|<>;&$`]")  # a line needing the shell


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def stand_ins(directory: Path) -> None:
    from ldm_checkpoint import write_config_dir, write_ldm_checkpoint

    from edgediff.runtime.models import load_model

    cluster = load_model("tiny")
    write_ldm_checkpoint(cluster, directory / "my-model.safetensors")
    write_config_dir(cluster, directory / "base-config")
    load_model("tiny-bold").save(directory / "my-personal-model")


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited with {server.returncode}: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("serve did not become healthy")


def commands(block: str) -> list[str]:
    """The block's command lines, continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.slow
def test_every_command_of_the_guide_runs(tmp_path, monkeypatch):
    from PIL import Image

    from edgediff.cli import main

    monkeypatch.chdir(tmp_path)

    port = free_port()
    text = DOC.read_text(encoding="utf-8").replace("8000", str(port))
    blocks = bash_blocks(text)
    assert len(blocks) >= 8 and sum("edgediff serve" in b for b in blocks) == 1
    stand_ins(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("OMP_NUM_THREADS", "1")
    python = f'"{sys.executable}"'
    prelude = f'set -euo pipefail\nedgediff() {{ {python} -m edgediff "$@"; }}\npython() {{ {python} "$@"; }}\n'
    server = None
    outputs = []
    try:
        for block in blocks:
            t0 = time.monotonic()
            if "edgediff serve" in block:
                command = prelude + "exec " + block.strip().replace("edgediff ", f'"{sys.executable}" -m edgediff ', 1)
                server = subprocess.Popen(
                    ["bash", "-c", command], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
                wait_healthy(f"http://127.0.0.1:{port}", server)
            elif all(line.startswith("edgediff ") and not SHELL.search(line) for line in commands(block)):
                # plain edgediff commands run in this process: the same parser and main, without paying
                # torch's import once per command
                for line in commands(block):
                    with contextlib.redirect_stdout(io.StringIO()) as stdout:
                        code = main(shlex.split(line)[1:])
                    assert code == 0, f"{line}\n{stdout.getvalue()}"
                    outputs.append(stdout.getvalue())
            else:
                run = subprocess.run(
                    ["bash", "-c", prelude + block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
                )
                assert run.returncode == 0, f"{block}\n{run.stdout}\n{run.stderr}"
                outputs.append(run.stdout)
            print(f"{time.monotonic() - t0:6.1f} s  {block.splitlines()[0][:70]}")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    out = "\n".join(outputs)
    # what the page says about the commands' results
    check = np.asarray(Image.open(tmp_path / "check.png"))
    assert check.shape == (256, 256, 3)  # enlarged for viewing
    assert np.array_equal(check, np.asarray(Image.open(tmp_path / "check-dir.png")))  # file and directory agree
    assert "compatible: same latent space" in out
    assert json.loads((tmp_path / "edge-profile.json").read_text())["model"]
    assert (tmp_path / "device-profile.json").is_file()
    assert out.count("latency predicted") == 2 and (tmp_path / "seven.png").is_file()
    info, _ = json.JSONDecoder().raw_decode(out, out.index('{\n    "model"'))
    assert info["model"].endswith("my-model.safetensors") and info["stats"]["accepted"] == 2
    assert "200 text/html" in out  # the status page
    assert re.search(r'^edgediff_requests_total\{outcome="(done|denied)"\} ', out, flags=re.M)
    journal = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    ends = [r for r in journal if r["status"] != "queued"]
    assert len(journal) == 4 and len(ends) == 2 and {r["status"] for r in ends} <= {"done", "denied"}
