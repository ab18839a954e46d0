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
from dataclasses import dataclass

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.store import EdgeCache
from edgediff.service.routing import least_expected_latency
from edgediff.service.window import decide_window, window_policy
from edgediff.twin.config import Site, TwinConfig, TwinError
from edgediff.twin.workload import Arrivals

log = logging.getLogger(__name__)

EPS = 1e-9  # seconds: times closer than this are the same instant
EMBEDDING_BYTES = 384 * 4  # a cached entry holds its prompt's embedding too (the service's MiniLM)
PROMPT = " " * 27  # a class-keyed request's prompt: the paper's 216 bits

# request outcomes
DENIED, GRANTED, FAILED, REJECTED = 0, 1, 2, 3
OUTCOMES = ("denied", "granted", "failed", "rejected")


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
            if self.pending:
                for index in self.pending:
                    self._leave(index, t0 + step)
                self.pending = []
            while members and members[0][0] == self.step_index:
                self._leave(heapq.heappop(members)[1], self.t)
        if not members and self.t < target - EPS:
            self.t, self.last_start = target, None
        return self.t


class SimSite:
    """One site: its queue, window clock, executor, cache and policy."""

    def __init__(self, index: int, site: Site, policy, records: Records, arrivals: Arrivals):
        self.index, self.site, self.policy, self.records = index, site, policy, records
        self.service = svc = site.service
        self.K, self.phase = svc.window_s, site.phase_s
        self.executor = SimExecutor(*site.executed_profile, svc.gpus)
        self.queue: list[SimJob] = []
        self.event: float | None = None  # time of the pending decision (None: queue empty)
        self.windows = 0
        self.decided_t, self.decided_n = array("d"), array("q")
        self.cache = None
        self.captures: list[tuple[int, int, int]] = []  # (step index due, class, step m)
        self.clock = 0  # the cache's logical time
        self.lookups = self.hits = 0
        self.router: Router | None = None
        self.failed_windows, self.first_failure = 0, None
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
            self.cache = EdgeCache(cfg, arrivals.catalog, svc.cache_eviction)

    # ------------------------------------------------------------------ the window clock
    def first_boundary_index(self, t: float) -> int:
        """``j`` of the last window end ``phase + j K`` at or before ``t`` (the first is j = 1)."""
        return math.floor((t - self.phase) / self.K + EPS)

    def next_decision(self, t: float) -> float:
        """When a request arriving at ``t`` would be decided if no step ran past a window end."""
        if self.event is not None:
            return self.event
        return self.phase + self.K * max(1, self.first_boundary_index(t) + 1)

    def arrive(self, job: SimJob, t: float, events: list) -> None:
        if len(self.queue) >= self.service.queue_limit:  # 503: the device runs it all
            self.records.reject(job.index, t)
            return
        self.queue.append(job)
        if self.event is not None:
            self._report()
            return
        if self.site.decide_when_idle and self.executor.run_until(t) <= t + EPS and not self.executor.members:
            self.event = t  # the edge is idle: waiting for the window's end would only add latency
            heapq.heappush(events, (t, self.index))
            self._report()
            return
        j = self.first_boundary_index(t)
        when = self.phase + self.K * (j + 1)
        if j >= 1:  # the last window end may not be consumed yet: a step is running across it
            reached = self.executor.run_until(self.phase + self.K * j)
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

    # ------------------------------------------------------------------ a window
    def decide(self, now: float) -> None:
        svc, ex, rec = self.service, self.executor, self.records
        last = ex.last_start
        if last is None:  # idle: the window end itself
            end = self.phase + self.K * self.first_boundary_index(now)
        else:  # the first window end after the previous step end, as the engine's boundary
            end = self.phase + self.K * max(1, self.first_boundary_index(last) + 1)
        jobs, self.queue = self.queue, []
        self.windows += 1
        self.decided_t.append(now)
        self.decided_n.append(len(jobs))
        self._store_captures()
        self._peek(jobs)
        groups = decide_window(
            jobs,
            svc,
            self.policy,
            start=end - self.K,
            edge_profile=svc.edge_profile,
            intermediate_bits=self.site.intermediate_bits,
            running=len(ex),
        )
        for group in groups:
            if group.error is not None:  # summarized once per site at the end of the run
                self.failed_windows += 1
                self.first_failure = self.first_failure or f"at {now:.3f} s: {group.error}"
                for job in group.jobs:
                    rec.fail(job.index, now)
                continue
            granted, split = group.decision.granted, group.decision.split
            b = group.decision.granted_count
            latency = group.outcome.latency
            for i, job in enumerate(group.jobs):
                n = int(split[i])
                rec.decide(job.index, self.index, now, bool(granted[i]), n, b, float(latency[i]))
                if granted[i]:
                    hit = self._lookup(job, n)
                    rec.hit[job.index] = hit
                    ex.add(job.index, job.steps - n - hit)
        ex.release_pending()

    # ------------------------------------------------------------------ the cache
    def _peek(self, jobs: list[SimJob]) -> None:
        """The service's peek before a decision: each request's deepest usable cached step."""
        if self.cache is None or not jobs:
            return
        depth = self.cache.cached_steps(np.array([job.cls for job in jobs]))[:, self.cache.cfg.reusable_steps]
        for job, d in zip(jobs, depth.tolist()):
            job.cached_steps = d

    def _lookup(self, job: SimJob, split: int) -> int:
        """The service's admission: the usable entry with the most steps (at most the member's
        own edge steps); the member then stores its reusable steps after the hit."""
        cache = self.cache
        if cache is None:
            return 0
        reusable = cache.cfg.reusable_steps
        reach = min(reusable, job.steps - split)
        self.clock += 1
        self.lookups += 1
        hit = int(cache.cached_steps(job.cls)[reach]) if reach > 0 else 0
        if hit:
            self.hits += 1
            cache.touch(job.cls, hit, self.clock)
        for m in range(hit + 1, reach + 1):  # stored when the member has run step m
            heapq.heappush(self.captures, (self.executor.step_index + m - hit, job.cls, m))
        return hit

    def _store_captures(self) -> None:
        if self.cache is None:
            return
        done = self.executor.step_index
        while self.captures and self.captures[0][0] <= done:
            _, cls, m = heapq.heappop(self.captures)
            self.clock += 1
            self.cache.insert(cls, m, self.clock)


