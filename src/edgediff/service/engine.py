"""The window scheduler: Part A decisions every window, one batched executor, the latent cache.

One engine thread owns the model, the executor, the policy and the cache (torch work never
runs on the HTTP event loop). Requests queue between windows; at every window boundary
(every ``window_s`` seconds) the engine builds a Part A instance of the queued requests
(waiting time ``K - k_i`` from their arrival in the window, the device's ``k, h`` and α, the
edge's calibrated ``k, h``), runs the policy, answers denied requests at once ("run
locally"), and adds the granted ones to the running batch: members of earlier windows may
still be in it at other timesteps, so the batch grows at windows and shrinks as members
reach their split points. A member's intermediate latent is published the step it leaves.

Requests of different step counts ``N`` are decided as separate instances in one window
(the Part A model has one ``N``), sharing ``B_max``: groups in order of their first arrival.
Every accepted request ends in exactly one terminal state (``done``, ``denied``,
``failed`` with a reason), counted in the metrics and, if configured, appended to a JSON-lines
journal. ``stop`` drains: queued requests are decided at once, the batch runs to empty.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from edgediff.service.config import ServiceConfig
from edgediff.service.latent_cache import LatentCache
from edgediff.service.metrics import ServiceMetrics
from edgediff.service.schemas import TERMINAL, SubmitRequest

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The request queue is at its limit; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"request queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The service is draining and accepts no new requests."""


@dataclass(eq=False)
class Job:
    """One accepted request and everything that happens to it."""

    id: str
    body: SubmitRequest
    request: object  # GenerationRequest
    k: float
    h: float
    arrived: float
    status: str = "queued"
    window: int | None = None
    granted: bool | None = None
    split: int | None = None
    predicted_latency_s: float | None = None
    predicted_pai: float | None = None
    cache_hit_step: int = 0
    capture_steps: set = field(default_factory=set)  # steps done at which the edge stores its latent
    reason: str | None = None
    payload: bytes | None = field(default=None, repr=False)
    decided_at: float | None = None
    finished_at: float | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)
    decided: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    async_decided: asyncio.Event | None = field(default=None, repr=False)
    async_finished: asyncio.Event | None = field(default=None, repr=False)

    @property
    def steps(self) -> int:
        return self.request.steps

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_status(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "steps": self.steps,
            "window": self.window,
            "granted": self.granted,
            "split": self.split,
            "offloaded_steps": None if self.split is None else self.steps - self.split,
            "predicted_latency_s": self.predicted_latency_s,
            "predicted_pai": self.predicted_pai,
            "cache_hit_step": self.cache_hit_step,
            "reason": self.reason,
            "queued_s": None if self.decided_at is None else self.decided_at - self.arrived,
            "edge_s": None
            if self.finished_at is None or self.decided_at is None or not self.granted
            else self.finished_at - self.decided_at,
            "payload_bytes": None if self.payload is None else len(self.payload),
        }


@dataclass
class EdgeStats:
    """What the edge did: batched steps, member-steps, busy time, and the calibrated ideal
    ``sum_s L(b_s)`` of the same steps (``L(b) = k b + h`` of the edge's profile)."""

    windows: int = 0
    steps: int = 0
    member_steps: int = 0
    busy_s: float = 0.0
    ideal_s: float = 0.0
    accepted: int = 0
    terminal: dict = field(default_factory=lambda: {s: 0 for s in TERMINAL})


