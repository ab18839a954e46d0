"""The discrete-event simulation of edge sites running the service's own decision code.

Each site is what ``edgediff serve`` runs, with time and the model replaced: its windows end
every ``K`` seconds on its own clock; at the first batched step end at or after a window's
end (at the end itself when the batch is empty) the queued requests are decided by
:func:`edgediff.service.window.decide_window` with the site's policy from the registry, as
in the engine; denied requests are answered at once, granted ones start from the best
usable cache entry (Part B's class-keyed store and eviction rules) and join the running
batch, whose step takes ``L_e(b, G) = k b / G + h`` with ``b`` the members still in it; a
member leaves after its offloaded steps. Requests are routed to the site of least expected
latency (docs/results-twin.md). Everything is deterministic given the arrivals and the seed.
"""

from __future__ import annotations

import heapq
import logging
import math
from array import array

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.store import EdgeCache
from edgediff.service.routing import least_expected_latency, running_work
from edgediff.service.scheduler import EPS, Hit, WindowScheduler
from edgediff.service.window import window_policy
from edgediff.twin.config import Site, TwinConfig, TwinError
from edgediff.twin.records import PROMPT, Records
from edgediff.twin.report import TwinResult
from edgediff.twin.workload import Arrivals

log = logging.getLogger(__name__)

EMBEDDING_BYTES = 384 * 4  # a cached entry holds its prompt's embedding too (the service's MiniLM)


class SimJob:
    """What :func:`decide_window` reads of a request (the engine's ``Job`` has the same names)."""

    __slots__ = ("index", "id", "steps", "k", "h", "alpha", "prompt", "arrived", "cls", "cached_steps")

    def __init__(self, index, steps, k, h, alpha, prompt, arrived, cls):
        self.index, self.id, self.steps = index, str(index), steps
        self.k, self.h, self.alpha, self.prompt, self.arrived, self.cls = k, h, alpha, prompt, arrived, cls
        self.cached_steps = 0


class SimExecutor:
    """The batched executor in simulated time: a heap of members by the step index at which
    they leave; each step takes ``k/G b + h``. Records every constant-batch segment."""

    def __init__(self, k: float, h: float, gpus: int):
        self.k_g, self.h = k / gpus, h
        self.t = 0.0
        self.last_start: float | None = None  # start of the step that ended at t (None: idle at t)
        self.step_index = 0
        self.members: list[tuple[int, int]] = []
        self.pending: list[int] = []  # members added at their split: out with the next step
        self.left_index, self.left_time = array("q"), array("d")
        self.seg_t0, self.seg_t1, self.seg_b = array("d"), array("d"), array("d")
        self.seg_n = array("q")  # each segment's steps
        self.steps = self.member_steps = 0

    def __len__(self) -> int:
        return len(self.members)

    def add(self, index: int, edge_steps: int) -> None:
        if edge_steps <= 0:
            self.pending.append(index)
        else:
            heapq.heappush(self.members, (self.step_index + edge_steps, index))

    def _leave(self, index: int, t: float) -> None:
        self.left_index.append(index)
        self.left_time.append(t)

    def release_pending(self) -> None:
        """Members added already at their split leave now if no step is coming."""
        if self.pending and not self.members:
            for index in self.pending:
                self._leave(index, self.t)
            self.pending = []

    def run_until(self, target: float) -> float:
        """Run steps until the first step end at or after ``target`` (the engine looks at the
        clock between steps); an empty batch idles to ``target``. Returns the time reached."""
        members = self.members
        while members and self.t < target - EPS:
            b = len(members)
            step = self.k_g * b + self.h
            n = members[0][0] - self.step_index
            run = n if target == math.inf else min(n, max(1, math.ceil((target - self.t) / step - EPS)))
            t0 = self.t
            self.t = t0 + run * step
            self.last_start = self.t - step
            self.step_index += run
            self.steps += run
            self.member_steps += run * b
            self.seg_t0.append(t0)
            self.seg_t1.append(self.t)
            self.seg_b.append(b)
            self.seg_n.append(run)
            if self.pending:
                for index in self.pending:
                    self._leave(index, t0 + step)
                self.pending = []
            while members and members[0][0] == self.step_index:
                self._leave(heapq.heappop(members)[1], self.t)
        if not members and self.t < target - EPS:
            self.t, self.last_start = target, None
        return self.t


class SimCache:
    """Part B's class-keyed store (:class:`~edgediff.cache.store.EdgeCache`) as the window
    scheduler's cache: a request's key is its content class, time is the cache's logical
    clock (one tick per use or store), a hit's start state is its depth."""

    def __init__(self, entries: EdgeCache):
        self.entries = entries
        self.clock = 0

    def peek(self, jobs, reusable) -> list[int]:
        depth = self.entries.cached_steps(np.array([job.cls for job in jobs]))
        return depth[np.arange(len(jobs)), reusable].tolist()

    def lookup(self, job: SimJob, reach: int, reusable: int) -> Hit:
        self.clock += 1
        hit = int(self.entries.cached_steps(job.cls)[reach]) if reach > 0 else 0
        if hit:
            self.entries.touch(job.cls, hit, self.clock)
        return Hit(hit, hit)

    def store(self, job: SimJob, step: int, state) -> None:
        self.clock += 1
        self.entries.insert(job.cls, step, self.clock)

    def order(self, job: SimJob) -> int:
        return job.cls


