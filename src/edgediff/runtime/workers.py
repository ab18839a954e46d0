"""G denoiser workers for one edge: data parallel over the batch of each step.

The paper's edge has ``G`` GPUs and a step of batch ``b`` costs ``L_e(b, G) = k_e b / G + h_e``.
A :class:`WorkerPool` holds ``G`` replicas of a model's backend in ``G`` worker processes
(``torch.multiprocessing`` spawn; on CUDA one per device ``cuda:0 .. cuda:G-1``, on a CPU
each with its own torch thread count). :meth:`WorkerPool.predict` is the batched denoiser
call of :class:`~edgediff.runtime.executor.BatchedExecutor` made data parallel: the step's
rows are split into contiguous shards, one per live worker, and the outputs reassembled in
order. Everything with per-member state (schedulers, generators, guidance, text encoding,
decoding) stays in the calling process, so a member's denoising is the single-process one
up to float effects of the smaller batches (docs/service.md states the tolerance).

A worker that dies (crash, out of memory, ``kill -9``) is noticed during the step through its
process sentinel; its shard is re-run on the surviving workers in the same step, so no
member loses its step (the denoiser call has no state, so a re-run gives the same rows), and
the pool goes on with ``G - 1`` (:attr:`WorkerPool.alive`). Only when no worker is left does
:meth:`predict` raise :class:`WorkerPoolError`. A worker's own exception (e.g. an input the
model refuses) is raised to the caller, as the in-process call would raise it.
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
from dataclasses import dataclass
from multiprocessing.connection import wait

from edgediff.runtime.backends import Conditioning, DenoiserBackend

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # a worker loads its replica (a real checkpoint on a busy machine) within this


class WorkerPoolError(RuntimeError):
    """The pool cannot run the step: no worker is left, or a worker failed to start."""


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as the status page and ``/v1/info`` show it."""

    index: int
    pid: int
    device: str
    alive: bool
    rows: int  # denoiser rows it has computed


def worker_devices(device: str, workers: int) -> list[str]:
    """The devices of ``workers`` replicas of a model on ``device``: ``cuda:0 .. cuda:G-1`` on
    CUDA (each worker its own GPU), ``cpu`` for all on a CPU."""
    import torch

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise WorkerPoolError(f"workers must be a positive integer, got {workers!r}")
    if not device.startswith("cuda"):
        return [device] * workers
    count = torch.cuda.device_count()
    if workers > count:
        raise WorkerPoolError(f"{workers} workers need {workers} GPUs, this machine has {count}")
    return [f"cuda:{i}" for i in range(workers)]


