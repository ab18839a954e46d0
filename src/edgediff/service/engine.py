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
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from edgediff.service.config import ServiceConfig
from edgediff.service.denoiser import EdgeDenoiser, name_os_thread
from edgediff.service.job import Job, JobSnapshot, RestoredJob
from edgediff.service.journal import LOST, Journal, replay
from edgediff.service.latent_cache import TenantCaches
from edgediff.service.metrics import ServiceMetrics
from edgediff.service.prep import PromptPrep
from edgediff.service.scheduler import WindowScheduler
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


def _restored_snapshot(record: dict, status: str, reason: str | None) -> JobSnapshot:
    """The status of a request of an earlier run from its journal ``record``."""
    steps, split = int(record.get("steps") or 0), record.get("split")
    split = split if isinstance(split, int) and not isinstance(split, bool) else None
    granted = None if split is None else split < steps
    window = record.get("window")
    return JobSnapshot(record["id"], steps, 0.0, status, window, granted, split, reason=reason)


class EdgeBatch:
    """The runtime's batched executor as the window scheduler's executor, counting the steps
    it launched (a fresh executor takes over after a step failed as a whole)."""

    def __init__(self, model):
        from edgediff.runtime.executor import BatchedExecutor

        self.model, self.executor, self.steps = model, BatchedExecutor(model), 0

    def __len__(self) -> int:
        return len(self.executor)

    def add(self, job: Job, split: int, start) -> None:
        self.executor.add(job.id, job.request, split, start, conditioning=job.conditioning)

    def reset(self) -> None:
        from edgediff.runtime.executor import BatchedExecutor

        self.executor = BatchedExecutor(self.model)


