"""The Part B system model (docs/caching-model.md, revision 2): catalog, reusable-step rule, channel,
a loaded processor-sharing edge, latency and the drift-plus-penalty per-slot objective. Pure,
vectorized NumPy functions.

A slot's decision is the paper's placement ``J`` per request ``r``: the step ``m_r`` in
``0..S*`` where the edge stops (0 = all local) and the step ``m'_r`` whose output is stored
(0 = none; else ``j_r(m_r) < m'_r <= m_r``, a step the edge computes for it this slot).
Functions here accept decision arrays with any leading candidate axes, shape ``(..., n)``, so
a critic scores ``K`` candidates in one call.
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


@dataclass(frozen=True)
class Slot:
    """What a policy sees in one slot: the ``n`` requests and the system state (no true popularity)."""

    t: int
    users: np.ndarray  # (n,) requesting users
    cls: np.ndarray  # (n,) content classes
    f_local: np.ndarray  # (n,) local CPU frequency this slot (Hz)
    rate: np.ndarray  # (n,) downlink rate this slot (bit/s)
    cached_step: np.ndarray  # (n, S*+1) j_r(m) = deepest usable cached step <= m (0: none)
    value: np.ndarray  # (n, S*+1) estimated value rate of storing the output at step m' (demand.py)
    value_floor: float  # value rate of what a store would evict (0 while the cache has room)
    Q: float  # virtual queue backlog
    backlog_wait: np.ndarray  # (S*+1,) sum_k min(e w / f_es, b_k): the backlog's share against e new steps
    backlog_s: float = 0.0  # unfinished edge work (s at full speed)
    edge_jobs: int = 0  # unfinished edge jobs
    cache_fill: float = 0.0  # fraction of the cache capacity in use

    @property
    def n(self) -> int:
        return int(self.users.size)


def _pick(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``table[..., r, idx[..., r]]`` for a per-request table ``(n, K)`` and indices ``(..., n)``."""
    idx = np.asarray(idx)
    return np.take_along_axis(np.broadcast_to(table, idx.shape + (table.shape[-1],)), idx[..., None], axis=-1)[..., 0]


def edge_work(slot: Slot, m: np.ndarray) -> np.ndarray:
    """Steps the edge computes per request: from the deepest usable cached step up to ``m``."""
    m = np.asarray(m)
    return m - _pick(slot.cached_step, m)


def backlog_wait(cfg: CacheConfig, backlog: np.ndarray) -> np.ndarray:
    """``sum_k min(e w / f_es, b_k)`` for e = 0..S*: what unfinished jobs ``b`` (s) add to a new job
    of ``e`` steps under processor sharing, and equally what that job adds to them."""
    x = np.arange(cfg.reusable_steps + 1) * (cfg.cycles_per_step / cfg.f_es)
    return np.minimum(x[:, None], np.asarray(backlog, dtype=float)[None, :]).sum(axis=1)


def processor_sharing_times(cfg: CacheConfig, work_steps: np.ndarray) -> np.ndarray:
    """Completion times of new jobs among themselves under egalitarian processor sharing of ``f_es``.

    Job r finishes at ``sum_s min(e_r, e_s) w / f_es`` = ``sum_l [e_r >= l] N_l w / f_es`` with
    ``N_l`` the number of jobs still running at step level ``l``.
    """
    e = np.asarray(work_steps)
    levels = np.arange(1, cfg.reusable_steps + 1)
    running = e[..., None] >= levels  # (..., n, S*)
    n_level = running.sum(axis=-2, keepdims=True)
    return (running * n_level).sum(axis=-1) * (cfg.cycles_per_step / cfg.f_es)


def transmission_s(cfg: CacheConfig, rate: np.ndarray) -> np.ndarray:
    """Time to send one intermediate output at ``rate`` bit/s."""
    return cfg.output_bytes * BITS_PER_BYTE / np.asarray(rate)


