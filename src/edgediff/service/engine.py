"""The edge engine: the threads and I/O around the window scheduler.

What a window decides is :mod:`edgediff.service.scheduler`'s. The engine thread looks at the
window clock between batched steps, launches each step on a denoiser thread and, while it
runs, hands off the previous step (cache stores, each leaving member's latent published) and
has a due window decided; a prep thread does the prompt work as requests arrive. Status
changes are published by :mod:`edgediff.service.publish`; acceptances are journaled ahead.
Every accepted request ends in exactly one terminal state; ``stop`` drains.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from edgediff.service import reporting
from edgediff.service.config import ServiceConfig
from edgediff.service.denoiser import EdgeBatch, EdgeDenoiser, name_os_thread
from edgediff.service.job import Job, JobTable, QueueFull, ShuttingDown, restore_jobs
from edgediff.service.journal import Journal, replay
from edgediff.service.latent_cache import TenantCaches
from edgediff.service.metrics import EdgeStats, ServiceMetrics
from edgediff.service.prep import PromptPrep
from edgediff.service.publish import Publisher
from edgediff.service.scheduler import WindowScheduler
from edgediff.service.schemas import SubmitRequest
from edgediff.service.status import StatusBoard
from edgediff.service.tenants import OPERATOR, OverQuota, TenantLedger

log = logging.getLogger(__name__)


class EdgeEngine:
    """The edge: ``start()``, ``submit(body) -> Job``, ``get(id)``, ``stop()``.

    Complete when constructed: the journal replayed, the model loaded (or ``model`` given),
    the edge calibrated (unless ``config.edge_profile``), the embedder loaded when the cache
    is on (or ``embedder`` given). ``site`` names the engine as one site behind a front door
    (:mod:`edgediff.service.cluster`): its request ids start with ``<site>-`` and a request
    naming another site is refused (what a window decides: :mod:`edgediff.service.scheduler`).
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

        policy = window_policy(config.site)  # a bad policy or checkpoint fails before anything starts
        self.config, self.site = config, site
        self._id_prefix = "" if site is None else f"{site}-"
        self.metrics = metrics or ServiceMetrics(config.tenants)
        self.stats = EdgeStats()
        self.ledger = TenantLedger(config.tenants, config.quotas)  # each tenant's own counts and quotas
        self.board = StatusBoard(config.b_max, config.tenants)
        self.caches = TenantCaches(config, self.metrics, self.board, self.ledger)
        self.cache = self.caches.first  # the only one, or the first tenant's
        self._cond = threading.Condition()
        self.publish = Publisher(self._cond, self.stats, self.metrics, self.board, self.ledger)
        self._jobs = JobTable(config.record_limit)
        self._closing = self._abort = False
        self._thread: threading.Thread | None = None
        self._denoiser_thread: ThreadPoolExecutor | None = None  # runs each step's batched denoiser call
        self._at_close: list[Job] = []  # the jobs not yet terminal when the drain began
        self._journal: Journal | None = None
        if config.journal is not None:  # before the model: a bad path fails fast
            restored = replay(config.journal, keep=config.record_limit)
            self._journal = self.publish.journal = Journal(config.journal, fsync=config.journal_fsync)
            for restored_job in restore_jobs(restored, self._journal, self.metrics, config.journal):
                self._jobs.add(restored_job)
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
        self.prep = PromptPrep(self.model.backend, embedder if self.cache.enabled else None, config.tenants)
        self.batch = EdgeBatch(self.model)
        self._since = time.perf_counter()  # the engine thread's last look at the window clock (reset at start)
        self.scheduler = WindowScheduler(
            config.site,
            policy,
            self.batch,
            self.caches if self.cache.enabled else None,
            edge_profile=(self.edge_k, self.edge_h),
            intermediate_bits=self.intermediate_bits,
            phase=self._since,
        )
        ready = (self.model.name, self.edge_k, self.edge_h, config.policy, config.window_s, self.cache.capacity_bytes)
        log.info("edge ready: model %s, L(b) = %.4g b + %.4g s, policy %s, window %.3g s, cache %d bytes", *ready)

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

    def tenant_load(self, tenant: str | None) -> tuple[int, int]:
        """``tenant``'s requests queued and its members in the batch."""
        with self._cond:
            queued = sum(job.tenant == tenant for job in self.scheduler.queue)
            members = sum(job.tenant == tenant for job in list(self.scheduler.running.values()))
        return queued, members

    def queue_state(self) -> tuple[int, float]:
        """Requests queued, and seconds to the next window's decision."""
        with self._cond:
            queued = len(self.scheduler.queue)
        return queued, max(0.0, self.scheduler.window_end_after(self._since) - time.perf_counter())

    # ------------------------------------------------------------------ lifecycle
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the prep, denoiser and engine threads (``loop``: where waiting clients are told)."""
        self.publish.loop = loop
        self.scheduler.phase = self._since = time.perf_counter()  # the window clock starts now
        self.prep.start()
        self._denoiser_thread = ThreadPoolExecutor(1, thread_name_prefix="edgediff-step", initializer=name_os_thread)
        self._thread = threading.Thread(target=self._run, name="edgediff-engine", daemon=True)
        self._thread.start()

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting; with ``drain`` decide every queued request now and run the batch to
        empty (at most ``timeout``, default ``config.drain_timeout_s``); whatever is left then
        fails with reason ``shutdown``."""
        with self._cond:
            if not self._closing:
                self._at_close = self._jobs.unfinished()
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
            leftovers = self._jobs.unfinished()
        for job in leftovers:
            self.publish.finish(job, "failed", "shutdown: the service stopped before this request finished")
        if self._journal is not None:
            self._journal.close()
            self._journal = self.publish.journal = None

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

    closing = property(lambda self: self._closing)

    # ------------------------------------------------------------------ requests
    def _latent_area(self, request) -> float:
        """``request``'s latent area over the model's native one (what the window scales costs by)."""
        native = self.model.image_size
        height, width = request.image_shape(native)
        return height * width / native**2

    def submit(self, body: SubmitRequest, tenant: str | None = None) -> Job:
        """Queue a validated request of ``tenant`` for the next window; its first image's job
        (:meth:`submit_images` returns all of them)."""
        return self.submit_images(body, tenant)[0]

    def submit_images(self, body: SubmitRequest, tenant: str | None = None) -> list[Job]:
        """Queue a validated request of ``tenant`` for the next window: one job per image
        (``body.images``, seeds ``seed``, ``seed + 1``, ... as in-process ``generate
        --images``), all accepted or none (raises QueueFull / ShuttingDown / OverQuota for
        all; RequestError naming the field for steps, a size or a scheduler the model cannot
        run, or more images than the queue or the tenant's quota could ever hold)."""
        from edgediff.runtime.request import GenerationRequest, RequestError
        from edgediff.runtime.split import image_requests

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
            **body.generation_options(),
        )
        from edgediff.runtime.executor import check_request, request_calls

        if body.generation_options():
            check_request(self.model, request)  # RequestError naming the field: a size or scheduler it cannot run
        count = body.images
        if count > self.config.queue_limit:  # would never fit: a 503 would be retried in vain
            raise RequestError(f"images: {count} images exceed this edge's queue limit of {self.config.queue_limit}")
        try:
            requests = image_requests(request, count)
        except RequestError as err:
            raise RequestError(f"images: {err}") from None
        calls = request_calls(self.model, request)  # N: what the edge plans and runs in
        area = self._latent_area(request)
        with self._cond:
            now = time.perf_counter()
            if self._closing:
                self._refused(tenant, "shutting_down", count)
                raise ShuttingDown("the service is shutting down")
            try:
                self.ledger.check(tenant, now, max(1, math.ceil(self.config.window_s)), count)
            except OverQuota as err:
                self._refused(tenant, err.reason, count)
                raise
            jobs = [
                Job(self._id_prefix + uuid.uuid4().hex, body, one, k, h, now, calls, tenant=tenant, area=area)
                for one in requests
            ]
            if not self.scheduler.submit(*jobs):  # all or none
                self._refused(tenant, "queue_full", count)
                raise QueueFull(max(1, math.ceil(self.config.window_s)))
            journal = self._journal
            for job in jobs:
                if self.publish.loop is not None:
                    job.async_decided, job.async_finished = asyncio.Event(), asyncio.Event()
                if journal is not None:  # written ahead, before the job can run or finish
                    journal.accepted(job.id, job.request.steps, tenant, job.calls)
                self._jobs.add(job)
                self.metrics.admitted(tenant)
            self.stats.accepted += count
            self.ledger.accepted(tenant, now, count)
            self.metrics.queue_depth.set(len(self.scheduler.queue))
        if journal is not None:  # on the disk before the client hears of it (fsync policy)
            journal.sync()
        for job in jobs:
            self.prep.submit(job)
        return jobs

    def _refused(self, tenant: str | None, reason: str, count: int = 1) -> None:
        """``count`` refused: each image counts, as each accepted one does."""
        self.metrics.refused(tenant, reason, count)
        self.ledger.rejected(tenant, reason, count)

    def get(self, job_id: str, tenant: str | None = None) -> Job | None:
        """The job ``job_id``; with API keys only if ``tenant`` sent it or is the operator
        (else as unknown)."""
        job = self._get(job_id)
        if job is not None and self.config.api_keys is not None and tenant not in (job.tenant, OPERATOR):
            return None
        return job

    def _get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def measured(self, job_id: str, latency_s: float, tenant: str | None = None) -> bool | None:
        """The device's report of request ``job_id``'s total latency (None: unknown id; False:
        not a request the edge finished, or already reported)."""
        job = self.get(job_id, tenant)
        if job is None or not isinstance(job, Job):
            return None
        return self.publish.measured(job, latency_s)

    def jobs(self) -> list[Job]:
        with self._cond:
            return self._jobs.all()

    # ------------------------------------------------------------------ the engine thread
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
            self.publish.finish(job, "failed", "shutdown: drain did not finish in time")
        self.metrics.in_flight.set(0)

    def _decide(self, window) -> None:
        """Decide ``window`` (the scheduler) and publish each request's answer."""
        index = window.index
        self.stats.windows += 1
        self.metrics.windows.inc()
        start = time.perf_counter()
        with self.stats.timed("embed"):  # mostly done ahead on the prep thread: what is left, or the wait for it
            self.prep.wait(window.jobs)
        with self.stats.timed("decide"):
            gpus = self.live_gpus()
            decided = self.scheduler.decide(window, gpus)
        for err in decided.policy_errors:  # e.g. a learned policy that cannot take this instance
            log.error("window %d: policy %s failed", index, self.config.policy, exc_info=err)
        indices = {}  # with tenants, a tenant's requests carry its own window number
        if self.config.api_keys is not None:
            with self._cond:
                for tenant in {job.tenant for job in window.jobs}:
                    counts = self.ledger.of(tenant)
                    if counts is not None:
                        indices[tenant] = counts.windows
                        counts.windows += 1
        with self.stats.timed("admit"):
            for answer in decided.answers:
                if answer.status == "running":
                    self.metrics.grants.inc()
                number = indices.get(answer.job.tenant, index)
                self.publish.decided(answer.job, number, answer.status, answer.reason, **answer.decision())
        elapsed = time.perf_counter() - start
        self.metrics.decision_latency.observe(elapsed)
        self.board.window(index, window.jobs, elapsed, indices)
        log.info("window %d: %d requests decided in %.3f s (G = %d)", index, len(window.jobs), elapsed, gpus)

    def _launch(self, batch: EdgeBatch):
        """Start one batched step: the members' inputs here, the denoiser call on the denoiser
        thread (so the host-side work of :meth:`_run` overlaps it)."""
        members = len(batch)
        self.metrics.in_flight.set(members)
        tenants: dict = {}  # members by tenant (with tenants): each tenant's share of the step
        if self.config.api_keys is not None:
            for job in self.scheduler.running.values():
                tenants[job.tenant] = tenants.get(job.tenant, 0) + 1
        with self.stats.timed("step"):
            pending = batch.executor.launch(self._denoiser_thread)
        batch.steps += 1
        batch.in_flight = members
        return pending, members, time.perf_counter(), tenants

    def _complete(self, batch: EdgeBatch, launched) -> list:
        """Finish the launched step; returns its hand-off: the outputs due for the cache (states
        taken now: the next step moves on) and the members that left. A failure no member's own
        fails every member still running, and a fresh executor takes over."""
        pending, members, start, tenants = launched
        batch.in_flight = 0
        try:
            with self.stats.timed("step"):
                left = batch.executor.complete(pending)
            failed = batch.executor.pop_failed()
        except Exception as err:  # not attributable to a member: fail them all, keep serving
            log.exception("edge step failed")
            for job in self.scheduler.drop(list(self.scheduler.running)):
                self.publish.finish(job, "failed", f"edge step failed: {type(err).__name__}: {err}")
            batch.reset()
            return []
        elapsed = time.perf_counter() - start
        if members:
            self.stats.steps += 1
            self.stats.member_steps += members
            self.stats.busy_s += elapsed
            self.stats.ideal_s += self.denoiser.ideal_step_s(members)
            self.scheduler.observe_step(members, elapsed, self.live_gpus())  # the pace the next windows plan with
            self.metrics.step_scale.set(self.scheduler.step_scale)
            self.metrics.batch_size.observe(members)
            self.metrics.step_latency.observe(elapsed)
            self.board.step(members, elapsed, tenants)
            with self._cond:
                for tenant, count in tenants.items():
                    counts = self.ledger.of(tenant)
                    if counts is not None:
                        counts.steps += 1
                        counts.member_steps += count
                        counts.busy_s += elapsed
        for job in self.scheduler.drop([key for key, _ in failed]):
            self.publish.finish(job, "failed", f"edge step failed: {dict(failed)[job.id]}")
        states = dict(left)
        handoff: list[tuple[Job, int | None, object, bool]] = []
        try:
            with self.stats.timed("capture"):
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
                    with self.stats.timed("capture"):
                        self.scheduler.store(job, step, state)
                except Exception:  # a cache failure costs reuse, never a request
                    log.exception("latent cache insert failed")
                continue
            try:
                with self.stats.timed("encode"):
                    self.publish.finish(job, "done", payload=encode_latent(state))
                self.board.handoff(state)
            except Exception as err:
                log.exception("request %s failed after an edge step", job.id)
                self.publish.finish(job, "failed", f"edge result failed: {type(err).__name__}: {err}")
        return []

    def _thumbnail(self) -> None:
        """The status page's newest thumbnail (rate-limited by the board); never fatal."""
        try:
            with self.stats.timed("thumbnail"):
                self.board.render_thumbnail(self.model)
        except Exception:
            log.exception("status thumbnail failed")

    def load(self) -> dict:
        return reporting.load(self)

    def info(self, tenant: str | None = None) -> dict:
        return reporting.info(self, tenant)
