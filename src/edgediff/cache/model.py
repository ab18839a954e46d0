"""The Part B system model (docs/caching-model.md): catalog, reusable-step rule, channel, compute, latency
and the drift-plus-penalty per-slot objective. Pure, vectorized NumPy functions.

A slot's decision is, per request ``r``, the step ``m_r`` in ``0..S*`` where the edge stops
(0 = all local) and whether the output at ``m_r`` is stored. Functions here accept decision
arrays with any leading candidate axes, shape ``(..., n)``, so a critic scores ``K``
candidates in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgediff.cache.config import CacheConfig

BITS_PER_BYTE = 8


@dataclass(frozen=True)
class Catalog:
    """Content classes with Zipf popularity (class id = popularity rank) grouped into topics."""

    popularity: np.ndarray  # (C,) p_c, sums to 1
    topic: np.ndarray  # (C,) topic of each class
    topic_mass: np.ndarray  # (topics,) sum of p_c over the topic
    cdf: np.ndarray  # (C,) for sampling

    def sample(self, u: np.ndarray) -> np.ndarray:
        """Classes for uniform draws ``u`` in [0, 1)."""
        return np.minimum(np.searchsorted(self.cdf, u, side="right"), self.cdf.size - 1)


def make_catalog(cfg: CacheConfig, rng: np.random.Generator) -> Catalog:
    ranks = np.arange(1, cfg.classes + 1, dtype=float)
    p = ranks**-cfg.zipf_s
    p /= p.sum()
    # topics of equal size, classes assigned at random so popular classes spread over topics
    topic = rng.permutation(cfg.classes) % cfg.topics
    mass = np.bincount(topic, weights=p, minlength=cfg.topics)
    for a in (p, topic, mass):
        a.setflags(write=False)
    return Catalog(p, topic, mass, np.cumsum(p))


def theta(m, s_star: int, theta_min: float):
    """Similarity threshold ``theta(m)`` a cached output ``m`` steps in needs (``m`` in 0..S*).

    Increases linearly from ``theta_min`` at step 1 to 1 at step ``S*``: early, noisy outputs
    are reusable by more requests. With ``S* = 1`` the single reusable step needs an exact
    match; ``m = 0`` (nothing cached) matches nothing: inf. A float for a scalar ``m``.
    """
    m = np.asarray(m, dtype=float)
    th = theta_min + (1.0 - theta_min) * (m - 1) / max(s_star - 1, 1)
    if s_star == 1:
        th = np.where(m == 1, 1.0, th)
    th = np.where(m == 0, np.inf, th)
    return float(th) if th.ndim == 0 else th


def thresholds(cfg: CacheConfig) -> np.ndarray:
    """``theta(m)`` for m = 0..S* (index 0 unused: inf)."""
    return theta(np.arange(cfg.reusable_steps + 1), cfg.reusable_steps, cfg.theta_min)


def topic_reusable_steps(cfg: CacheConfig) -> np.ndarray:
    """Bool (S*+1,): steps whose cached outputs serve other classes of the same topic."""
    return thresholds(cfg) <= cfg.sigma_topic


def similarity(cfg: CacheConfig, catalog: Catalog, c: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """``sim(c, c')``: 1 if equal, sigma_topic if same topic, else 0."""
    c, c2 = np.asarray(c), np.asarray(c2)
    same_topic = catalog.topic[c] == catalog.topic[c2]
    return np.where(c == c2, 1.0, np.where(same_topic, cfg.sigma_topic, 0.0))


def channel_rate(cfg: CacheConfig, bandwidth_hz, distance_m, fading) -> np.ndarray:
    """Downlink rate ``R = W log2(1 + p g / delta^2)``, ``g = g0 d^-3 h`` (bit/s)."""
    gain = cfg.g0 * np.asarray(distance_m, dtype=float) ** -cfg.pathloss_exp * fading
    return bandwidth_hz * np.log2(1.0 + cfg.tx_power_w * gain / cfg.noise_w)


def save_per_hit_s(cfg: CacheConfig) -> np.ndarray:
    """Estimated slot-wide latency a hit of ``m`` cached steps saves, for m = 0..S*.

    Under processor sharing with ``k`` equal edge jobs the sum of completion times is
    ``k^2 x / f``; removing one job saves ``(2k - 1) x / f``. We take ``k`` = the expected
    requests per slot, U * p_req.
    """
    k = max(cfg.request_rate, 1.0)
    m = np.arange(cfg.reusable_steps + 1, dtype=float)
    return m * cfg.cycles_per_step / cfg.f_es * (2 * k - 1)


def entry_value(cfg: CacheConfig, catalog: Catalog, cls: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Future value rate (seconds saved per slot) of a cached output of class ``cls`` at ``step``.

    ``lambda * pi * s(m)``: the expected requests per slot that the entry can serve (its class,
    or its whole topic when ``theta(m) <= sigma_topic``) times the time each hit saves.
    """
    cls, step = np.asarray(cls), np.asarray(step)
    topic_ok = topic_reusable_steps(cfg)[step]
    pi = np.where(topic_ok, catalog.topic_mass[catalog.topic[cls]], catalog.popularity[cls])
    return np.where(step > 0, cfg.request_rate * pi * save_per_hit_s(cfg)[step], 0.0)


@dataclass(frozen=True)
class Slot:
    """What a policy sees in one slot: the ``n`` requests and the system state."""

    t: int
    users: np.ndarray  # (n,) requesting users
    cls: np.ndarray  # (n,) content classes
    f_local: np.ndarray  # (n,) local CPU frequency this slot (Hz)
    rate: np.ndarray  # (n,) downlink rate this slot (bit/s)
    cached_step: np.ndarray  # (n, S*+1) J[r, m] = best usable cached step <= m (0: none)
    value: np.ndarray  # (n, S*+1) entry_value of storing the output at step m
    value_floor: float  # value rate of what a store would evict (0 while the cache has room)
    Q: float  # virtual queue backlog

    @property
    def n(self) -> int:
        return int(self.users.size)


def edge_work(slot: Slot, m: np.ndarray) -> np.ndarray:
    """Steps the edge computes per request: from the best usable cached step up to ``m``."""
    m = np.asarray(m)
    j = np.take_along_axis(
        np.broadcast_to(slot.cached_step, m.shape + (slot.cached_step.shape[-1],)), m[..., None], axis=-1
    )[..., 0]
    return m - j


def processor_sharing_times(cfg: CacheConfig, work_steps: np.ndarray) -> np.ndarray:
    """Completion times under egalitarian processor sharing of ``f_es``, all jobs starting at 0.

    Job r finishes at ``sum_s min(e_r, e_s) w / f_es`` = ``sum_l [e_r >= l] N_l w / f_es`` with
    ``N_l`` the number of jobs still running at step level ``l``.
    """
    e = np.asarray(work_steps)
    levels = np.arange(1, cfg.reusable_steps + 1)
    running = e[..., None] >= levels  # (..., n, S*)
    n_level = running.sum(axis=-2, keepdims=True)
    return (running * n_level).sum(axis=-1) * (cfg.cycles_per_step / cfg.f_es)


def latencies(cfg: CacheConfig, slot: Slot, m: np.ndarray, store: np.ndarray) -> np.ndarray:
    """Per-request latency (s): edge compute + transmission + cache write + local compute."""
    m = np.asarray(m)
    offloaded = m > 0
    edge = processor_sharing_times(cfg, edge_work(slot, m))
    tx = cfg.output_bytes * BITS_PER_BYTE / slot.rate
    local = (cfg.steps - m) * cfg.cycles_per_step / slot.f_local
    return np.where(offloaded, edge + tx + store * cfg.write_cost_s, 0.0) + local


def storable(slot: Slot, m: np.ndarray) -> np.ndarray:
    """A request can store its output at ``m`` only if the edge computed it this slot."""
    return (np.asarray(m) > 0) & (edge_work(slot, m) > 0)


def latency_weight(cfg: CacheConfig, slot: Slot) -> float:
    """``Q/n + V``: the weight of the slot's latency sum in the per-slot objective."""
    return slot.Q / max(slot.n, 1) + cfg.V


def future_value(cfg: CacheConfig, slot: Slot, m: np.ndarray, store: np.ndarray) -> np.ndarray:
    """``FV = H * sum over stored entries of (value - value_floor)`` (seconds), per candidate."""
    v = np.take_along_axis(
        np.broadcast_to(slot.value, np.shape(m) + (slot.value.shape[-1],)), np.asarray(m)[..., None], axis=-1
    )[..., 0]
    return cfg.value_horizon_slots * (np.where(store, v - slot.value_floor, 0.0)).sum(axis=-1)


def best_store(cfg: CacheConfig, slot: Slot, m: np.ndarray) -> np.ndarray:
    """The optimal store flags for given stop steps: the objective is separable in them.

    Storing adds ``(Q/n + V) * write_cost`` and subtracts ``V * H * (value - floor)``.
    """
    m = np.asarray(m)
    v = np.take_along_axis(np.broadcast_to(slot.value, m.shape + (slot.value.shape[-1],)), m[..., None], axis=-1)[
        ..., 0
    ]
    gain = cfg.V * cfg.value_horizon_slots * (v - slot.value_floor) - latency_weight(cfg, slot) * cfg.write_cost_s
    return storable(slot, m) & (gain > 0)


def objective(cfg: CacheConfig, slot: Slot, m: np.ndarray, store: np.ndarray) -> np.ndarray:
    """Drift-plus-penalty bound of eq. (33) with the future-value term, per candidate.

    ``Q (L_avg - L_bar) + V (L - FV)`` with ``L`` the slot's latency sum and ``L_avg = L / n``.
    """
    lat = latencies(cfg, slot, m, store).sum(axis=-1)
    n = max(slot.n, 1)
    return slot.Q * (lat / n - cfg.L_bar) + cfg.V * (lat - future_value(cfg, slot, m, store))
