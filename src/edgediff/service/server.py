"""Running the service: in the foreground (``edgediff serve``) or in a background thread on
a loopback port (tests, ``edgediff demo``, the benchmark)."""

from __future__ import annotations

import logging
import socket
import threading
import time

from edgediff.service.app import create_app
from edgediff.service.engine import EdgeEngine

log = logging.getLogger(__name__)

GRACEFUL_S = 30.0  # how long open connections (long polls) may finish before the drain


class StartupError(RuntimeError):
    """The service did not start (the engine failed to load or the port is taken)."""


def _uvicorn_config(app, graceful_s: float, log_level: str):
    import uvicorn

    return uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=graceful_s,
        access_log=False,
        # 100+ concurrent clients on one host: keep idle keep-alive sockets a while
        timeout_keep_alive=30,
    )


def serve(engine: EdgeEngine, host: str = "127.0.0.1", port: int = 8000, graceful_s: float = GRACEFUL_S) -> None:
    """Run until SIGINT/SIGTERM: uvicorn stops accepting, lets open requests finish for up to
    ``graceful_s``, then the app's shutdown drains the engine (every queued request is decided
    and the batch runs to empty, every request gets a terminal state)."""
    import uvicorn

    config = _uvicorn_config(create_app(engine), graceful_s, "info")
    config.host, config.port = host, port
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise StartupError(f"the service did not start on {host}:{port} (see the log above)")


class ServiceThread:
    """The service in a background thread on ``host`` and a free port (``port=0``)::

    with ServiceThread(engine) as service:
        EdgeClient(service.url) ...
    """

    def __init__(self, engine: EdgeEngine, host: str = "127.0.0.1", port: int = 0, graceful_s: float = 5.0):
        self.engine, self.host, self.port, self.graceful_s = engine, host, port, graceful_s
        self.server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 300.0) -> ServiceThread:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(_uvicorn_config(create_app(self.engine), self.graceful_s, "warning"))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise StartupError("the service did not start (see the log)")
            time.sleep(0.02)
        log.info("service listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Graceful stop, as on SIGTERM: open requests finish, then the engine drains."""
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