class EdgeEngine:
    """The edge: ``start()``, ``submit(body) -> Job``, ``get(id)``, ``stop()``.

    Complete when constructed: the journal replayed, the model loaded (or ``model`` given),
    the edge calibrated (unless ``config.edge_profile``), the embedder loaded when the cache
    is on (or ``embedder`` given). ``site`` names the engine as one site behind a front door
    (:mod:`edgediff.service.cluster`): its request ids start with ``<site>-`` and a request
    naming another site is refused. What a window decides is :mod:`edgediff.service.scheduler`'s;
    this class is the threads and I/O around it.
    """

    def __init__(
        self,
        config: ServiceConfig,
        model=None,
        embedder=None,
        metrics: ServiceMetrics | None = None,
        site: str | None = None,
    ):
        from edgediff.service.window import window_policy

        self.config, self.site = config, site
        self._id_prefix = "" if site is None else f"{site}-"
        self.metrics = metrics or ServiceMetrics()
        self.stats = EdgeStats()
        self.board = StatusBoard(config.b_max)
        self.caches = TenantCaches(config, self.metrics, self.board)
        self.cache = self.caches.first  # the only one, or the first tenant's
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._closing = self._abort = False
        self._thread: threading.Thread | None = None
        self._denoiser_thread: ThreadPoolExecutor | None = None  # runs each step's batched denoiser call
        self._at_close: list[Job] = []  # the jobs not yet terminal when the drain began
        self._journal = None
        if config.journal is not None:  # before the model: a bad path fails fast
            restored = replay(config.journal, keep=config.record_limit)
            self._journal = Journal(config.journal, fsync=config.journal_fsync)
            self._restore(restored)
        try:
            self.denoiser = EdgeDenoiser(config, self.metrics, model)
            if self.cache.enabled and embedder is None:
                from edgediff.service.embedding import load_prompt_embedder

                embedder = load_prompt_embedder()
        except BaseException:
            if self._journal is not None:
                self._journal.close()
            raise
        self.embedder = embedder
        self.caches.latent_shape = self.denoiser.latent_shape
        self.prep = PromptPrep(self.model.backend, embedder if self.cache.enabled else None)
        self.batch = EdgeBatch(self.model)
        self._since = time.perf_counter()  # the engine thread's last look at the window clock (reset at start)
        self.scheduler = WindowScheduler(
            config,
            window_policy(config),
            self.batch,
            self.caches if self.cache.enabled else None,
            edge_profile=(self.edge_k, self.edge_h),
            intermediate_bits=self.intermediate_bits,
            phase=self._since,
        )
        log.info(
            "edge ready: model %s, L(b) = %.4g b + %.4g s, policy %s, window %.3g s, cache %d bytes",
            self.model.name,
            self.edge_k,
            self.edge_h,
            config.policy,
            config.window_s,
            self.cache.capacity_bytes,
        )

    # the denoiser's and the scheduler's parts, by the names the service's other modules read
    model = property(lambda self: self.denoiser.model)
    pool = property(lambda self: self.denoiser.pool)
    edge_k = property(lambda self: self.denoiser.k)
    edge_h = property(lambda self: self.denoiser.h)
    intermediate_bits = property(lambda self: self.denoiser.intermediate_bits)
    latent_shape = property(lambda self: self.denoiser.latent_shape)
    batch_members = property(lambda self: len(self.batch))

    @property
    def policy(self):
        return self.scheduler.policy

    @policy.setter
    def policy(self, policy) -> None:  # read at the next window
        self.scheduler.policy = policy

    def live_gpus(self) -> int:
        return self.denoiser.live_gpus()

    def workers_info(self) -> dict:
        return self.denoiser.workers_info()

    def cache_usage(self) -> tuple[int, int]:
        return self.caches.usage()

    # ------------------------------------------------------------------ lifecycle
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the prep, denoiser and engine threads (``loop``: where waiting clients are told)."""
        self._loop = loop
        self.scheduler.phase = self._since = time.perf_counter()  # the window clock starts now
        self.prep.start()
        self._denoiser_thread = ThreadPoolExecutor(1, thread_name_prefix="edgediff-step", initializer=name_os_thread)
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
                self.abort()
                self._thread.join()
        self.prep.stop()  # after the engine thread: its last windows wait on this work
        if self._denoiser_thread is not None:
            self._denoiser_thread.shutdown(wait=True)  # a step the engine thread left running ends first
        self.denoiser.close()
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
        self.model.check_steps(body.steps)  # RequestError naming steps: the model's scheduler cannot run them
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
            job = Job(self._id_prefix + uuid.uuid4().hex, body, request, k, h, time.perf_counter(), tenant=tenant)
            if not self.scheduler.submit(job):
                self.metrics.rejected.labels("queue_full").inc()
                raise QueueFull(max(1, math.ceil(self.config.window_s)))
            if self._loop is not None:
                job.async_decided, job.async_finished = asyncio.Event(), asyncio.Event()
            journal = self._journal
            if journal is not None:  # written ahead, before the job can run or finish
                journal.accepted(job.id, job.steps, tenant)
            self._jobs[job.id] = job
            self.stats.accepted += 1
            self._prune()
            self.metrics.accepted.inc()
            self.metrics.queue_depth.set(len(self.scheduler.queue))
        if journal is not None:  # on the disk before the client hears of it (fsync policy)
            journal.sync()
        self.prep.submit(job)
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
        """The engine loop. Each turn looks at the window clock, launches the batch's step on
        the denoiser thread and, while it runs, does the host-side work: the previous step's
        hand-off (cache stores, payload encoding, answers), a due window's decision (the
        admitted join the next step), the status thumbnail. Then it completes the step."""
        name_os_thread()
        scheduler, batch = self.scheduler, self.batch
        handoff: list = []  # the last step's (job, step, state, leaving), handed off during the next
        while True:
            now = time.perf_counter()
            with self._cond:
                if self._abort:
                    break
                closing, window = self._closing, None
                if scheduler.due(now, self._since) or (closing and scheduler.queue):
                    window = scheduler.take(now, self._since)
                    self.metrics.queue_depth.set(0)
                elif batch.executor.idle and not handoff:
                    if closing:
                        break
                    self._cond.wait(timeout=scheduler.window_end_after(self._since) - now)
                    self._since = now
                    continue
                self._since = now
            cpu = time.thread_time()
            pending = None if batch.executor.idle else self._launch(batch)
            handoff = self._hand_off(handoff)
            if window is not None:
                self._decide(window)
            self._thumbnail()
            if pending is not None:
                handoff = self._complete(batch, pending)
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

    def _decide(self, window) -> None:
        """Decide ``window`` (the scheduler) and publish each request's answer."""
        index = window.index
        self.stats.windows += 1
        self.metrics.windows.inc()
        start = time.perf_counter()
        with self._timed("embed"):  # mostly done ahead on the prep thread: what is left, or the wait for it
            self.prep.wait(window.jobs)
        with self._timed("decide"):
            gpus = self.live_gpus()
            decided = self.scheduler.decide(window, gpus)
        for err in decided.policy_errors:  # e.g. a learned policy that cannot take this instance
            log.error("window %d: policy %s failed", index, self.config.policy, exc_info=err)
        with self._timed("admit"):
            for answer in decided.answers:
                if answer.status == "running":
                    self.metrics.grants.inc()
                self._mark_decided(answer.job, index, answer.status, answer.reason, **answer.decision())
        elapsed = time.perf_counter() - start
        self.metrics.decision_latency.observe(elapsed)
        self.board.window(index, window.jobs, elapsed)
        log.info("window %d: %d requests decided in %.3f s (G = %d)", index, len(window.jobs), elapsed, gpus)

    def _launch(self, batch: EdgeBatch):
        """Start one batched step: the members' inputs here, the denoiser call on the denoiser
        thread (so the host-side work of :meth:`_run` overlaps it)."""
        members = len(batch)
        self.metrics.in_flight.set(members)
        with self._timed("step"):
            pending = batch.executor.launch(self._denoiser_thread)
        batch.steps += 1
        return pending, members, time.perf_counter()

    def _complete(self, batch: EdgeBatch, launched) -> list:
        """Finish the launched step; returns its hand-off: the outputs due for the cache (the
        states taken now: the next step moves on) and each member that left (reached its
        split). The executor fails only the members whose own work raised; anything else
        failing here fails every member still in the batch, including those that had already
        left in this step or were waiting to, and a fresh executor takes over."""
        pending, members, start = launched
        try:
            with self._timed("step"):
                left = batch.executor.complete(pending)
            failed = batch.executor.pop_failed()
        except Exception as err:  # not attributable to a member: fail them all, keep serving
            log.exception("edge step failed")
            for job in self.scheduler.drop(list(self.scheduler.running)):
                self._finish(job, "failed", f"edge step failed: {type(err).__name__}: {err}")
            batch.reset()
            return []
        elapsed = time.perf_counter() - start
        if members:
            self.stats.steps += 1
            self.stats.member_steps += members
            self.stats.busy_s += elapsed
            self.stats.ideal_s += self.denoiser.ideal_step_s(members)
            self.metrics.batch_size.observe(members)
            self.metrics.step_latency.observe(elapsed)
            self.board.step(members, elapsed)
        for job in self.scheduler.drop([key for key, _ in failed]):
            self._finish(job, "failed", f"edge step failed: {dict(failed)[job.id]}")
        states = dict(left)
        handoff = []
        try:
            with self._timed("capture"):
                for job, step in self.scheduler.step_done(batch.steps, left=list(states)):
                    state = states.get(job.id) or batch.executor.state(job.id)
                    if state.steps_done == step:
                        handoff.append((job, step, state, False))
        except Exception:  # a cache failure costs reuse, never a request
            log.exception("latent cache capture failed")
        for key, state in left:
            job = self._get(key)
            if job is not None and not job.terminal:
                handoff.append((job, None, state, True))
        return handoff

    def _hand_off(self, handoff: list) -> list:
        """A step's hand-off (:meth:`_complete`): store the due outputs in the cache, and answer
        each member that left with its latent. Returns an empty hand-off."""
        from edgediff.runtime.payload import encode_latent

        for job, step, state, leaving in handoff:
            if not leaving:
                try:
                    with self._timed("capture"):
                        self.scheduler.store(job, step, state)
                except Exception:  # a cache failure costs reuse, never a request
                    log.exception("latent cache insert failed")
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
        wait = max(0.0, self.scheduler.window_end_after(self._since) - time.perf_counter())
        with self._cond:
            queued = len(self.scheduler.queue)
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

    def info(self) -> dict:
        cfg = self.config
        used, entries = self.cache_usage()
        return {
            "model": self.model.name,
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
                "capacity_bytes": self.caches.capacity_bytes,
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
                "queued": len(self.scheduler.queue),
            },
        }