class SimSite:
    """One site: the service's window scheduler around a simulated executor and cache, with
    the site's window clock; this class only says when the scheduler looks (at arrivals and
    at the step ends its events fall on)."""

    def __init__(self, index: int, site: Site, policy, records: Records, arrivals: Arrivals):
        self.index, self.site, self.records = index, site, records
        self.service = svc = site.service
        self.executor = SimExecutor(*site.executed_profile, svc.gpus)
        self.event: float | None = None  # time of the pending decision (None: queue empty)
        self.decided_t, self.decided_n = array("d"), array("q")
        self.router: Router | None = None
        self.failed_windows = 0
        self.first_failure: str | None = None
        self.left_seen = 0  # members out of the executor that the scheduler has been told of
        self.seg_seen = 0  # executor segments whose pace the scheduler has been told of
        self.cache = None
        steps = set(np.unique(arrivals.steps).tolist())
        if svc.cache_bytes > 0:
            if len(steps) != 1:
                raise TwinError("the twin's class-keyed cache takes one step count N per run")
            (N,) = steps
            topic = arrivals.catalog.topic
            cfg = CacheConfig(
                classes=int(topic.size),
                topics=int(topic.max()) + 1,
                steps=N,
                reusable_steps=svc.reusable_steps(N),
                theta_min=svc.theta_min,
                output_bytes=site.intermediate_bits / 8 + EMBEDDING_BYTES,
                capacity_bytes=svc.cache_bytes,
            )
            self.cache = SimCache(EdgeCache(cfg, arrivals.catalog, svc.cache_eviction))
        self.scheduler = WindowScheduler(
            svc,
            policy,
            SimBatch(self.executor),
            self.cache,
            edge_profile=svc.edge_profile,
            intermediate_bits=site.intermediate_bits,
            phase=site.phase_s,
        )

    @property
    def windows(self) -> int:
        return self.scheduler.windows

    @property
    def queued(self) -> int:
        return len(self.scheduler.queue)

    # ------------------------------------------------------------------ when the scheduler looks
    def arrive(self, job: SimJob, t: float, events: list) -> None:
        if not self.scheduler.submit(job):  # 503: the device runs it all
            self.records.reject(job.index, t)
            return
        if self.event is not None:
            self._report()
            return
        if self.site.decide_when_idle and self.executor.run_until(t) <= t + EPS and not self.executor.members:
            self.event = t  # the edge is idle: waiting for the window's end would only add latency
            heapq.heappush(events, (t, self.index))
            self._report()
            return
        clock = self.scheduler
        j = clock.boundary_index(t)
        when = clock.phase + clock.K * (j + 1)
        if j >= 1:  # the last window end may not be consumed yet: a step is running across it
            reached = self.executor.run_until(clock.phase + clock.K * j)
            if reached > t + EPS:
                when = reached
        self.event = when
        heapq.heappush(events, (when, self.index))
        self._report()

    def on_event(self, t: float, events: list) -> None:
        reached = self.executor.run_until(t)
        if reached > t + EPS:  # a step is running across the window's end: decide at its end
            self.event = reached
            heapq.heappush(events, (reached, self.index))
        else:
            self.event = None
            self.decide(reached)
        self._report()

    def _report(self) -> None:
        if self.router is not None:
            self.router.report(self)

    def decide(self, now: float) -> None:
        """The scheduler's look at ``now``, a step end (or the edge idle): the queue's window."""
        ex, rec, scheduler = self.executor, self.records, self.scheduler
        self.sync()
        window = scheduler.take(now, ex.last_start)
        if window is None:
            return
        self.decided_t.append(now)
        self.decided_n.append(len(window.jobs))
        decided = scheduler.decide(window)
        for err in decided.policy_errors:  # summarized once per site at the end of the run
            self.failed_windows += 1
            self.first_failure = self.first_failure or f"at {now:.3f} s: {err}"
        for answer in decided.answers:
            i = answer.job.index
            if answer.status == "failed":
                rec.fail(i, now)
                continue
            granted = answer.status == "running"
            rec.decide(i, self.index, now, granted, answer.split, answer.window_granted, answer.predicted_latency_s)
            if granted:
                rec.hit[i] = answer.cache_hit_step
        ex.release_pending()

    def sync(self) -> None:
        """Tell the scheduler what the executor ran since the last look: the outputs now due
        are stored, the members that left are out of the running set."""
        ex = self.executor
        if self.site.step_profile is not None:  # steps at another pace than decided with: as the engine measures it
            for i in range(self.seg_seen, len(ex.seg_n)):
                seconds = ex.seg_t1[i] - ex.seg_t0[i]
                self.scheduler.observe_step(int(ex.seg_b[i]), seconds, self.service.gpus, ex.seg_n[i])
            self.seg_seen = len(ex.seg_n)
        left = [str(i) for i in ex.left_index[self.left_seen :]]
        self.left_seen = len(ex.left_index)
        for job, step in self.scheduler.step_done(ex.step_index, left):
            self.scheduler.store(job, step, None)


