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

Exact, and polynomial in ``n`` for a fixed ``S*`` — but ``C(n + S*, S*)`` is 10 million at
``n = 20, S* = 9`` (0.5 s per slot). Above :data:`DP_STATES` states the same problem is
solved as a **min-cost flow with convex arc costs**: each request sends one unit to the exit
node of its work level ``e`` (arc cost: its cheapest option at that level); exit ``e`` feeds a
chain ``U_e -> U_{e-1} -> ... -> U_1 -> sink``, so the flow on chain arc ``l`` is ``N_l``; its
cost ``λ N_l²`` is ``n`` parallel unit arcs of cost ``λ (2k - 1)``, ``k = 1..n`` (increasing,
so the cheapest fill first). A node-arc incidence matrix is totally unimodular, so HiGHS's
simplex vertex is integral: the same optimum, found in milliseconds
(``tests/cache/test_cache_model.py`` checks both against exhaustive search and each other).
"""

from __future__ import annotations

import math

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import (
    Slot,
    best_store,
    edge_work,
    latency_weight,
    later_delay_per_step,
    storable,
    store_gain,
    transmission_s,
)
from edgediff.cache.policies import CachePolicy

ADMISSIONS = ("value", "deepest")


def level_costs(cfg: CacheConfig, slot: Slot, admission: str = "value") -> tuple[np.ndarray, np.ndarray]:
    """Per request and work level: the cheapest objective share (without the new jobs' mutual sharing)
    and its stop step.

    ``admission="value"`` (oo): the stored step is free, chosen by its store gain (future value
    against the write cost). ``admission="deepest"`` (the fair classic caches, revision 3 of docs/caching-model.md): the
    admission is fixed — every request whose edge runs a step stores the deepest one it computes
    and pays the write — and no future value is counted (a usage rule has no value estimate).

    Returns ``cost (n, S*+1)`` (inf where no stop step has that level) and ``step (n, S*+1)``.
    """
    n, s1 = slot.n, cfg.reusable_steps + 1
    steps = np.broadcast_to(np.arange(s1), (n, s1))
    level = steps - slot.cached_step  # edge work of each (request, stop step)
    alpha = latency_weight(cfg, slot)
    tx = transmission_s(cfg, slot.rate)[:, None]
    local = (cfg.steps - steps) * cfg.cycles_per_step / slot.f_local[:, None]
    lat = np.where(steps > 0, tx + 2.0 * slot.backlog_wait[level], 0.0) + local
    lat = lat + later_delay_per_step(cfg, slot) * level  # (r3) the delay to later slots' jobs
    if admission == "deepest":
        writes = (level > 0) & (cfg.capacity_entries > 0)
        return _cheapest_per_level(alpha * (lat + writes * cfg.write_cost_s), level)
    if admission != "value":
        raise ValueError(f"unknown admission {admission!r}; choose from {', '.join(ADMISSIONS)}")
    # the best stored step of each (request, stop step): argmax of the store gain over j(m) < m' <= m
    ok = storable(slot, steps.T).transpose(1, 0, 2)  # (n, stop step, stored step)
    g = np.where(ok, store_gain(cfg, slot)[:, None, :], -np.inf).max(axis=2)
    store_gain_best = np.where(g > 0, g, 0.0)  # (n, S*+1): what the best store takes off, 0 if none pays
    return _cheapest_per_level(alpha * lat - store_gain_best, level)


def _cheapest_per_level(option: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``option (n, S*+1)`` per stop step to the cheapest per work level, and its stop step."""
    n, s1 = option.shape
    cost = np.full((n, s1), np.inf)
    best = np.zeros((n, s1), dtype=np.int64)
    for m in range(s1):  # S*+1 columns: keep the cheapest stop step per level
        rows = np.arange(n)
        better = option[:, m] < cost[rows, level[:, m]]
        cost[rows[better], level[better, m]] = option[better, m]
        best[rows[better], level[better, m]] = m
    return cost, best


DP_STATES = 50_000  # above this many histogram states, the min-cost flow is faster


def solve_slot(cfg: CacheConfig, slot: Slot, admission: str = "value") -> tuple[np.ndarray, np.ndarray]:
    """The stop steps and stored steps minimizing ``model.objective`` for this slot; with
    ``admission="deepest"``, the stop steps minimizing the drift-plus-penalty latency when every
    request the edge computes for stores its deepest computed step (:func:`level_costs`)."""
    n, s1 = slot.n, cfg.reusable_steps + 1
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cost, best = level_costs(cfg, slot, admission)
    solve = _levels_by_flow if math.comb(n + s1 - 1, s1 - 1) > DP_STATES else _levels_by_dp
    level = solve(cost, latency_weight(cfg, slot) * cfg.cycles_per_step / cfg.f_es)
    m = best[np.arange(n), level]
    if admission == "deepest":
        return m, deepest_store(cfg, slot, m)
    return m, best_store(cfg, slot, m)


def deepest_store(cfg: CacheConfig, slot: Slot, m: np.ndarray) -> np.ndarray:
    """The classic caches' admission: the deepest step the edge computes (``m`` where it runs a step), else 0."""
    return np.where((edge_work(slot, m) > 0) & (cfg.capacity_entries > 0), m, 0)


def _levels_by_dp(cost: np.ndarray, share_weight: float) -> np.ndarray:
    """Each request's work level minimizing ``sum cost[r, e_r] + share_weight * sum_l N_l^2``:
    dynamic programming over the histogram of levels (module docstring)."""
    n, s1 = cost.shape
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
    state = int(np.argmin(values + share_weight * (n_level**2).sum(axis=1)))
    level = np.zeros(n, dtype=np.int64)
    for r in range(n - 1, -1, -1):
        level[r] = levels[r][state]
        state = int(parents[r][state])
    return level


def _levels_by_flow(cost: np.ndarray, share_weight: float) -> np.ndarray:
    """The same minimum as :func:`_levels_by_dp`, as a min-cost flow solved by HiGHS's simplex
    (module docstring). Variables: the finite ``(request, level)`` arcs, then ``S* x n`` unit
    segments of the chain arcs; rows: one per request (it picks one level), one per chain arc
    (its flow ``N_l`` = the requests at level ``>= l``)."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    n, s1 = cost.shape
    r_idx, e_idx = np.nonzero(np.isfinite(cost))
    arcs = r_idx.size
    rows, cols = [r_idx], [np.arange(arcs)]
    for level in range(1, s1):  # chain row l: sum of the arcs at levels >= l, minus its segments
        above = np.flatnonzero(e_idx >= level)
        rows.append(np.full(above.size, n + level - 1))
        cols.append(above)
    segment_cols = arcs + np.arange((s1 - 1) * n)
    data = np.concatenate([np.ones(sum(c.size for c in cols)), -np.ones(segment_cols.size)])
    rows.append(n + np.repeat(np.arange(s1 - 1), n))
    cols.append(segment_cols)
    a_eq = coo_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=(n + s1 - 1, arcs + (s1 - 1) * n))
    b_eq = np.concatenate([np.ones(n), np.zeros(s1 - 1)])
    segment_cost = np.tile(share_weight * (2 * np.arange(1, n + 1) - 1.0), s1 - 1)
    result = linprog(
        np.concatenate([cost[r_idx, e_idx], segment_cost]),
        A_eq=a_eq.tocsr(),
        b_eq=b_eq,
        bounds=(0, 1),
        method="highs-ds",  # the simplex: a vertex, integral on this totally unimodular matrix
    )
    if result.status != 0:
        raise RuntimeError(f"oo's min-cost flow failed: {result.message}")
    flow = result.x[:arcs]
    chosen = flow > 0.5
    if not np.allclose(flow, chosen, atol=1e-6) or np.bincount(r_idx[chosen], minlength=n).tolist() != [1] * n:
        raise RuntimeError("oo's min-cost flow returned a fractional vertex")  # cannot happen on a TU matrix
    chosen_level = np.zeros(n, dtype=np.int64)
    chosen_level[r_idx[chosen]] = e_idx[chosen]
    return chosen_level


class OnlineOptimal(CachePolicy):
    """OO: solve every slot exactly (value-based eviction on the online estimates)."""

    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        return solve_slot(self.cfg, slot)