def latencies(cfg: CacheConfig, slot: Slot, m: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Predicted latency per request (s): edge waiting and compute under processor sharing with the
    backlog and the slot's other jobs (no later arrivals) + transmission + cache write + local compute."""
    m = np.asarray(m)
    e = edge_work(slot, m)
    edge = processor_sharing_times(cfg, e) + slot.backlog_wait[e]
    write = (np.asarray(stored) > 0) * cfg.write_cost_s
    local = (cfg.steps - m) * cfg.cycles_per_step / slot.f_local
    return np.where(m > 0, edge + transmission_s(cfg, slot.rate) + write, 0.0) + local


def later_delay_per_step(cfg: CacheConfig, slot: Slot) -> float:
    """(r3) The delay one step of new edge work adds to the jobs of later slots (s): it holds the
    edge ``w / f_es`` seconds longer for about ``later_delay_factor`` x the unfinished jobs' count."""
    return cfg.later_delay_factor * slot.edge_jobs * cfg.cycles_per_step / cfg.f_es


def slot_latency(cfg: CacheConfig, slot: Slot, m: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """``L(t)``: the slot's predicted latency sum plus the delay its edge work adds to unfinished jobs
    and (r3) to the jobs of later slots."""
    e = edge_work(slot, m)
    delay_to_backlog = slot.backlog_wait[e].sum(axis=-1)
    delay_to_later = later_delay_per_step(cfg, slot) * e.sum(axis=-1)
    return latencies(cfg, slot, m, stored).sum(axis=-1) + delay_to_backlog + delay_to_later


def storable(slot: Slot, m: np.ndarray) -> np.ndarray:
    """Bool ``(..., n, S*+1)``: steps ``m'`` whose output the edge computes this slot, ``j(m) < m' <= m``."""
    m = np.asarray(m)
    steps = np.arange(slot.cached_step.shape[-1])
    return (steps > _pick(slot.cached_step, m)[..., None]) & (steps <= m[..., None])


def latency_weight(cfg: CacheConfig, slot: Slot) -> float:
    """``Q/n + V``: the weight of the slot's latency sum in the per-slot objective."""
    return slot.Q / max(slot.n, 1) + cfg.V


def store_gain(cfg: CacheConfig, slot: Slot) -> np.ndarray:
    """``(n, S*+1)``: what storing step ``m'`` takes off the objective, ``V H (v - floor) - (Q/n + V) c_w``."""
    return (
        cfg.V * cfg.value_horizon_slots * (slot.value - slot.value_floor) - latency_weight(cfg, slot) * cfg.write_cost_s
    )


def future_value(cfg: CacheConfig, slot: Slot, stored: np.ndarray) -> np.ndarray:
    """``FV = H * sum over stored entries of (value - value_floor)`` (seconds), per candidate."""
    stored = np.asarray(stored)
    v = _pick(slot.value, stored)
    return cfg.value_horizon_slots * np.where(stored > 0, v - slot.value_floor, 0.0).sum(axis=-1)


def best_store(cfg: CacheConfig, slot: Slot, m: np.ndarray) -> np.ndarray:
    """The optimal stored steps for given stop steps (0 = none): the objective is separable in them."""
    gain = np.where(storable(slot, m), store_gain(cfg, slot), -np.inf)
    best = gain.argmax(axis=-1)
    return np.where(np.take_along_axis(gain, best[..., None], axis=-1)[..., 0] > 0, best, 0)


def valid_store(slot: Slot, m: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """``stored`` where it is a step computed this slot (``j(m) < m' <= m``), else 0."""
    stored = np.asarray(stored)
    ok = np.take_along_axis(storable(slot, m), stored[..., None], axis=-1)[..., 0]
    return np.where(ok, stored, 0)


def objective(cfg: CacheConfig, slot: Slot, m: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Drift-plus-penalty bound of eq. (33) with the backlog and future-value terms, per candidate.

    ``Q (L_avg - L_bar) + V (L - FV)`` with ``L`` = :func:`slot_latency` (which sees the edge
    backlog) and ``L_avg = L / n`` (docs/caching-model.md derives it).
    """
    lat = slot_latency(cfg, slot, m, stored)
    n = max(slot.n, 1)
    return slot.Q * (lat / n - cfg.L_bar) + cfg.V * (lat - future_value(cfg, slot, stored))
