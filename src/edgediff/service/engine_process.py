"""The edge engine in its own process, the HTTP face in this one (``edgediff serve --engine-process``).

Why: one Python process holds one interpreter lock. Under load the HTTP side (uvicorn,
FastAPI, validation, long polls) keeps a core busy with Python code, and the engine thread —
whose denoiser calls, scheduler steps and cache work also need the lock between native
calls — waits for it: on a 2-core host the edge's steps ran 25–88 % over their calibrated
time with 100–200 clients (docs/service.md, "Throughput"). vLLM moved its engine core out
of the API server's process for the same reason. Here the engine process runs the same
:class:`~edgediff.service.engine.EdgeEngine` and answers with the same
:class:`~edgediff.service.app.EngineFace` as a single-process service; this process keeps
only the routes (:func:`~edgediff.service.app.add_routes`: same API, same validation) and
forwards each call.

The channel is a socket pair with length-prefixed pickled messages, read by an asyncio
stream on both sides, so many calls (long polls included) are in flight at once: each call
carries an id and its answer comes back under it. The engine process ignores SIGINT and
SIGTERM: the service's shutdown order (drain with the listener up, then close) is driven
from this process through ``stop`` / ``wait_collected``. If this process dies the channel
closes, and the engine process exits at once without answering anything more, as a killed
one-process service would: with a journal, the next start answers the requests it had
accepted and not finished ``lost in restart``. If the engine process
dies, every call in flight and every later one is answered 503 (``engine process stopped``).

Nothing is shared but the channel: metrics, the journal, the cache and the status page's
data all live in the engine process, and ``/metrics`` and ``/v1/info`` come from there.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
from contextlib import asynccontextmanager

from edgediff.errors import InputError
from edgediff.service.app import EngineFace
from edgediff.service.config import ServiceConfig
from edgediff.service.denoiser import name_os_thread
from edgediff.service.engine import EdgeEngine
from edgediff.service.face import FACE_CALLS, Answer

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0  # the engine process loads its model and calibrates within this
_HEADER = struct.Struct("!I")


class EngineProcessError(RuntimeError):
    """The engine process has stopped."""


class EngineStartError(InputError):
    """The engine process did not start (its model did not load, its calibration failed)."""


async def _send(writer: asyncio.StreamWriter, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(data)) + data)  # one write per message: concurrent senders never interleave
    await writer.drain()


async def _receive(reader: asyncio.StreamReader):
    """The next message, or ``None`` once the other side has closed the channel."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _engine_main(sock: socket.socket, config: ServiceConfig, model_loader, log_level: int) -> None:
    """The engine process: load, start, then answer calls until the channel closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service's process drives the shutdown
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("edgediff.service").setLevel(log_level)
    name_os_thread("edgediff-calls")  # this thread answers the calls (top -H tells it from the engine's)
    asyncio.run(_engine_serve(sock, config, model_loader))


async def _engine_serve(sock: socket.socket, config: ServiceConfig, model_loader) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        model = None if model_loader is None else await asyncio.to_thread(model_loader)
        engine = await asyncio.to_thread(EdgeEngine, config, model=model)
        engine.start(asyncio.get_running_loop())
    except BaseException as err:  # noqa: BLE001 - told to the service's process, which fails in one line
        await _send(writer, ("failed", str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"))
        writer.close()
        return
    # the start-up heap (torch, diffusers, the model, the embedder) never becomes garbage: out of
    # the collector's reach, a full collection traverses only what serving makes (the latent
    # cache's entries): its longest pause over a 100k-entry fill fell from 116-142 ms to 20-39 ms
    # (bench/bench_latent_cache.py --no-gc-freeze against the default)
    gc.collect()
    gc.freeze()
    await _send(writer, ("ready", None))
    face = EngineFace(engine)
    stopped = []  # a stop call came: the service's process is shutting down in order

    def stop(*args):
        stopped.append(True)
        return asyncio.to_thread(engine.stop, *args)

    lifecycle = {
        "stop": stop,
        "wait_collected": lambda *a: asyncio.to_thread(engine.wait_collected, *a),
        "abort": lambda: asyncio.to_thread(engine.abort),
    }

    async def answer(call_id: int, name: str, args: tuple) -> None:
        try:
            call = getattr(face, name) if name in FACE_CALLS else lifecycle[name]
            reply = (call_id, True, await call(*args))
        except Exception as err:  # noqa: BLE001 - raised again in the service's process
            reply = (call_id, False, EngineProcessError(f"{name} failed in the engine process: {err}"))
        try:
            await _send(writer, reply)
        except ConnectionError:
            pass

    tasks: set[asyncio.Task] = set()
    while (message := await _receive(reader)) is not None:
        task = asyncio.create_task(answer(*message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if not stopped:  # the service's process died (SIGKILL, OOM): end as a killed one-process service would
        log.error("the service's HTTP process is gone; the engine process exits now (unfinished requests are "
                  "answered 'lost in restart' by the next start on the same journal)")  # fmt: skip
        os._exit(1)  # nothing journaled as finished that did not finish; workers see their pipes close
    await asyncio.to_thread(engine.stop, False)  # after the drain: release the workers, close the journal
    writer.close()


class EngineProcess:
    """An edge engine in a child process, with the interface the server drives (``config``,
    ``stop``, ``abort``, ``wait_collected``) and the routes' face (:data:`FACE_CALLS`).

    ``model_loader``: a picklable zero-argument callable that loads the model in the engine
    process (default: ``config.model`` by name). Start it with :meth:`start` (blocking, from
    any thread; it raises :class:`EngineStartError` in one line if the engine fails to
    load), then :meth:`connect` from the event loop that serves the routes."""

    def __init__(self, config: ServiceConfig, model_loader=None):
        self.config = config
        self._model_loader = model_loader
        self._process = None
        self._socket: socket.socket | None = None
        self._reader = self._writer = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._calls: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self._gone: str | None = None
        self._closed = False
        self._reading: asyncio.Task | None = None

    def start(self) -> None:
        """Spawn the engine process and wait until its engine is ready (model loaded, calibrated)."""
        import multiprocessing

        ours, theirs = socket.socketpair()
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads and torch
        level = logging.getLogger("edgediff.service").getEffectiveLevel()
        self._process = context.Process(
            target=_engine_main, args=(theirs, self.config, self._model_loader, level), name="edgediff-engine"
        )  # not a daemon: its engine may start denoiser worker processes of its own
        self._process.start()
        theirs.close()
        ours.settimeout(START_TIMEOUT_S)
        try:
            header = _recv_exactly(ours, _HEADER.size)
            status, detail = pickle.loads(_recv_exactly(ours, _HEADER.unpack(header)[0]))
        except (OSError, EOFError) as err:
            self._kill()
            raise EngineStartError(f"the engine process did not start: {err or 'it exited'}") from None
        if status != "ready":
            self._kill()
            raise EngineStartError(f"the engine process did not start: {detail}")
        ours.settimeout(None)
        ours.setblocking(False)
        self._socket = ours

    async def connect(self) -> None:
        """Attach the channel to the running event loop (the one that serves the routes)."""
        self._loop = asyncio.get_running_loop()
        self._reader, self._writer = await asyncio.open_connection(sock=self._socket)
        self._reading = asyncio.create_task(self._read_answers())  # held: the loop keeps only a weak reference

    async def _read_answers(self) -> None:
        while (message := await _receive(self._reader)) is not None:
            call_id, ok, value = message
            future = self._calls.pop(call_id, None)
            if future is not None and not future.done():
                future.set_result(value) if ok else future.set_exception(value)
        self._gone = "engine process stopped"
        if self._process is not None and self._process.exitcode not in (None, 0):
            self._gone += f" (exit code {self._process.exitcode})"
        (log.info if self._closed else log.error)("the %s", self._gone)
        for future in self._calls.values():
            if not future.done():
                future.set_exception(EngineProcessError(self._gone))
        self._calls.clear()

    async def call(self, name: str, *args):
        """Call ``name`` in the engine process and wait for its answer."""
        if self._gone is not None:
            raise EngineProcessError(self._gone)
        call_id = next(self._ids)
        future = self._loop.create_future()
        self._calls[call_id] = future
        await _send(self._writer, (call_id, name, args))
        return await future

    def call_soon(self, name: str, *args, wait: bool = True):
        """:meth:`call` from another thread (the server's drain thread): its answer, or
        ``None`` if the engine process is gone; ``wait=False`` (a signal handler, which runs
        on the loop's own thread) only sends the call."""
        if self._loop is None or self._loop.is_closed():
            return None
        future = asyncio.run_coroutine_threadsafe(self.call(name, *args), self._loop)
        if not wait:
            return None
        try:
            return future.result()
        except EngineProcessError as err:
            log.warning("%s: %s", name, err)
            return None

    # ---------------------------------------------------------------- the routes' face
    async def _answer(self, name: str, *args) -> Answer:
        try:
            return await self.call(name, *args)
        except EngineProcessError as err:
            return Answer(503, {"error": str(err)}, {"Retry-After": "1"})

    async def submit(self, body, tenant) -> Answer:
        return await self._answer("submit", body, tenant)

    async def status(self, job_id: str, tenant, wait: float, until: str) -> Answer:
        return await self._answer("status", job_id, tenant, wait, until)

    async def latent(self, job_id: str, tenant, wait: float) -> Answer:
        return await self._answer("latent", job_id, tenant, wait)

    async def measured(self, job_id: str, tenant, latency_s: float) -> Answer:
        return await self._answer("measured", job_id, tenant, latency_s)

    async def health(self) -> Answer:
        return await self._answer("health")

    async def info(self, tenant) -> dict:
        return await self._data("info", tenant)

    async def status_data(self, tenant) -> dict:
        return await self._data("status_data", tenant)

    async def metrics(self) -> bytes:
        return await self._data("metrics")

    async def _data(self, name: str, *args):
        """A route that answers with data, not an :class:`Answer`: 503 once the engine is gone."""
        from fastapi import HTTPException

        try:
            return await self.call(name, *args)
        except EngineProcessError as err:
            raise HTTPException(503, str(err), {"Retry-After": "1"}) from None

    # ---------------------------------------------------------------- the server's interface
    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Drain (or stop at once) the engine, as :meth:`EdgeEngine.stop`."""
        self.call_soon("stop", drain, timeout)

    def abort(self) -> None:
        self.call_soon("abort", wait=False)

    def wait_collected(self, timeout: float) -> int:
        left = self.call_soon("wait_collected", timeout)
        return 0 if left is None else left

    def close(self) -> None:
        """Close the channel (the engine process then stops) and wait for the process to exit."""
        self._closed = True
        if self._writer is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._writer.close)
        elif self._socket is not None:
            self._socket.close()
        if self._process is not None:
            self._process.join(timeout=self.config.drain_timeout_s)
            self._kill()

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def create_process_app(engine: EngineProcess):
    """The service's FastAPI app answered by an engine process (the routes of
    :func:`edgediff.service.app.add_routes`); its lifespan starts the process and closes it."""
    from fastapi import FastAPI

    from edgediff import __version__
    from edgediff.service.app import STATUS_PAGE, add_routes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if engine._process is None:
            await asyncio.to_thread(engine.start)
        await engine.connect()
        try:
            yield
        finally:
            await asyncio.to_thread(engine.stop)  # done already unless the listener was closed first
            await asyncio.to_thread(engine.close)

    app = FastAPI(
        title="edgediff edge service",
        version=__version__,
        description="Edge-device collaborative diffusion serving (the engine in its own process).",
        lifespan=lifespan,
    )
    app.state.engine = engine
    add_routes(app, engine, engine.config, STATUS_PAGE)
    return app


def serve_engine_process(engine: EngineProcess, sock) -> None:
    """Run the service with its engine in ``engine``'s process, in the foreground on ``sock``
    (from :func:`edgediff.service.server.bind`) until SIGINT/SIGTERM, with the service's
    shutdown order. The engine starts first: a failure is one line before the listener answers."""
    from edgediff.service.server import serve

    engine.start()
    serve(engine, sock=sock, app=create_process_app(engine))
