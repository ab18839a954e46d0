"""Running the service: in the foreground (``edgediff serve``) or in a background thread on
a loopback port (tests, ``edgediff demo``, the benchmark).

Shutdown order (SIGINT/SIGTERM, or :meth:`ServiceThread.stop`): the engine drains first
while the listener still answers (new requests 503 + ``Retry-After``, ``/healthz`` 503,
polls and latents served); then the listener stays up until the clients of the requests
that were in flight have collected their results (at most ``linger_s``); only then does
uvicorn close the listener. A second signal stops at once.

Slow clients: a connection must send its request headers within ``header_timeout_s`` (from
connecting, or from its first byte after an idle keep-alive), and the body within
``body_timeout_s`` of the headers; otherwise it is closed. At most ``max_connections`` are
open; one more is answered 503 and closed at once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from edgediff.errors import InputError
from edgediff.service.app import create_app
from edgediff.service.config import ServiceConfig
from edgediff.service.engine import EdgeEngine

log = logging.getLogger(__name__)

GRACEFUL_S = 30.0  # how long open connections may finish once the listener is closed


class StartupError(RuntimeError):
    """The service did not start (the engine failed to load)."""


class ListenError(InputError):
    """The service cannot listen where asked (the port is taken, the host unknown)."""


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now (``port`` 0: a free one); a taken port or an unknown
    host raises :class:`ListenError` in one line, before anything is loaded."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ListenError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def _timed_protocol(config: ServiceConfig):
    """uvicorn's h11 protocol with read deadlines and a connection cap (see the module docstring)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    refusal = b'{"error": "too many connections"}'
    busy = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(refusal), refusal)
    )

    class TimedH11Protocol(H11Protocol):
        _phase = _timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > config.max_connections:
                log.warning("connection refused: %d open (max_connections)", len(self.connections) - 1)
                transport.write(busy)
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc) -> None:
            self._set(None)
            super().connection_lost(exc)

        def _arm(self) -> None:
            # headers: waiting for (the rest of) a request, unless idle under uvicorn's keep-alive timer
            state = self.conn.their_state
            if state is h11.IDLE and self.timeout_keep_alive_task is None:
                self._set("headers")
            elif state is h11.SEND_BODY:
                self._set("body")
            else:
                self._set(None)

        def _set(self, phase: str | None) -> None:
            if phase == self._phase:  # a running deadline is not extended by more bytes
                return
            if self._timer is not None:
                self._timer.cancel()
            self._phase, self._timer = phase, None
            if phase is not None and not self.transport.is_closing():
                timeout = config.header_timeout_s if phase == "headers" else config.body_timeout_s
                self._timer = self.loop.call_later(timeout, self._expire, phase)

        def _expire(self, phase: str) -> None:
            self._timer = None
            if self._phase == phase and not self.transport.is_closing():
                log.info("closing a connection that did not send its request %s in time", phase)
                self.transport.close()

    return TimedH11Protocol


def _uvicorn_config(app, config: ServiceConfig, graceful_s: float, log_level: str):
    import uvicorn

    return uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=graceful_s,
        access_log=False,
        http=_timed_protocol(config),
        # 100+ concurrent clients on one host: keep idle keep-alive sockets a while
        timeout_keep_alive=config.keep_alive_s,
    )


def _server(engine: EdgeEngine, graceful_s: float, log_level: str, app=None):
    import uvicorn

    class EdgeServer(uvicorn.Server):
        """uvicorn's server with the edge's shutdown order (module docstring)."""

        _drainer: threading.Thread | None = None

        def handle_exit(self, sig, frame) -> None:
            if self._drainer is None and not self.should_exit:
                log.info("signal %s: draining the edge; the listener stays up until results are collected", sig)
                getattr(self, "_captured_signals", []).append(sig)  # re-raised after shutdown (exit status)
                self._drainer = threading.Thread(target=self.drain_then_exit, name="edgediff-drain", daemon=True)
                self._drainer.start()
            else:  # a second signal: stop now
                engine.abort()
                super().handle_exit(sig, frame)

        def drain_then_exit(self) -> None:
            engine.stop()
            left = engine.wait_collected(engine.config.linger_s)
            if left:
                log.warning("closing the listener with %d result(s) not collected", left)
            self.should_exit = True

    app = create_app(engine) if app is None else app
    return EdgeServer(_uvicorn_config(app, engine.config, graceful_s, log_level))


def serve(
    engine: EdgeEngine,
    host: str = "127.0.0.1",
    port: int = 8000,
    graceful_s: float = GRACEFUL_S,
    sock: socket.socket | None = None,
    app=None,
) -> None:
    """Run until SIGINT/SIGTERM, then drain before closing (module docstring). ``sock``: a
    socket from :func:`bind` (``edgediff serve`` binds before loading the model). ``engine``
    may be a front door (:mod:`edgediff.service.cluster`: the same ``stop``, ``abort``,
    ``wait_collected`` and ``config``) with its ``app``."""
    sock = bind(host, port) if sock is None else sock
    server = _server(engine, graceful_s, "info", app)
    server.run(sockets=[sock])
    if not server.started:
        raise StartupError(f"the service did not start on {host}:{port} (see the log above)")


class ServiceThread:
    """The service (or a front door and its ``app``, as :func:`serve`) in a background thread
    on ``host`` and a free port (``port=0``)::

    with ServiceThread(engine) as service:
        EdgeClient(service.url) ...
    """

    def __init__(self, engine: EdgeEngine, host: str = "127.0.0.1", port: int = 0, graceful_s: float = 5.0, app=None):
        self.engine, self.host, self.port, self.graceful_s, self.app = engine, host, port, graceful_s, app
        self.server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 300.0) -> ServiceThread:
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.server = _server(self.engine, self.graceful_s, "warning", self.app)
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
        """As on SIGTERM: drain with the listener up, let clients collect, then close."""
        if self.server is not None and self.server.started and self._thread.is_alive():
            self.server.drain_then_exit()
        elif self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ServiceThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
