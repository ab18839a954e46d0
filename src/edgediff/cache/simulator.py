"""The seeded time-slotted simulation of docs/caching-model.md: T slots under one policy.

All randomness of the environment (requests, classes, local CPU speeds, fading, user
bandwidths and distances, the topic assignment) is drawn up front from the seed, so every
policy run with the same seed sees exactly the same requests and channels (common random
numbers); ``time_saved_per_request_s`` is therefore against NCLDC on the very same requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import Catalog, Slot, channel_rate, entry_value, latencies, make_catalog
from edgediff.cache.policies import make_cache_policy
from edgediff.cache.store import EdgeCache

log = logging.getLogger(__name__)


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


@dataclass
class SimResult:
    policy: str
    latency: np.ndarray  # (requests,) response times
    local_latency: np.ndarray  # (requests,) the same requests all local (NCLDC)
    hit: np.ndarray  # (requests,) served from a cached output
    queue: np.ndarray  # (T,) Q(t) at the start of each slot
    penalty: np.ndarray  # (T,) per-slot latency sum minus future value (the DPP penalty)
    decision_time_s: np.ndarray  # (T,) wall time of each decision
    stores: int
    losses: list[float] = field(default_factory=list)  # actor training losses (drc, dnn)
    max_cache_bytes: float = 0.0

    def summary(self) -> dict[str, float | str]:
        """The ``edgediff cache-sim`` keys."""
        lat = self.latency
        return {
            "policy": self.policy,
            "mean_response_time_s": float(lat.mean()) if lat.size else 0.0,
            "p95_response_time_s": float(np.percentile(lat, 95)) if lat.size else 0.0,
            "hit_rate": float(self.hit.mean()) if lat.size else 0.0,
            "time_saved_per_request_s": float((self.local_latency - lat).mean()) if lat.size else 0.0,
            "mean_queue": float(self.queue.mean()),
            "decision_time_ms": float(self.decision_time_s.mean() * 1000),
        }


def simulate(cfg: CacheConfig, policy: str, seed: int, env: Environment | None = None, **options) -> SimResult:
    """Run ``cfg.slots`` slots of ``policy`` on the environment of ``seed``."""
    env = env if env is not None else make_environment(cfg, seed)
    pol = make_cache_policy(policy, cfg, seed=seed, **options)
    cache = EdgeCache(cfg, env.catalog, pol.eviction)
    s1 = cfg.reusable_steps + 1
    steps = np.arange(s1)
    Q = 0.0
    lat_all, local_all, hit_all = [], [], []
    queue = np.zeros(cfg.slots)
    penalty = np.zeros(cfg.slots)
    dtime = np.zeros(cfg.slots)
    stores = 0
    max_bytes = 0.0
    for t in range(cfg.slots):
        queue[t] = Q
        users = np.flatnonzero(env.request[t])
        if users.size == 0:
            continue
        cls = env.cls[t, users]
        slot = Slot(
            t=t,
            users=users,
            cls=cls,
            f_local=env.f_local[t, users],
            rate=env.rate[t, users],
            cached_step=cache.cached_steps(cls) if pol.uses_cache else np.zeros((users.size, s1), dtype=np.int64),
            value=entry_value(cfg, env.catalog, cls[:, None], steps[None, :]),
            value_floor=cache.value_floor(users.size),
            Q=Q,
        )
        start = time.perf_counter()
        m, store = pol.decide(slot)
        dtime[t] = time.perf_counter() - start
        lat = latencies(cfg, slot, m, store)
        j = slot.cached_step[np.arange(users.size), m]
        hit = (m > 0) & (j > 0)
        v = slot.value[np.arange(users.size), m]
        penalty[t] = lat.sum() - cfg.value_horizon_slots * np.where(store, v - slot.value_floor, 0.0).sum()
        for r in np.flatnonzero(hit):
            cache.touch(int(cls[r]), int(j[r]), t)
        for r in np.flatnonzero(store):
            stores += cache.insert(int(cls[r]), int(m[r]), t)
        max_bytes = max(max_bytes, cache.bytes_used)
        pol.learn(slot, m, store)
        lat_all.append(lat)
        local_all.append(cfg.steps * cfg.cycles_per_step / slot.f_local)
        hit_all.append(hit)
        Q = max(Q + lat.mean() - cfg.L_bar, 0.0)
        if t and t % 2000 == 0:
            log.info("%s slot %d: mean latency %.2f s, Q %.1f", policy, t, np.concatenate(lat_all).mean(), Q)
    cat = np.concatenate if lat_all else (lambda _: np.zeros(0))
    return SimResult(
        policy,
        cat(lat_all),
        cat(local_all),
        cat(hit_all).astype(bool) if hit_all else np.zeros(0, dtype=bool),
        queue,
        penalty,
        dtime,
        stores,
        list(getattr(pol, "losses", [])),
        max_bytes,
    )
