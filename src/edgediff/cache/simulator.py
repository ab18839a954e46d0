"""The seeded time-slotted simulation of docs/caching-model.md (revision 2): T slots under one policy.

All randomness of the environment (requests, classes, local CPU speeds, fading, user
bandwidths and distances, the topic assignment) is drawn up front from the seed, so every
policy run with the same seed sees exactly the same requests and channels (common random
numbers); ``time_saved_per_request_s`` is therefore against NCLDC on the very same requests.

The edge is loaded: its jobs share ``f_es`` with every unfinished job of earlier slots
(:class:`~edgediff.cache.edge.EdgeServer`). A request's latency is known when its edge work
ends; the virtual queue takes the mean latency of the requests whose latency became known in
the slot. A stored output enters the cache when the job that computes it finishes. Policies see
entry values from online request-rate estimates (:mod:`edgediff.cache.demand`); the catalog's
true popularity is used only to draw requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.demand import DemandEstimator
from edgediff.cache.edge import EdgeServer
from edgediff.cache.model import (
    Catalog,
    Slot,
    backlog_wait,
    channel_rate,
    edge_work,
    future_value,
    make_catalog,
    slot_latency,
    transmission_s,
)
from edgediff.cache.policies import make_cache_policy
from edgediff.cache.store import EdgeCache

log = logging.getLogger(__name__)

# a run is flagged unstable when its edge backlog grew, over the second half of the run, by
# more than this fraction of the edge's capacity per slot (least-squares slope)
UNSTABLE_GROWTH = 0.01


@dataclass(frozen=True)
class Environment:
    """Everything random about a run, drawn from one seed."""

    catalog: Catalog
    request: np.ndarray  # (T, U) bool
    cls: np.ndarray  # (T, U) int
    f_local: np.ndarray  # (T, U) Hz
    rate: np.ndarray  # (T, U) bit/s


def make_environment(cfg: CacheConfig, seed: int) -> Environment:
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    catalog = make_catalog(cfg, streams[0])
    shape = (cfg.slots, cfg.users)
    request = streams[1].random(shape) < cfg.p_req
    cls = catalog.sample(streams[2].random(shape))
    f_local = streams[3].uniform(cfg.f_min, cfg.f_max, shape)
    users = streams[4]
    bandwidth = users.uniform(cfg.bandwidth_min_hz, cfg.bandwidth_max_hz, cfg.users)
    distance = users.uniform(cfg.distance_min_m, cfg.distance_max_m, cfg.users)
    fading = streams[5].exponential(1.0, shape)
    rate = channel_rate(cfg, bandwidth, distance, fading)
    return Environment(catalog, request, cls, f_local, rate)


def all_hit_floor(cfg: CacheConfig, env: Environment) -> np.ndarray:
    """Per request, the latency if an output ``S*`` steps deep were always cached for it (no edge
    work, no write), or all local if that is faster: a lower bound for any cache policy."""
    req = env.request
    tx = transmission_s(cfg, env.rate[req])
    f = env.f_local[req]
    hit = tx + (cfg.steps - cfg.reusable_steps) * cfg.cycles_per_step / f
    return np.minimum(hit, cfg.steps * cfg.cycles_per_step / f)


@dataclass
class SimResult:
    policy: str
    latency: np.ndarray  # (requests,) response times
    local_latency: np.ndarray  # (requests,) the same requests all local (NCLDC)
    hit: np.ndarray  # (requests,) served from a cached output
    stop_step: np.ndarray  # (requests,) m
    stored_step: np.ndarray  # (requests,) m' (0: none)
    queue: np.ndarray  # (T,) Q(t) at the start of each slot
    backlog: np.ndarray  # (T,) unfinished edge work (s) at the end of each slot
    penalty: np.ndarray  # (T,) per-slot predicted L(t) minus future value (the DPP penalty)
    decision_time_s: np.ndarray  # (T,) wall time of each decision
    stores: int
    cache_full_slot: int  # first slot at whose end the cache was full (-1: never)
    losses: list[float] = field(default_factory=list)  # actor training losses (drc, dnn)
    max_cache_bytes: float = 0.0
    k_history: list[int] = field(default_factory=list)  # drc's number of candidates K as it adapts
    reused_step: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # (requests,) j (0: miss)
    shared_hit: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=bool)
    )  # (requests,) served by another class

    @property
    def unstable(self) -> bool:
        """The edge backlog grew without bound: over the second half of the run its least-squares
        slope exceeds ``UNSTABLE_GROWTH`` seconds of work per slot."""
        half = self.backlog[self.backlog.size // 2 :]
        if half.size < 2:
            return False
        return bool(np.polyfit(np.arange(half.size), half, 1)[0] > UNSTABLE_GROWTH)

    def summary(self) -> dict[str, float | str | bool | int]:
        """The ``edgediff cache-sim`` keys."""
        lat = self.latency
        return {
            "policy": self.policy,
            "mean_response_time_s": float(lat.mean()) if lat.size else 0.0,
            "p95_response_time_s": float(np.percentile(lat, 95)) if lat.size else 0.0,
            "hit_rate": float(self.hit.mean()) if lat.size else 0.0,
            "time_saved_per_request_s": float((self.local_latency - lat).mean()) if lat.size else 0.0,
            "mean_queue": float(self.queue.mean()),
            "system_cost": float(self.penalty.mean()),
            "decision_time_ms": float(self.decision_time_s.mean() * 1000),
            "mean_backlog_s": float(self.backlog.mean()),
            "p95_backlog_s": float(np.percentile(self.backlog, 95)),
            "final_backlog_s": float(self.backlog[-1]),
            "unstable": self.unstable,
            "cache_full_slot": self.cache_full_slot,
        }


def simulate(cfg: CacheConfig, policy: str, seed: int, env: Environment | None = None, **options) -> SimResult:
    """Run ``cfg.slots`` slots of ``policy`` on the environment of ``seed``."""
    env = env if env is not None else make_environment(cfg, seed)
    pol = make_cache_policy(policy, cfg, seed=seed, **options)
    demand = DemandEstimator(cfg, env.catalog.topic)
    t_now = [0]
    cache = EdgeCache(cfg, env.catalog, pol.eviction, value_fn=lambda c, s: demand.value(t_now[0], c, s))
    edge = EdgeServer()
    s1 = cfg.reusable_steps + 1
    steps = np.arange(s1)
    step_s = cfg.cycles_per_step / cfg.f_es
    total = int(env.request.sum())
    latency = np.full(total, np.nan)
    hit = np.zeros(total, dtype=bool)
    stop = np.zeros(total, dtype=np.int64)
    stored = np.zeros(total, dtype=np.int64)
    reused = np.zeros(total, dtype=np.int64)
    shared = np.zeros(total, dtype=bool)
    cls_of = np.zeros(total, dtype=np.int64)
    arrival = np.zeros(total, dtype=np.int64)
    after_edge = np.zeros(total)  # transmission + write + local, added when the edge work ends
    local_all = np.zeros(total)
    queue, backlog, penalty, dtime = (np.zeros(cfg.slots) for _ in range(4))
    Q, nxt, stores, full_slot, max_bytes = 0.0, 0, 0, -1, 0.0
    for t in range(cfg.slots):
        queue[t] = Q
        t_now[0] = t
        users = np.flatnonzero(env.request[t])
        n = users.size
        resolved = []
        if n:
            ids = np.arange(nxt, nxt + n)
            nxt += n
            cls = env.cls[t, users]
            demand.count(t, cls)  # (r3) on arrival: a request is evidence of its class's demand
            cached = cache.cached_steps(cls) if pol.uses_cache else np.zeros((n, s1), dtype=np.int64)
            slot = Slot(
                t=t,
                users=users,
                cls=cls,
                f_local=env.f_local[t, users],
                rate=env.rate[t, users],
                cached_step=cached,
                value=demand.value(t, cls[:, None], steps[None, :]),
                value_floor=cache.value_floor(n),
                Q=Q,
                backlog_wait=backlog_wait(cfg, edge.remaining),
                backlog_s=edge.backlog_s,
                edge_jobs=edge.jobs,
                cache_fill=cache.bytes_used / cfg.capacity_bytes if cfg.capacity_bytes else 1.0,
            )
            start = time.perf_counter()
            m, st = pol.decide(slot)
            dtime[t] = time.perf_counter() - start
            m, st = np.asarray(m, dtype=np.int64), np.asarray(st, dtype=np.int64)
            e = edge_work(slot, m)
            if np.any((st > 0) & ((st > m) | (st <= m - e))):
                raise ValueError(f"policy {policy!r} stored a step the edge did not compute")
            j = m - e
            h = (m > 0) & (j > 0)
            local = (cfg.steps - m) * cfg.cycles_per_step / slot.f_local
            after_edge[ids] = np.where(m > 0, transmission_s(cfg, slot.rate) + (st > 0) * cfg.write_cost_s, 0.0) + local
            local_all[ids] = cfg.steps * cfg.cycles_per_step / slot.f_local
            hit[ids], stop[ids], stored[ids], cls_of[ids], arrival[ids] = h, m, st, cls, t
            penalty[t] = float(slot_latency(cfg, slot, m, st) - future_value(cfg, slot, st))
            reused[ids] = np.where(h, j, 0)
            for r in np.flatnonzero(h):
                shared[ids[r]] = (int(cls[r]), int(j[r])) not in cache.key_index  # a topic neighbour's entry
                cache.touch(int(cls[r]), int(j[r]), t)
            now_done = e == 0
            latency[ids[now_done]] = after_edge[ids[now_done]]
            resolved.append(ids[now_done])
            edge.add(ids[~now_done], e[~now_done] * step_s)
            pol.learn(slot, m, st)
            demand.observe_load(edge.jobs)
        done, finish = edge.run(1.0)
        latency[done] = (t - arrival[done]) + finish + after_edge[done]
        resolved.append(done)
        for r in done[stored[done] > 0]:
            stores += cache.insert(int(cls_of[r]), int(stored[r]), t)
        max_bytes = max(max_bytes, cache.bytes_used)
        if full_slot < 0 and cfg.capacity_entries and cache.free_entries() == 0:
            full_slot = t
        backlog[t] = edge.backlog_s
        now = np.concatenate(resolved)
        if now.size:
            Q = max(Q + float(latency[now].mean()) - cfg.L_bar, 0.0)
        if t and t % 2000 == 0:
            log.info("%s slot %d: Q %.1f, backlog %.2f s, cache %d entries", policy, t, Q, backlog[t], cache.entries)
    # requests still at the edge when the run ends finish with no further arrivals
    done, finish = edge.run(np.inf)
    latency[done] = (cfg.slots - arrival[done]) + finish + after_edge[done]
    return SimResult(
        policy,
        latency,
        local_all,
        hit,
        stop,
        stored,
        queue,
        backlog,
        penalty,
        dtime,
        stores,
        full_slot,
        list(getattr(pol, "losses", [])),
        max_bytes,
        list(getattr(pol, "k_history", [])),
        reused,
        shared,
    )