class SimBatch:
    """:class:`SimExecutor` as the window scheduler's executor: a member joins with its edge
    steps after its cache hit's depth."""

    in_flight = 0  # the twin decides between steps: a member added now runs in the next one

    def __init__(self, executor: SimExecutor):
        self.executor = executor

    def __len__(self) -> int:
        return len(self.executor)

    @property
    def steps(self) -> int:
        return self.executor.step_index

    def add(self, job: SimJob, split: int, start) -> None:
        self.executor.add(job.index, job.steps - split - (start or 0))


class Router:
    """The front door: each request goes to the site of least expected latency (the rule of
    :mod:`edgediff.service.routing`, shared with the service's Ray front door), the wait for
    a site's next decision being ``t_next - t``. Vectorized over sites; each site reports
    its state after every change."""

    def __init__(self, sites: list[SimSite]):
        self.sites = sites
        # what the front door knows: each site's calibration
        self.k_g = np.array([s.service.edge_profile[0] / s.service.gpus for s in sites])
        self.h = np.array([s.service.edge_profile[1] for s in sites])
        self.K = np.array([s.scheduler.K for s in sites])
        self.phase = np.array([s.scheduler.phase for s in sites])
        self.limit = np.array([s.service.queue_limit for s in sites])
        self.members = np.zeros(len(sites))
        self.queued = np.zeros(len(sites))
        self.event = np.full(len(sites), np.nan)
        for site in sites:
            site.router = self

    def report(self, site: SimSite) -> None:
        s = site.index
        self.members[s] = len(site.executor.members)
        self.queued[s] = site.queued
        self.event[s] = np.nan if site.event is None else site.event

    def route(self, t: float, offloaded: int) -> int:
        grid = self.phase + self.K * np.maximum(1, np.floor((t - self.phase) / self.K + EPS) + 1)
        wait = np.where(np.isnan(self.event), grid, self.event) - t
        work = [
            running_work([at - s.executor.step_index for at, _ in s.executor.members], offloaded) for s in self.sites
        ]
        return least_expected_latency(wait, offloaded, self.k_g, self.h, self.members, self.queued, self.limit, work)


def simulate(config: TwinConfig, arrivals: Arrivals, *, progress: bool = False):
    """Run ``arrivals`` through ``config.sites``; returns a :class:`~edgediff.twin.report.TwinResult`."""
    n = len(arrivals)
    records = Records.empty(n, arrivals.steps)
    policies = {}
    sites = []
    for s, site in enumerate(config.sites):
        svc = site.service
        key = (svc.policy, svc.seed, repr(sorted(svc.policy_options.items())))
        if key not in policies:
            policies[key] = window_policy(svc)
        sites.append(SimSite(s, site, policies[key], records, arrivals))
    events: list[tuple[float, int]] = []
    times, steps = arrivals.time, arrivals.steps
    k, h, alpha, cls = arrivals.k, arrivals.h, arrivals.alpha, arrivals.cls
    prompts = arrivals.prompts
    router = None if len(sites) == 1 else Router(sites)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="req", desc="simulate", disable=None, mininterval=0.5)
    for i in range(n):
        t = float(times[i])
        while events and events[0][0] <= t:
            when, s = heapq.heappop(events)
            sites[s].on_event(when, events)
        N = int(steps[i])
        target = sites[0] if router is None else sites[router.route(t, N - sites[0].service.n_hat(N))]
        job = SimJob(
            i, N, float(k[i]), float(h[i]), float(alpha[i]), PROMPT if prompts is None else prompts[i], t, int(cls[i])
        )
        records.site[i] = target.index
        target.arrive(job, t, events)
        if bar is not None and i % 1000 == 999:
            bar.update(1000)
    while events:
        when, s = heapq.heappop(events)
        sites[s].on_event(when, events)
    for sim in sites:
        if sim.failed_windows:
            log.warning(
                "site %s: policy %s failed on %d window(s), their requests failed; first %s",
                sim.site.name, sim.service.policy, sim.failed_windows, sim.first_failure,
            )  # fmt: skip
        ex = sim.executor
        ex.run_until(math.inf)
        ex.release_pending()
        records.answered_at[np.frombuffer(ex.left_index, np.int64)] = np.frombuffer(ex.left_time, np.float64)
    if bar is not None:
        bar.update(n - bar.n)
        bar.close()
    return TwinResult.build(config, arrivals, records, sites)
