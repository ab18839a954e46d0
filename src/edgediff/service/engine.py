"""The window scheduler: Part A decisions every window, one batched executor, the latent cache.

One engine thread owns the model, the executor, the policy and the cache (torch work never
runs on the HTTP event loop). Requests queue between windows; at every window boundary
(every ``window_s`` seconds) the engine builds a Part A instance of the queued requests
(:func:`edgediff.service.window.window_instance`), runs the policy, answers denied requests
at once ("run locally"), and adds the granted ones to the running batch: members of earlier
windows may still be in it at other timesteps, so the batch grows at windows and shrinks as
members reach their split points. A member's intermediate latent is published the step it
leaves.

Requests of different step counts ``N`` are decided as separate instances in one window
(the Part A model has one ``N``), sharing ``B_max``: groups in order of their first arrival.
Every accepted request ends in exactly one terminal state (``done``, ``denied``,
``failed`` with a reason), counted in the metrics and, if configured, in the write-ahead
journal (its acceptance is journaled before the client hears of it; on restart the journal
answers every earlier request by id). A member whose step raises fails alone (the executor
is exception-safe per member). ``stop`` drains: queued requests are decided at once, the
batch runs to empty.
With ``config.workers`` > 1 the engine runs the denoiser on a
:class:`~edgediff.runtime.workers.WorkerPool` it starts and closes, and plans each window
with ``G`` = the workers alive then: a worker that dies has its rows of the step re-run on
the others (no member fails), and the next window is planned with ``G - 1``.
A job's status changes only by a new :class:`~edgediff.service.job.JobSnapshot` published
under the engine's lock; the HTTP handlers read no other job state.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from edgediff.service.config import ServiceConfig
from edgediff.service.embedding import ConditioningMemo, EmbeddingMemo
from edgediff.service.job import Job, JobSnapshot, RestoredJob
from edgediff.service.journal import LOST, Journal, replay
from edgediff.service.latent_cache import LatentCache
from edgediff.service.metrics import ServiceMetrics
from edgediff.service.schemas import TERMINAL, SubmitRequest
from edgediff.service.status import StatusBoard

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The request queue is at its limit; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"request queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The service is draining and accepts no new requests."""


PHASES = ("decide", "embed", "admit", "step", "capture", "encode", "thumbnail")