class EdgeEngine:
    """The edge: ``start()``, ``submit(body) -> Job``, ``get(id)``, ``stop()``.

    ``model`` (a loaded ``DiffusionModel``) and ``embedder`` may be injected; otherwise they
    are loaded at ``start`` (the model from ``config.model``, the embedder is the MiniLM one
    when the cache is on).
    """

    def __init__(self, config: ServiceConfig, model=None, embedder=None, metrics: ServiceMetrics | None = None):
        self.config = config
        self.model = model
        self.embedder = embedder
        self.metrics = metrics or ServiceMetrics()
        self.cache = LatentCache(config.cache_bytes, config.theta_min, config.cache_eviction)
        self.stats = EdgeStats()
        self.edge_k = self.edge_h = None
        self.intermediate_bits = None
        self.latent_shape = None
        self.policy = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._closing = False
        self._abort = False
        self._thread: threading.Thread | None = None
        self._window_counter = itertools.count()
        self._journal = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Load what is missing, calibrate the edge if no profile was given, start the thread."""
        from edgediff.offload.policies import make_policy
        from edgediff.runtime.executor import initial_state
        from edgediff.runtime.models import ModelSpec, load_model
        from edgediff.runtime.payload import payload_bits
        from edgediff.runtime.request import GenerationRequest

        self._loop = loop
        self.policy = make_policy(self.config.policy, {"seed": self.config.seed, **self.config.policy_options})
        if self.model is None:
            self.model = load_model(ModelSpec(self.config.model, device=self.config.device))
        if self.config.edge_profile is None:
            self.edge_k, self.edge_h = self._calibrate()
        else:
            self.edge_k, self.edge_h = self.config.edge_profile
        probe = initial_state(self.model, GenerationRequest("probe", steps=1))
        self.latent_shape = tuple(probe.latent.shape)
        self.intermediate_bits = payload_bits(probe)
        if self.cache.enabled and self.embedder is None:
            from edgediff.service.embedding import MiniLmEmbedder

            self.embedder = MiniLmEmbedder()
        if self.config.journal is not None:
            self._journal = open(self.config.journal, "a", buffering=1)
        log.info(
            "edge ready: model %s, L(b) = %.4g b + %.4g s, policy %s, window %.3g s, cache %d bytes",
            self.model.name,
            self.edge_k,
            self.edge_h,
            self.config.policy,
            self.config.window_s,
            self.cache.capacity_bytes,
        )
        self._thread = threading.Thread(target=self._run, name="edgediff-engine", daemon=True)
        self._thread.start()

    def _calibrate(self) -> tuple[float, float]:
        from edgediff.runtime.calibrate import CalibrationConfig, calibrate

        profile = calibrate(self.model, CalibrationConfig(batches=(1, 2, 4, 8), repeats=3, warmup=1))
        k, h = profile.k, profile.h
        if k <= 0 or k / self.config.gpus + h <= 0:  # noisy timings on a loaded machine
            per_member = float(np.median(np.asarray(profile.step_latency_s) / np.asarray(profile.batches)))
            log.warning("calibration fit k = %.3g, h = %.3g is unusable; using k = %.3g, h = 0", k, h, per_member)
            k, h = per_member, 0.0
        return k, h

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting; with ``drain`` decide every queued request now and run the batch to
        empty (at most ``timeout``, default ``config.drain_timeout_s``); whatever is left then
        fails with reason ``shutdown``."""
        with self._cond:
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
        with self._cond:  # anything never decided (the thread never started, or aborted)
            leftovers = [j for j in self._jobs.values() if not j.terminal]
        for job in leftovers:
            self._finish(job, "failed", "shutdown: the service stopped before this request finished")
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    @property
    def closing(self) -> bool:
        return self._closing

    # ------------------------------------------------------------------ requests
    def submit(self, body: SubmitRequest) -> Job:
        """Queue a validated request for the next window (raises QueueFull / ShuttingDown)."""
        from edgediff.runtime.request import GenerationRequest

        k, h = body.device_profile()
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
            job = Job(uuid.uuid4().hex, body, request, k, h, time.perf_counter())
            if self._loop is not None:
                job.async_decided, job.async_finished = asyncio.Event(), asyncio.Event()
            self._queue.append(job)
            self._jobs[job.id] = job
            self.stats.accepted += 1
            self._prune()
            self.metrics.accepted.inc()
            self.metrics.queue_depth.set(len(self._queue))
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

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
    def _run(self) -> None:
        from edgediff.runtime.executor import BatchedExecutor

        window = self.config.window_s
        executor = BatchedExecutor(self.model)
        boundary = time.perf_counter() + window
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
                elif not len(executor):
                    if closing:
                        break
                    self._cond.wait(timeout=boundary - now)
                    continue
            if jobs:
                executor = self._decide(executor, jobs, window_start)
            if len(executor):
                executor = self._step(executor)
        failed = [j for j in self.jobs() if not j.terminal]
        for job in failed:
            self._finish(job, "failed", "shutdown: drain did not finish in time")
        self.metrics.in_flight.set(0)

    def _decide(self, executor, jobs: list[Job], window_start: float):
        from edgediff.core.instance import Instance
        from edgediff.core.model import evaluate
        from edgediff.core.pai import PaiCurve

        cfg = self.config
        window = cfg.window_s
        index = next(self._window_counter)
        self.stats.windows += 1
        self.metrics.windows.inc()
        start = time.perf_counter()
        remaining = cfg.b_max
        groups: dict[int, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.steps, []).append(job)
        for steps, group in groups.items():
            try:
                scale = 200.0 / steps  # the paper's PAI curve is over N = 200 steps
                instance = Instance(
                    ids=tuple(j.id for j in group),
                    k=[j.k for j in group],
                    h=[j.h for j in group],
                    alpha=[j.body.alpha for j in group],
                    request_time=[min(max(j.arrived - window_start, 0.0), 0.999 * window) for j in group],
                    prompt_bits=[8 * len(j.request.prompt.encode()) for j in group],
                    intermediate_bits=[self.intermediate_bits] * len(group),
                    N=steps,
                    N_hat=cfg.n_hat(steps),
                    B_max=remaining,
                    G=cfg.gpus,
                    K=window,
                    edge_k=self.edge_k,
                    edge_h=self.edge_h,
                    eta=cfg.eta,
                    W_max=cfg.W_max,
                    pai=PaiCurve(a=cfg.pai_a * scale, b=cfg.pai_b / scale),
                )
                decision = self.policy.decide(instance)
                outcome = evaluate(instance, decision, "timeline")
            except Exception as err:  # e.g. a learned policy that cannot take this instance
                log.exception("window %d: policy %s failed", index, cfg.policy)
                for job in group:
                    self._mark_decided(job, index)
                    self._finish(job, "failed", f"decision failed: {type(err).__name__}: {err}")
                continue
            remaining -= decision.granted_count
            admitted = []
            for i, job in enumerate(group):
                job.granted = bool(decision.granted[i])
                job.split = int(decision.split[i])
                job.predicted_latency_s = float(outcome.latency[i])
                job.predicted_pai = float(outcome.pai[i])
                if job.granted:
                    admitted.append(job)
                else:  # answered now: the device runs everything
                    self._mark_decided(job, index)
                    self._finish(job, "denied")
            self._embed(admitted, index)
            for job in admitted:
                executor = self._admit(executor, job, index)
        elapsed = time.perf_counter() - start
        self.metrics.decision_latency.observe(elapsed)
        log.info("window %d: %d requests decided in %.3f s", index, len(jobs), elapsed)
        return executor

    def _embed(self, jobs: list[Job], index: int) -> None:
        """Prompt embeddings of the granted requests (only they touch the cache)."""
        if not self.cache.enabled or not jobs:
            return
        try:
            for job, vector in zip(jobs, self.embedder.encode([j.request.prompt for j in jobs])):
                job.embedding = vector
        except Exception as err:  # a broken embedder must not take the window down: no cache this time
            log.exception("prompt embedding failed; window %d runs without the cache: %s", index, err)
            for job in jobs:
                job.embedding = None

    def _admit(self, executor, job: Job, index: int):
        steps, offloaded = job.steps, job.steps - job.split
        start = None
        if self.cache.enabled and job.embedding is not None:
            reusable = self.config.reusable_steps(steps)
            reach = min(reusable, offloaded)
            hit = self.cache.lookup(job.embedding, steps, self.latent_shape, reach, reusable)
            if hit is not None:
                start, job.cache_hit_step = hit.entry.state, hit.step
                self.metrics.cache_hits.inc()
            else:
                self.metrics.cache_misses.inc()
            job.capture_steps = set(range(job.cache_hit_step + 1, reach + 1))
        try:
            executor.add(job.id, job.request, job.split, start)
        except Exception as err:
            self._mark_decided(job, index)
            self._finish(job, "failed", f"edge could not start: {err}")
            return executor
        job.status = "running"
        self.metrics.grants.inc()
        self._mark_decided(job, index)
        return executor

    def _step(self, executor):
        from edgediff.runtime.executor import BatchedExecutor
        from edgediff.runtime.payload import encode_latent

        batch = len(executor)
        self.metrics.in_flight.set(batch)
        start = time.perf_counter()
        try:
            left = executor.step()
        except Exception as err:  # fail this batch's members, keep serving
            log.exception("edge step failed")
            for key in executor.active:
                job = self.get(key)
                if job is not None:
                    self._finish(job, "failed", f"edge step failed: {type(err).__name__}: {err}")
            return BatchedExecutor(self.model)
        elapsed = time.perf_counter() - start
        if batch:
            self.stats.steps += 1
            self.stats.member_steps += batch
            self.stats.busy_s += elapsed
            self.stats.ideal_s += self.edge_k * batch / self.config.gpus + self.edge_h
            self.metrics.batch_size.observe(batch)
            self.metrics.step_latency.observe(elapsed)
        if self.cache.enabled:
            try:
                for key in executor.active:
                    self._capture(self.get(key), executor.state(key))
            except Exception:  # a cache failure costs reuse, never a request
                log.exception("latent cache insert failed")
        for key, state in left:
            job = self.get(key)
            if job is None or job.terminal:
                continue
            try:
                self._capture(job, state)
                job.payload = encode_latent(state)
                self._finish(job, "done")
            except Exception as err:
                log.exception("request %s failed after an edge step", key)
                self._finish(job, "failed", f"edge result failed: {type(err).__name__}: {err}")
        return executor

    def _capture(self, job: Job | None, state) -> None:
        """Store ``state`` in the cache if it is one of the member's reusable steps."""
        if job is None or state.steps_done not in job.capture_steps:
            return
        job.capture_steps.discard(state.steps_done)
        if self.cache.insert(job.embedding, state, state.steps_done, job.request.prompt):
            self.metrics.cache_bytes.set(self.cache.bytes_used)
            self.metrics.cache_entries.set(len(self.cache))

    # ------------------------------------------------------------------ state changes
    def _signal(self, event: asyncio.Event | None) -> None:
        if event is None or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed (shutdown): nobody is waiting any more
            pass

    def _mark_decided(self, job: Job, index: int) -> None:
        job.window = index
        job.decided_at = time.perf_counter()
        job.decided.set()
        self._signal(job.async_decided)

    def _finish(self, job: Job, status: str, reason: str | None = None) -> None:
        with self._cond:
            if job.terminal:
                return
            job.status, job.reason = status, reason
            job.finished_at = time.perf_counter()
            self.stats.terminal[status] += 1
        self.metrics.requests.labels(status).inc()
        if status == "failed":
            log.warning("request %s failed: %s", job.id, reason)
        if self._journal is not None:
            record = {"id": job.id, "status": status, "reason": reason, "window": job.window, "split": job.split}
            self._journal.write(json.dumps(record) + "\n")
        if not job.decided.is_set():
            job.decided.set()
            self._signal(job.async_decided)
        job.finished.set()
        self._signal(job.async_finished)

    def info(self) -> dict:
        cfg = self.config
        return {
            "model": None if self.model is None else self.model.name,
            "policy": cfg.policy,
            "window_s": cfg.window_s,
            "gpus": cfg.gpus,
            "b_max": cfg.b_max,
            "edge_profile": {"k": self.edge_k, "h": self.edge_h},
            "intermediate_bits": self.intermediate_bits,
            "cache": {
                "capacity_bytes": self.cache.capacity_bytes,
                "bytes": self.cache.bytes_used,
                "entries": len(self.cache),
                "eviction": cfg.cache_eviction,
                "embedder": None if self.embedder is None else getattr(self.embedder, "name", "custom"),
            },
            "stats": {
                "windows": self.stats.windows,
                "steps": self.stats.steps,
                "member_steps": self.stats.member_steps,
                "busy_s": self.stats.busy_s,
                "ideal_s": self.stats.ideal_s,
                "accepted": self.stats.accepted,
                "terminal": dict(self.stats.terminal),
                "queued": len(self._queue),
            },
        }