def _dumps(obj) -> bytes:
    """Tensors by value (``torch.save``'s pickling), whatever their device; CPU on arrival."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return buffer.getvalue()


def _loads(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def _serve(conn, backend_bytes: bytes, device: str, dtype: str, threads: int) -> None:
    """A worker's life: load the replica, then answer ``(latents, timesteps, conditioning)``
    with ``("ok", output)`` or ``("error", text)`` until it gets ``None``."""
    import torch

    torch.set_num_threads(threads)
    backend: DenoiserBackend = _loads(backend_bytes)
    del backend_bytes
    backend.place(device, dtype, only_denoiser=True)  # the rest stays in host memory, unused
    conn.send(("ready", None))
    while True:
        message = conn.recv_bytes()
        if not message:
            break
        latents, timesteps, tensors = _loads(message)
        try:
            with torch.inference_mode():
                conditioning = Conditioning({name: t.to(device) for name, t in tensors.items()})
                output = backend.predict(latents.to(device), timesteps.to(device), conditioning).cpu()
            reply = ("ok", output)
        except Exception as err:  # the caller decides what the member's failure means
            reply = ("error", f"{type(err).__name__}: {err}")
        conn.send_bytes(_dumps(reply))


class _Worker:
    def __init__(self, index: int, process, conn, device: str):
        self.index, self.process, self.conn, self.device = index, process, conn, device
        self.alive = True
        self.rows = 0


class WorkerPool:
    """``G`` replicas of ``backend``'s denoiser in worker processes (see the module doc).

    ``threads`` is each worker's torch thread count (CPU workers; default 1, so ``G`` workers
    use ``G`` cores). Close with :meth:`close` (or use as a context manager)."""

    def __init__(self, backend: DenoiserBackend, workers: int, threads: int = 1):
        import torch.multiprocessing as mp

        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise WorkerPoolError(f"worker threads must be a positive integer, got {threads!r}")
        devices = worker_devices(backend.device, workers)
        self.device, self.dtype = backend.device, backend.dtype
        context = mp.get_context("spawn")
        payload = _dumps(backend)
        self._workers: list[_Worker] = []
        self._lost_lock = threading.Lock()
        try:
            for index, device in enumerate(devices):
                parent, child = context.Pipe()
                process = context.Process(
                    target=_serve,
                    args=(child, payload, device, backend.dtype, threads),
                    name=f"edgediff-worker-{index}",
                    daemon=True,
                )
                process.start()
                child.close()
                self._workers.append(_Worker(index, process, parent, device))
            for worker in self._workers:
                ready = wait([worker.conn, worker.process.sentinel], timeout=START_TIMEOUT_S)
                if worker.conn not in ready:
                    raise WorkerPoolError(f"worker {worker.index} ({worker.device}) did not start")
                worker.conn.recv()
        except BaseException:
            self.close()
            raise
        log.info("%d denoiser workers ready on %s, %d thread(s) each", workers, ", ".join(devices), threads)

    @property
    def size(self) -> int:
        """Workers started (``G`` at start)."""
        return len(self._workers)

    @property
    def alive(self) -> int:
        """Workers still serving: the edge's ``G`` now (a worker whose process has exited is
        counted out at once, not only at the next step)."""
        self._reap()
        return sum(w.alive for w in self._workers)

    def _reap(self) -> None:
        for worker in self._workers:
            if worker.alive and not worker.process.is_alive():
                self._lost(worker, "exited")

    def info(self) -> list[WorkerInfo]:
        self._reap()
        return [WorkerInfo(w.index, w.process.pid, w.device, w.alive, w.rows) for w in self._workers]

    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self._workers if w.alive]

    def _lost(self, worker: _Worker, why: str) -> None:
        with self._lost_lock:  # the engine thread (reaping) and the denoiser thread (a step) may both notice
            if not worker.alive:
                return
            worker.alive = False
            left = sum(w.alive for w in self._workers)
            log.error("denoiser worker %d (pid %s) %s; %d left", worker.index, worker.process.pid, why, left)

    def predict(self, latents, timesteps, conditioning: Conditioning):
        """The backend's batched ``predict``, its rows split over the live workers."""
        import torch

        outputs: dict[int, object] = {}  # first row -> output rows
        errors: list[str] = []
        pending = [(0, len(latents))]  # row ranges still to compute
        while pending:
            start, stop = pending.pop(0)
            pending += self._run(start, stop, latents, timesteps, conditioning, outputs, errors)
        if errors:
            raise RuntimeError(f"denoiser worker failed: {errors[0]}")
        return torch.cat([outputs[a] for a in sorted(outputs)]).to(self.device, latents.dtype)

    def _run(self, start, stop, latents, timesteps, conditioning, outputs, errors) -> list[tuple[int, int]]:
        """Rows ``start:stop`` in one contiguous shard per live worker (one task each, so no
        pipe can fill both ways); returns the shards of the workers lost meanwhile."""
        import torch

        workers = [w for w in self._workers if w.alive]
        if not workers:
            raise WorkerPoolError(f"all {self.size} denoiser workers are gone")
        bounds = torch.linspace(start, stop, min(len(workers), stop - start) + 1).round().long().tolist()
        shards = list(zip(workers, zip(bounds, bounds[1:])))
        for worker, (a, b) in shards:
            task = (latents[a:b], timesteps[a:b], {n: t[a:b] for n, t in conditioning.tensors.items()})
            try:
                worker.conn.send_bytes(_dumps(task))
            except OSError:
                self._lost(worker, "cannot be reached")
        lost = []
        for worker, (a, b) in shards:
            if worker.alive:
                ready = wait([worker.conn, worker.process.sentinel])
                try:
                    if worker.conn not in ready:
                        raise EOFError
                    status, value = _loads(worker.conn.recv_bytes())
                except (EOFError, OSError):
                    self._lost(worker, "died during a step; its rows run on the others")
            if not worker.alive:
                lost.append((a, b))
            elif status == "ok":
                outputs[a] = value
                worker.rows += b - a
            else:
                errors.append(value)
        return lost

    def close(self) -> None:
        """Stop every worker (a stuck one is killed after a short wait)."""
        for worker in self._workers:
            try:
                worker.conn.send_bytes(b"")
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
            worker.alive = False

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