@dataclass
class EdgeStats:
    """What the edge did: batched steps, member-steps, busy time (in the executor's steps),
    and the calibrated ideal ``sum_s L(b_s)`` of the same steps (``L(b) = k b + h`` of the
    edge's profile). ``engine_busy_s`` is all the engine thread's working (not waiting) time,
    ``engine_cpu_s`` its CPU time, ``phases_s`` splits the working time: ``decide`` (instance
    + policy), ``embed`` (prompt embeddings), ``admit`` (cache lookup, joining the batch),
    ``step`` (the executor), ``capture`` (cache inserts), ``encode`` (payload encoding and
    publishing), ``thumbnail`` (the status page's decode); the rest is the loop itself.
    ``alone_s`` is the working time of the loop's turns with no step in flight (a window's
    decision on an empty batch, the hand-off after the last member left): host work that
    nothing overlaps, ``alone_turns`` their number."""

    windows: int = 0
    steps: int = 0
    member_steps: int = 0
    busy_s: float = 0.0
    ideal_s: float = 0.0
    accepted: int = 0
    terminal: dict = field(default_factory=lambda: {s: 0 for s in TERMINAL})
    engine_busy_s: float = 0.0
    engine_cpu_s: float = 0.0
    phases_s: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    alone_s: float = 0.0
    alone_turns: int = 0


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread its Python name (or ``name``) in the OS too, cut to Linux's 15
    bytes, so that ``top -H`` and ``/proc/PID/task/*/comm`` tell the engine's threads apart
    (the benchmark's CPU split reads them); nothing where ``/proc`` is missing."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write((name or threading.current_thread().name)[:15])
    except OSError:
        pass


def calibration_batches(b_max: int) -> tuple[int, ...]:
    """The batch sizes the start-up calibration times: 1 to ``B_max`` (at least 8), since a
    step's cost grows faster than linearly past small batches on a CPU (compare ``edgediff
    calibrate --batches 1,2,4,8`` with ``--batches 1,4,8,16,20``), and the fit is the law the
    windows are planned with at the batches the edge really runs."""
    top = max(8, b_max)
    return tuple(sorted({1, 2, 4, 8, top // 2, top}))


def _restored_snapshot(record: dict, status: str, reason: str | None) -> JobSnapshot:
    """The status of a request of an earlier run from its journal ``record``."""
    steps, split = int(record.get("steps") or 0), record.get("split")
    split = split if isinstance(split, int) and not isinstance(split, bool) else None
    granted = None if split is None else split < steps
    window = record.get("window")
    return JobSnapshot(record["id"], steps, 0.0, status, window, granted, split, reason=reason)


class EdgeEngine:
    """The edge: ``start()``, ``submit(body) -> Job``, ``get(id)``, ``stop()``.

    ``model`` (a loaded ``DiffusionModel``) and ``embedder`` may be injected; otherwise they
    are loaded at ``start`` (the model from ``config.model``, the embedder is the MiniLM one
    when the cache is on). ``site`` names the engine as one site behind a front door
    (:mod:`edgediff.service.cluster`): its request ids start with ``<site>-`` and a request
    naming another site is refused.
    """

    def __init__(
        self,
        config: ServiceConfig,
        model=None,
        embedder=None,
        metrics: ServiceMetrics | None = None,
        site: str | None = None,
    ):
        self.config = config
        self.site = site
        self._id_prefix = "" if site is None else f"{site}-"
        self.model = model
        self.embedder = embedder
        self.metrics = metrics or ServiceMetrics()
        # one latent cache, or one per tenant (with API keys and no cache_sharing), sharing the bytes
        owners = config.tenants if config.tenants and not config.cache_sharing else (None,)
        share = config.cache_bytes // len(owners)
        self.caches = {o: LatentCache(share, config.theta_min, config.cache_eviction) for o in owners}
        self.cache = next(iter(self.caches.values()))  # the only one, or the first tenant's
        self.stats = EdgeStats()
        self.board = StatusBoard(config.b_max)
        self._embeddings = EmbeddingMemo()
        self._conditionings = ConditioningMemo()
        self.batch_members = 0
        self.edge_k = self.edge_h = None
        self.intermediate_bits = None
        self.latent_shape = None
        self.policy = None
        self.pool = None  # the WorkerPool this engine started (config.workers > 1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._closing = False
        self._abort = False
        self._thread: threading.Thread | None = None
        self._window_counter = itertools.count()
        self._boundary: float | None = None  # perf_counter time of the next window end (engine thread)
        self._journal = None
        self._running: set[str] = set()  # ids of the jobs handed to the executor and not yet out
        # prompt embeddings and text encodings run here as requests arrive, off the engine thread
        self._prep: ThreadPoolExecutor | None = None
        self._denoiser: ThreadPoolExecutor | None = None  # runs each step's batched denoiser call
        self._prep_lock = threading.Lock()
        self._prep_pending: list[Job] = []  # submitted, not yet taken by the prep thread
        self._at_close: list[Job] = []  # the jobs not yet terminal when the drain began

    # ------------------------------------------------------------------ lifecycle
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Load what is missing, calibrate the edge if no profile was given, start the thread."""
        from edgediff.runtime.executor import initial_state
        from edgediff.runtime.models import ModelSpec, load_model
        from edgediff.runtime.payload import payload_bits
        from edgediff.runtime.request import GenerationRequest
        from edgediff.service.window import window_policy

        self._loop = loop
        self.policy = window_policy(self.config)
        if self.config.journal is not None and self._journal is None:  # before the model: a bad path fails fast
            restored = replay(self.config.journal, keep=self.config.record_limit)
            self._journal = Journal(self.config.journal, fsync=self.config.journal_fsync)
            self._restore(restored)
        if self.model is None:
            self.model = load_model(ModelSpec(self.config.model, device=self.config.device))
        self._start_workers()
        try:
            if self.config.edge_profile is None:
                self.edge_k, self.edge_h = self._calibrate()
            else:
                self.edge_k, self.edge_h = self.config.edge_profile
        except BaseException:
            self._stop_workers()
            raise
        probe = initial_state(self.model, GenerationRequest("probe", steps=1))
        self.latent_shape = tuple(probe.latent.shape)
        self.intermediate_bits = payload_bits(probe)
        if self.cache.enabled and self.embedder is None:
            from edgediff.service.embedding import load_prompt_embedder

            self.embedder = load_prompt_embedder()
        log.info(
            "edge ready: model %s, L(b) = %.4g b + %.4g s, policy %s, window %.3g s, cache %d bytes",
            self.model.name,
            self.edge_k,
            self.edge_h,
            self.config.policy,
            self.config.window_s,
            self.cache.capacity_bytes,
        )
        if self.pool is not None:
            log.info(
                "%d denoiser workers on %s, %d thread(s) each: L_e(b, G) = %.4g b / G + %.4g s",
                self.live_gpus(),
                ", ".join(w.device for w in self.pool.info()),
                self.config.worker_threads,
                self.edge_k,
                self.edge_h,
            )
        self._prep = ThreadPoolExecutor(1, thread_name_prefix="edgediff-prep", initializer=name_os_thread)
        self._denoiser = ThreadPoolExecutor(1, thread_name_prefix="edgediff-step", initializer=name_os_thread)
        self._thread = threading.Thread(target=self._run, name="edgediff-engine", daemon=True)
        self._thread.start()

    def _restore(self, restored) -> None:
        """Requests of an earlier run, by id: finished ones keep their journal status; those
        accepted and never finished are answered ``failed``, reason ``lost in restart``."""
        for record in restored.finished:
            if isinstance(record.get("steps"), int):  # no acceptance line (an old journal): no status to show
                snapshot = _restored_snapshot(record, record["status"], record.get("reason"))
                self._jobs[record["id"]] = RestoredJob(snapshot, record.get("tenant"))
        for record in restored.lost:
            self._jobs[record["id"]] = RestoredJob(_restored_snapshot(record, "failed", LOST), record.get("tenant"))
            self._journal.finished(record["id"], "failed", LOST, None, None)
            self.metrics.lost.inc()
        if restored.lost:
            log.warning(
                "journal %s: %d request(s) accepted before a restart never finished; answered failed (%s)",
                self.config.journal,
                len(restored.lost),
                LOST,
            )

    def _start_workers(self) -> None:
        """``config.workers`` > 1: start the worker pool and route the model's denoiser calls to it."""
        cfg = self.config
        if cfg.workers > 1 and self.pool is None and self.model.workers is None:
            from edgediff.runtime.workers import WorkerPool

            self.pool = WorkerPool(self.model.backend, cfg.workers, cfg.worker_threads)
            self.model.workers = self.pool
        self.metrics.workers.set(cfg.workers)
        for index in range(cfg.workers if self.pool is not None else 1):
            self.metrics.worker_alive.labels(str(index))
            self.metrics.worker_rows.labels(str(index))
        self.live_gpus()  # sets the alive gauges

    def _stop_workers(self) -> None:
        if self.pool is not None:
            if self.model.workers is self.pool:
                self.model.workers = None
            self.pool.close()
            self.live_gpus()  # every worker's gauge to 0

    def live_gpus(self) -> int:
        """The edge's ``G`` now: the workers alive, or ``config.gpus`` without a pool. With every
        worker gone the denoiser falls back to this process (``G = 1``). Keeps the workers'
        gauges current."""
        metrics = self.metrics
        if self.pool is None:
            metrics.workers_alive.set(1)
            metrics.worker_alive.labels("0").set(1)
            return self.config.gpus
        for worker in self.pool.info():
            metrics.worker_alive.labels(str(worker.index)).set(worker.alive)
            metrics.worker_rows.labels(str(worker.index)).set(worker.rows)
        alive = self.pool.alive
        metrics.workers_alive.set(alive)
        if alive:
            return alive
        if self.model.workers is self.pool:
            log.error("all %d denoiser workers are gone; the denoiser runs in the service's process", self.pool.size)
            self.model.workers = None
        return 1

    def _calibrate(self) -> tuple[float, float]:
        """``k_e, h_e`` of ``L_e(b, G) = k_e b / G + h_e``, timed on the edge as it runs (through
        its workers, if any: the fitted slope there is ``k_e / G``)."""
        from edgediff.runtime.calibrate import CalibrationConfig, calibrate

        pooled = self.live_gpus() if self.pool is not None else 1  # the G the timed steps were split over
        profile = calibrate(
            self.model, CalibrationConfig(batches=calibration_batches(self.config.batch_limit), repeats=3, warmup=1)
        )
        k, h = profile.k * pooled, profile.h
        if k <= 0 or k / self.config.gpus + h <= 0:  # noisy timings on a loaded machine
            per_member = pooled * float(np.median(np.asarray(profile.step_latency_s) / np.asarray(profile.batches)))
            log.warning("calibration fit k = %.3g, h = %.3g is unusable; using k = %.3g, h = 0", k, h, per_member)
            k, h = per_member, 0.0
        return k, h

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting; with ``drain`` decide every queued request now and run the batch to
        empty (at most ``timeout``, default ``config.drain_timeout_s``); whatever is left then
        fails with reason ``shutdown``."""
        with self._cond:
            if not self._closing:
                self._at_close = [j for j in self._jobs.values() if not j.terminal]
            self._closing = True
            if not drain:
                self._abort = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.config.drain_timeout_s if timeout is None else timeout)
            if self._thread.is_alive():
                with self._cond:
                    self._abort = True
                    self._cond.notify_all()
                self._thread.join()
        if self._prep is not None:  # after the engine thread: its last windows wait on this work
            self._prep.shutdown(wait=False, cancel_futures=True)
        if self._denoiser is not None:
            self._denoiser.shutdown(wait=True)  # a step the engine thread left running ends first
        self._stop_workers()
        with self._cond:  # anything never decided (the thread never started, or aborted)
            leftovers = [j for j in self._jobs.values() if not j.terminal]
        for job in leftovers:
            self._finish(job, "failed", "shutdown: the service stopped before this request finished")
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def abort(self) -> None:
        """Cut a drain short: the engine thread stops after its current step; what is left
        fails with reason ``shutdown`` (in :meth:`stop`)."""
        with self._cond:
            self._closing = self._abort = True
            self._cond.notify_all()

    def wait_collected(self, timeout: float) -> int:
        """After :meth:`stop`: wait up to ``timeout`` s until the clients of the requests that
        were in flight when the drain began have collected their answers; returns how many
        have not."""
        deadline = time.monotonic() + timeout
        while True:
            left = sum(not job.collected for job in self._at_close)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    @property
    def closing(self) -> bool:
        return self._closing

    # ------------------------------------------------------------------ requests
    def submit(self, body: SubmitRequest, tenant: str | None = None) -> Job:
        """Queue a validated request of ``tenant`` for the next window (raises QueueFull /
        ShuttingDown; RequestError for steps the model cannot run)."""
        from edgediff.runtime.request import GenerationRequest, RequestError

        k, h = body.device_profile()
        if body.site is not None and body.site != self.site:
            where = (
                "this service runs one site and takes no site" if self.site is None else f"this is site {self.site!r}"
            )
            raise RequestError(f"site: unknown site {body.site!r} ({where})")
        if self.model is not None:  # RequestError naming steps: the model's scheduler cannot run them
            self.model.check_steps(body.steps)
        request = GenerationRequest(
            body.prompt,
            steps=body.steps,
            seed=body.seed,
            guidance_scale=body.guidance_scale,
            negative_prompt=body.negative_prompt,
        )
        with self._cond:
            if self._closing:
                self.metrics.rejected.labels("shutting_down").inc()
                raise ShuttingDown("the service is shutting down")
            if len(self._queue) >= self.config.queue_limit:
                self.metrics.rejected.labels("queue_full").inc()
                raise QueueFull(max(1, math.ceil(self.config.window_s)))
            job = Job(self._id_prefix + uuid.uuid4().hex, body, request, k, h, time.perf_counter(), tenant=tenant)
            if self._loop is not None:
                job.async_decided, job.async_finished = asyncio.Event(), asyncio.Event()
            journal = self._journal
            if journal is not None:  # written ahead, before the job can run or finish
                journal.accepted(job.id, job.steps, tenant)
            self._queue.append(job)
            self._jobs[job.id] = job
            self.stats.accepted += 1
            self._prune()
            self.metrics.accepted.inc()
            self.metrics.queue_depth.set(len(self._queue))
        if journal is not None:  # on the disk before the client hears of it (fsync policy)
            journal.sync()
        if self._prep is not None:
            job.prepared = threading.Event()
            with self._prep_lock:
                self._prep_pending.append(job)
            self._prep.submit(self._prepare_pending)
        return job

    def get(self, job_id: str, tenant: str | None = None) -> Job | None:
        """The job ``job_id``; with API keys only if ``tenant`` sent it (else as unknown)."""
        job = self._get(job_id)
        if job is not None and self.config.api_keys is not None and job.tenant != tenant:
            return None
        return job

    def _get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def _cache_of(self, job: Job) -> LatentCache:
        return self.caches.get(job.tenant, self.cache)

    def cache_usage(self) -> tuple[int, int]:
        """Bytes and entries held by the latent cache(s)."""
        caches = list(self.caches.values())
        return sum(c.bytes_used for c in caches), sum(len(c) for c in caches)

    def jobs(self) -> list[Job]:
        with self._cond:
            return list(self._jobs.values())

    def _prune(self) -> None:
        # keep at most record_limit records: drop the oldest terminal ones
        excess = len(self._jobs) - self.config.record_limit
        if excess <= 0:
            return
        for job_id in [j.id for j in self._jobs.values() if j.terminal][:excess]:
            del self._jobs[job_id]

    # ------------------------------------------------------------------ the engine thread
    @contextmanager
    def _timed(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stats.phases_s[phase] += time.perf_counter() - start

    def _run(self) -> None:
        """The engine loop. Each turn launches the batch's step on the denoiser thread and,
        while it runs, does the host-side work: the previous step's hand-off (cache inserts,
        payload encoding, answers), a due window's decision and admissions (the admitted join
        the next step), the status thumbnail. Then it completes the step."""
        from edgediff.runtime.executor import BatchedExecutor

        name_os_thread()
        window = self.config.window_s
        executor = BatchedExecutor(self.model)
        boundary = self._boundary = time.perf_counter() + window
        handoff: list = []  # the last step's (job, state, leaving), handed off during the next
        while True:
            now = time.perf_counter()
            with self._cond:
                if self._abort:
                    break
                closing = self._closing
                jobs = []
                if now >= boundary or (closing and self._queue):
                    jobs, self._queue = self._queue, []
                    self.metrics.queue_depth.set(0)
                    window_start = boundary - window
                    if now >= boundary:  # the next boundary after now (skip empty windows)
                        boundary += window * (math.floor((now - boundary) / window) + 1)
                        self._boundary = boundary
                elif executor.idle and not handoff:
                    if closing:
                        break
                    self._cond.wait(timeout=boundary - now)
                    continue
            cpu = time.thread_time()
            pending = None if executor.idle else self._launch(executor)
            handoff = self._hand_off(handoff)
            if jobs:
                executor = self._decide(executor, jobs, window_start)
            self._thumbnail()
            if pending is not None:
                executor, handoff = self._complete(executor, pending)
            self.stats.engine_cpu_s += time.thread_time() - cpu
            busy = time.perf_counter() - now
            self.stats.engine_busy_s += busy
            if pending is None:
                self.stats.alone_s += busy
                self.stats.alone_turns += 1
        self._hand_off(handoff)
        failed = [j for j in self.jobs() if not j.terminal]
        for job in failed:
            self._finish(job, "failed", "shutdown: drain did not finish in time")
        self.metrics.in_flight.set(0)

    def _decide(self, executor, jobs: list[Job], window_start: float):
        from edgediff.service.window import decide_window, denial_reason

        cfg = self.config
        index = next(self._window_counter)
        self.stats.windows += 1
        self.metrics.windows.inc()
        start = time.perf_counter()
        with self._timed("embed"):  # mostly done ahead on the prep thread: what is left, or the wait for it
            self._prepared(jobs)
        self._peek(jobs)
        with self._timed("decide"):
            gpus = self.live_gpus()
            groups = decide_window(
                jobs,
                cfg,
                self.policy,
                start=window_start,
                edge_profile=(self.edge_k, self.edge_h),
                intermediate_bits=self.intermediate_bits,
                gpus=gpus,
                running=len(executor),
            )
        for group in groups:
            if group.error is not None:  # e.g. a learned policy that cannot take this instance
                err = group.error
                log.error("window %d: policy %s failed", index, cfg.policy, exc_info=err)
                for job in group.jobs:
                    self._mark_decided(job, index, "failed", f"decision failed: {type(err).__name__}: {err}")
                continue
            decision, outcome = group.decision, group.outcome
            admitted = []
            for i, job in enumerate(group.jobs):
                answer = dict(
                    granted=bool(decision.granted[i]),
                    split=int(decision.split[i]),
                    predicted_latency_s=float(outcome.latency[i]),
                    predicted_pai=float(outcome.pai[i]),
                )
                if answer["granted"]:
                    admitted.append((job, answer))
                else:  # answered now: the device runs everything
                    reason = denial_reason(group.instance, decision.granted_count, cfg.policy)
                    self._mark_decided(job, index, "denied", reason, **answer)
            with self._timed("admit"):
                for job, answer in admitted:
                    executor = self._admit(executor, job, index, answer)
        elapsed = time.perf_counter() - start
        self.metrics.decision_latency.observe(elapsed)
        self.board.window(index, jobs, elapsed)
        log.info("window %d: %d requests decided in %.3f s (G = %d)", index, len(jobs), elapsed, gpus)
        return executor

    def _peek(self, jobs: list[Job]) -> None:
        """Each job's ``cached_steps``: how deep a cached latent it could start from, so that the
        window's decision sees the cache (docs/offloading-model.md, "Cached steps"). A peek moves
        no usage statistics: only the granted requests' lookups in ``_admit`` count as uses."""
        if not self.cache.enabled:
            return
        for job in jobs:
            if job.embedding is not None:
                reusable = self.config.reusable_steps(job.steps)
                job.cached_steps = self._cache_of(job).peek(
                    job.embedding, job.steps, self.latent_shape, reusable, reusable
                )

    def _prepare_pending(self) -> None:
        """On the prep thread: every request submitted since the last call, in one batch."""
        with self._prep_lock:
            jobs, self._prep_pending = self._prep_pending, []
        try:
            self._prepare(jobs)
        finally:
            for job in jobs:
                job.prepared.set()

    def _prepare(self, jobs: list[Job]) -> None:
        """The requests' prompt work, done once: their embeddings (the cache's key; none if the
        embedder fails, then they run without the cache), in one embedder call, and the model's
        text encodings (none if one fails: the executor then encodes it and fails that member only)."""
        if self.cache.enabled and jobs:
            try:
                for job, vector in zip(jobs, self._embeddings.encode(self.embedder, [j.prompt for j in jobs])):
                    job.embedding = vector
            except Exception as err:  # a broken embedder must not take the window down: no cache this time
                log.exception("prompt embedding failed; %d requests run without the cache: %s", len(jobs), err)
        for job in jobs:
            try:
                job.conditioning = self._conditionings.get(self.model.backend, job.request)
            except Exception:
                log.debug("text encoding ahead failed for %s; the executor retries it", job.id, exc_info=True)

    def _prepared(self, jobs: list[Job]) -> None:
        """Wait for the window's prompt work (or do it here for jobs submitted before the start)."""
        self._prepare([job for job in jobs if job.prepared is None])
        for job in jobs:
            if job.prepared is not None:
                job.prepared.wait()

    def _admit(self, executor, job: Job, index: int, answer: dict):
        """Start a granted member (from a cached latent if one is usable); ``answer`` is its
        decision, published with its status once it runs (or has failed to start)."""
        steps, split = job.steps, answer["split"]
        start, hit_step = None, 0
        if self.cache.enabled and job.embedding is not None:
            reusable = self.config.reusable_steps(steps)
            reach = min(reusable, steps - split)
            hit = self._cache_of(job).lookup(job.embedding, steps, self.latent_shape, reach, reusable)
            self.board.lookup(hit is not None)
            if hit is not None:
                start, hit_step = hit.state, hit.step
                self.metrics.cache_hits.inc()
            else:
                self.metrics.cache_misses.inc()
            job.capture_steps = set(range(hit_step + 1, reach + 1))
        try:
            executor.add(job.id, job.request, split, start, conditioning=job.conditioning)
        except Exception as err:
            self._mark_decided(job, index, "failed", f"edge could not start: {err}", cache_hit_step=hit_step, **answer)
            return executor
        self._running.add(job.id)
        self.metrics.grants.inc()
        self._mark_decided(job, index, "running", cache_hit_step=hit_step, **answer)
        return executor

    def _launch(self, executor):
        """Start one batched step: the members' inputs here, the denoiser call on the denoiser
        thread (so the host-side work of :meth:`_run` overlaps it)."""
        self.batch_members = len(executor)
        self.metrics.in_flight.set(self.batch_members)
        with self._timed("step"):
            return executor.launch(self._denoiser), self.batch_members, time.perf_counter()

    def _complete(self, executor, launched):
        """Finish the launched step; returns the executor and the step's hand-off: each member
        that left (reached its split) and each state the cache should store. The executor fails
        only the members whose own work raised; anything else failing here fails every member
        still in the batch, including those that had already left in this step or were waiting
        to (``_running``), and a fresh executor takes over."""
        from edgediff.runtime.executor import BatchedExecutor

        pending, batch, start = launched
        try:
            with self._timed("step"):
                left = executor.complete(pending)
            failed = executor.pop_failed()
        except Exception as err:  # not attributable to a member: fail them all, keep serving
            log.exception("edge step failed")
            for key in list(self._running):
                self._fail_running(key, f"edge step failed: {type(err).__name__}: {err}")
            return BatchedExecutor(self.model), []
        elapsed = time.perf_counter() - start
        for key, reason in failed:
            self._fail_running(key, f"edge step failed: {reason}")
        if batch:
            self.stats.steps += 1
            self.stats.member_steps += batch
            self.stats.busy_s += elapsed
            self.stats.ideal_s += self.edge_k * batch / self.live_gpus() + self.edge_h
            self.metrics.batch_size.observe(batch)
            self.metrics.step_latency.observe(elapsed)
            self.board.step(batch, elapsed)
        self.batch_members = len(executor)
        handoff = []
        if self.cache.enabled:
            try:
                with self._timed("capture"):  # the states to store, taken now: the next step moves on
                    for key in executor.active:
                        job = self._get(key)
                        if job is not None and executor.steps_done(key) in job.capture_steps:
                            handoff.append((job, executor.state(key), False))
            except Exception:  # a cache failure costs reuse, never a request
                log.exception("latent cache capture failed")
        for key, state in left:
            self._running.discard(key)
            job = self._get(key)
            if job is not None and not job.terminal:
                handoff.append((job, state, True))
        return executor, handoff

    def _hand_off(self, handoff: list) -> list:
        """A step's hand-off (:meth:`_complete`): store the captured states in the cache, and
        answer each member that left with its latent. Returns an empty hand-off."""
        from edgediff.runtime.payload import encode_latent

        for job, state, leaving in handoff:
            try:
                with self._timed("capture"):
                    self._capture(job, state)
            except Exception:  # a cache failure costs reuse, never a request
                log.exception("latent cache insert failed")
            if not leaving:
                continue
            try:
                with self._timed("encode"):
                    self._finish(job, "done", payload=encode_latent(state))
                self.board.handoff(state)
            except Exception as err:
                log.exception("request %s failed after an edge step", job.id)
                self._finish(job, "failed", f"edge result failed: {type(err).__name__}: {err}")
        return []

    def _thumbnail(self) -> None:
        """The status page's newest thumbnail (rate-limited by the board); never fatal."""
        try:
            with self._timed("thumbnail"):
                self.board.render_thumbnail(self.model)
        except Exception:
            log.exception("status thumbnail failed")

    def _fail_running(self, key: str, reason: str) -> None:
        self._running.discard(key)
        job = self._get(key)
        if job is not None:
            self._finish(job, "failed", reason)

    def _capture(self, job: Job | None, state) -> None:
        """Store ``state`` in the cache if it is one of the member's reusable steps."""
        if job is None or state.steps_done not in job.capture_steps:
            return
        job.capture_steps.discard(state.steps_done)
        if self._cache_of(job).insert(job.embedding, state, state.steps_done, job.request.prompt):
            used, entries = self.cache_usage()
            self.metrics.cache_bytes.set(used)
            self.metrics.cache_entries.set(entries)

    # ------------------------------------------------------------------ state changes
    def _signal(self, event: asyncio.Event | None) -> None:
        if event is None or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed (shutdown): nobody is waiting any more
            pass

    def _mark_decided(self, job: Job, index: int, status: str, reason: str | None = None, **answer) -> None:
        """Publish the window's answer for ``job`` in one snapshot: ``running`` or terminal."""
        decided = dict(window=index, decided_at=time.perf_counter(), **answer)
        if status in TERMINAL:
            self._finish(job, status, reason, **decided)
            return
        with self._cond:
            job.snapshot = replace(job.snapshot, status=status, reason=reason, **decided)
        job.decided.set()
        self._signal(job.async_decided)

    def _finish(self, job: Job, status: str, reason: str | None = None, **changes) -> None:
        """Publish a terminal ``status`` (with any other ``changes``) unless already terminal."""
        with self._cond:
            if job.terminal:
                return
            job.snapshot = snapshot = replace(
                job.snapshot, status=status, reason=reason, finished_at=time.perf_counter(), **changes
            )
            self.stats.terminal[status] += 1
        self.metrics.requests.labels(status).inc()
        if status == "failed":
            log.warning("request %s failed: %s", job.id, reason)
        if self._journal is not None:
            self._journal.finished(job.id, status, reason, snapshot.window, snapshot.split)
        self.board.finished(job)
        if not job.decided.is_set():
            job.decided.set()
            self._signal(job.async_decided)
        job.finished.set()
        self._signal(job.async_finished)

    def load(self) -> dict:
        """What a front door routes by (:mod:`edgediff.service.routing`): the queue, the batch,
        the seconds to the next window decision, the calibration and the limits."""
        cfg = self.config
        boundary, now = self._boundary, time.perf_counter()
        wait = cfg.window_s if boundary is None else max(0.0, boundary - now)
        with self._cond:
            queued = len(self._queue)
        return {
            "queued": queued,
            "members": self.batch_members,
            "next_window_s": wait,
            "window_s": cfg.window_s,
            "k": self.edge_k,
            "h": self.edge_h,
            "gpus": self.live_gpus(),
            "queue_limit": cfg.queue_limit,
            "n_hat_fraction": cfg.n_hat_fraction,
            "closing": self._closing,
        }

    def workers_info(self) -> dict:
        """The denoiser workers: configured, alive, threads each and one entry per worker
        (index, pid, device, alive, rows computed); without a pool, this process."""
        cfg = self.config
        if self.pool is None:
            device = None if self.model is None else self.model.device
            each = [{"index": 0, "pid": os.getpid(), "device": device, "alive": True, "rows": None}]
            return {"configured": cfg.workers, "alive": 1, "threads": None, "each": each}
        each = [asdict(w) for w in self.pool.info()]
        alive = sum(w["alive"] for w in each)
        return {"configured": cfg.workers, "alive": alive, "threads": cfg.worker_threads, "each": each}

    def info(self) -> dict:
        cfg = self.config
        used, entries = self.cache_usage()
        return {
            "model": None if self.model is None else self.model.name,
            **({} if self.site is None else {"site": self.site}),
            "policy": cfg.policy,
            "window_s": cfg.window_s,
            "gpus": self.live_gpus(),
            "workers": self.workers_info(),
            "b_max": cfg.b_max,
            "max_batch": cfg.max_batch,
            "edge_profile": {"k": self.edge_k, "h": self.edge_h},
            "intermediate_bits": self.intermediate_bits,
            "pai": {"a": cfg.pai_a, "b": cfg.pai_b, "N": 200},  # scaled to each request's N
            "cache": {
                "capacity_bytes": sum(c.capacity_bytes for c in self.caches.values()),
                "bytes": used,
                "entries": entries,
                "per_tenant": cfg.api_keys is not None and not cfg.cache_sharing,
                "eviction": cfg.cache_eviction,
                "embedder": None if self.embedder is None else getattr(self.embedder, "name", "custom"),
            },
            "stats": {
                "windows": self.stats.windows,
                "steps": self.stats.steps,
                "member_steps": self.stats.member_steps,
                "busy_s": self.stats.busy_s,
                "ideal_s": self.stats.ideal_s,
                "engine_busy_s": self.stats.engine_busy_s,
                "engine_cpu_s": self.stats.engine_cpu_s,
                "phases_s": dict(self.stats.phases_s),
                "alone_s": self.stats.alone_s,
                "alone_turns": self.stats.alone_turns,
                "accepted": self.stats.accepted,
                "terminal": dict(self.stats.terminal),
                "queued": len(self._queue),
            },
        }