@dataclass
class Records:
    """Per-request outcome arrays, filled as the simulation runs."""

    site: np.ndarray
    outcome: np.ndarray
    decided_at: np.ndarray
    answered_at: np.ndarray
    split: np.ndarray
    hit: np.ndarray
    window_granted: np.ndarray
    predicted_latency: np.ndarray

    @classmethod
    def empty(cls, n: int, steps: np.ndarray) -> Records:
        nan = np.full(n, np.nan)
        return cls(
            site=np.full(n, -1, np.int32),
            outcome=np.full(n, FAILED, np.int8),
            decided_at=nan.copy(),
            answered_at=nan.copy(),
            split=steps.astype(np.int64).copy(),
            hit=np.zeros(n, np.int64),
            window_granted=np.zeros(n, np.int64),
            predicted_latency=nan.copy(),
        )

    def decide(self, i, site, t, granted, split, b, predicted):
        self.site[i] = site
        self.decided_at[i] = t
        self.outcome[i] = GRANTED if granted else DENIED
        self.split[i] = split
        self.window_granted[i] = b if granted else 0
        self.predicted_latency[i] = predicted
        if not granted:
            self.answered_at[i] = t

    def fail(self, i, t):
        self.outcome[i] = FAILED
        self.decided_at[i] = self.answered_at[i] = t

    def reject(self, i, t):
        self.outcome[i] = REJECTED
        self.decided_at[i] = self.answered_at[i] = t


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
        self.K = np.array([s.K for s in sites])
        self.phase = np.array([s.phase for s in sites])
        self.limit = np.array([s.service.queue_limit for s in sites])
        self.members = np.zeros(len(sites))
        self.queued = np.zeros(len(sites))
        self.event = np.full(len(sites), np.nan)
        for site in sites:
            site.router = self

    def report(self, site: SimSite) -> None:
        s = site.index
        self.members[s] = len(site.executor.members)
        self.queued[s] = len(site.queue)
        self.event[s] = np.nan if site.event is None else site.event

    def route(self, t: float, offloaded: int) -> int:
        grid = self.phase + self.K * np.maximum(1, np.floor((t - self.phase) / self.K + EPS) + 1)
        wait = np.where(np.isnan(self.event), grid, self.event) - t
        return least_expected_latency(wait, offloaded, self.k_g, self.h, self.members, self.queued, self.limit)


def simulate(config: TwinConfig, arrivals: Arrivals, *, progress: bool = False):
    """Run ``arrivals`` through ``config.sites``; returns a :class:`~edgediff.twin.report.TwinResult`."""
    from edgediff.twin.report import TwinResult

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
    for site in sites:
        if site.failed_windows:
            log.warning(
                "site %s: policy %s failed on %d window(s), their requests failed; first %s",
                site.site.name, site.service.policy, site.failed_windows, site.first_failure,
            )  # fmt: skip
        site.executor.run_until(math.inf)
        site.executor.release_pending()
        ex = site.executor
        records.answered_at[np.frombuffer(ex.left_index, np.int64)] = np.frombuffer(ex.left_time, np.float64)
    if bar is not None:
        bar.update(n - bar.n)
        bar.close()
    return TwinResult.build(config, arrivals, records, sites)
