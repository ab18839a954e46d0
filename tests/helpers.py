"""Helpers shared by tests in several folders (``tests/conftest.py`` puts this folder on ``sys.path``)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).parents[1] / "src")


def run_cli(*args, env=None, timeout=300):
    """``python -m edgediff ARGS`` in a subprocess (this checkout's ``src`` first on its path),
    its stdout and stderr captured as text. ``env``: the subprocess's environment (default:
    this process's)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "edgediff", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def free_port() -> int:
    """A TCP port on loopback that nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
