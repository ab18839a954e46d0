"""OO: the exact per-slot optimum of the drift-plus-penalty objective.

Given the stop steps, the stored steps are separable (``model.best_store``) and every
latency term but the new jobs' mutual sharing is per request: the backlog's share against a
new job of ``e`` steps, and that job's delay to the backlog, are both ``backlog_wait[e]``. The
new jobs couple only through the processor-sharing sum ``(w / f_es) * sum_l N_l^2``, where
``N_l`` counts requests whose edge work reaches step level ``l``; it depends on the
*histogram* of edge work levels alone. So:

1. for each request and each work level ``e`` in ``0..S*``, keep its cheapest option (stop
   step and stored step) among those with that level;
2. dynamic programming over requests whose state is the histogram so far (at most
   ``C(n + S*, S*)`` states), then add the sharing term to each final histogram.

Exact, and polynomial in ``n`` for a fixed ``S*``.
"""

from __future__ import annotations

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import Slot, best_store, latency_weight, storable, store_gain, transmission_s
from edgediff.cache.policies import CachePolicy


def level_costs(cfg: CacheConfig, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
    """Per request and work level: the cheapest objective share (without the new jobs' mutual sharing)
    and its stop step.

    Returns ``cost (n, S*+1)`` (inf where no stop step has that level) and ``step (n, S*+1)``.
    """
    n, s1 = slot.n, cfg.reusable_steps + 1
    steps = np.broadcast_to(np.arange(s1), (n, s1))
    level = steps - slot.cached_step  # edge work of each (request, stop step)
    alpha = latency_weight(cfg, slot)
    # the best stored step of each (request, stop step): argmax of the store gain over j(m) < m' <= m
    ok = storable(slot, steps.T).transpose(1, 0, 2)  # (n, stop step, stored step)
    g = np.where(ok, store_gain(cfg, slot)[:, None, :], -np.inf).max(axis=2)
    store_gain_best = np.where(g > 0, g, 0.0)  # (n, S*+1): what the best store takes off, 0 if none pays
    tx = transmission_s(cfg, slot.rate)[:, None]
    local = (cfg.steps - steps) * cfg.cycles_per_step / slot.f_local[:, None]
    lat = np.where(steps > 0, tx + 2.0 * slot.backlog_wait[level], 0.0) + local
    option = alpha * lat - store_gain_best
    cost = np.full((n, s1), np.inf)
    best = np.zeros((n, s1), dtype=np.int64)
    for m in range(s1):  # S*+1 columns: keep the cheapest stop step per level
        rows = np.arange(n)
        better = option[:, m] < cost[rows, level[:, m]]
        cost[rows[better], level[better, m]] = option[better, m]
        best[rows[better], level[better, m]] = m
    return cost, best


def solve_slot(cfg: CacheConfig, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
    """The stop steps and stored steps minimizing ``model.objective`` for this slot."""
    n, s1 = slot.n, cfg.reusable_steps + 1
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cost, best = level_costs(cfg, slot)
    base = n + 1
    inc = np.zeros(s1, dtype=np.int64)
    inc[1:] = base ** np.arange(s1 - 1)  # histogram code: count of level l in digit l-1
    codes = np.zeros(1, dtype=np.int64)
    values = np.zeros(1)
    parents, levels = [], []
    for r in range(n):
        cand_codes = (codes[:, None] + inc[None, :]).ravel()
        cand_values = (values[:, None] + cost[r][None, :]).ravel()
        ok = np.isfinite(cand_values)
        idx = np.flatnonzero(ok)
        order = idx[np.lexsort((cand_values[idx], cand_codes[idx]))]
        first = np.ones(order.size, dtype=bool)
        first[1:] = cand_codes[order[1:]] != cand_codes[order[:-1]]
        keep = order[first]
        parents.append(keep // s1)
        levels.append(keep % s1)
        codes, values = cand_codes[keep], cand_values[keep]
    # decode histograms and add the processor-sharing term alpha * (w / f_es) * sum_l N_l^2
    counts = (codes[:, None] // inc[None, 1:]) % base  # (states, S*)
    n_level = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # N_l = #requests with level >= l
    share = latency_weight(cfg, slot) * cfg.cycles_per_step / cfg.f_es * (n_level**2).sum(axis=1)
    state = int(np.argmin(values + share))
    m = np.zeros(n, dtype=np.int64)
    for r in range(n - 1, -1, -1):
        m[r] = best[r, levels[r][state]]
        state = int(parents[r][state])
    return m, best_store(cfg, slot, m)


class OnlineOptimal(CachePolicy):
    """OO: solve every slot exactly (value-based eviction on the online estimates)."""

    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        return solve_slot(self.cfg, slot)
