"""``timeline``: the optimum of (P1) under the timeline latency model (docs/offloading-model.md), beyond the paper.

Under the timeline model the batch shrinks as members reach their split point, so a granted
user's edge time is ``h_e m_i + (k_e/G) sum_j min(m_i, m_j)`` (``m`` = the offloaded steps the
edge runs: ``max(0, N - n - d)`` with ``d`` the cached steps; everything below holds for it).
Summed over users, ``sum_i sum_j min(m_i, m_j) = sum_r (2r - 1) m_(r)`` with ``m`` sorted in
descending order, and by the rearrangement inequality that is the *minimum* over rank
assignments ``pi`` of ``sum_i (2 pi_i - 1) m_i``. The objective is therefore
``max_pi sum_i [g_i(m_i) - (k_e/G)(2 pi_i - 1) m_i]``, and maximizing over ``m`` as well
separates per user: with ``b`` users granted it is a linear assignment of users to ranks
``1..b``, where rank ``r`` costs every offloaded step ``L_e(2r - 1, G)`` (the paper model's
per-step latency at batch size ``2r - 1``), and each cell is the inner split problem (P2) at
that latency. One assignment per ``b`` (SciPy's ``linear_sum_assignment``), keep the best
``b``: exact, polynomial (docs/offloading-model.md, "The timeline model").

For large windows each assignment runs over the users among some rank's best ``b`` only (an
optimal assignment never needs another), the rank table grows in doubling blocks, and the scan
stops at the ``b`` past which no larger one can beat the incumbent (docs/offloading-model.md,
"Large windows"). Members of earlier windows still running add ``(k_e/G) R(m_i)`` to a user's
edge time, a term of its own split alone: each cell prices it and the assignment stays exact
(docs/offloading-model.md, "The running batch").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.link import transmission_latency
from edgediff.core.model import Decision, running_latency
from edgediff.core.profiles import edge_step_latency
from edgediff.errors import InputError
from edgediff.offload.exact import (
    denied_utility,
    gains_fall_with_batch_size,
    larger_batch_bound,
    link_slope,
    rounding_slack,
)
from edgediff.offload.split import best_split_for_edge_latency


def _rank_values(instance: Instance, ranks: np.ndarray, split_grid: Sequence[int] | None):
    """Best split and its split-dependent value for every user at every batch rank."""
    edge = edge_step_latency(2 * ranks[None, :] - 1, instance.G, instance.edge_k, instance.edge_h)
    if split_grid is None:
        return best_split_for_edge_latency(instance, edge)
    grid = np.asarray(split_grid) if isinstance(split_grid, (list, tuple, np.ndarray)) else None
    bounds = f"[N_hat, N] = [{instance.N_hat}, {instance.N}]"
    if grid is None or grid.ndim != 1 or not np.issubdtype(grid.dtype, np.integer):
        raise InputError(f"split_grid must be a list of whole split points in {bounds}, got {split_grid!r}")
    grid = np.unique(grid).astype(np.int64)
    if grid.size == 0 or grid.min() < instance.N_hat or grid.max() > instance.N:
        raise InputError(f"split_grid must be a non-empty subset of {bounds}")
    local = instance.local_step_latency[:, None, None]
    n = grid[None, None, :]  # users x ranks x grid
    remaining = np.maximum(instance.N - n - instance.cached_steps[:, None, None], 0)  # after a cache hit
    value = instance.alpha[:, None, None] * instance.pai(n) - remaining * edge[..., None] - n * local
    value = value - running_latency(instance, remaining)
    best = value.argmax(axis=2)
    return grid[best], np.take_along_axis(value, best[..., None], axis=2)[..., 0]


def _assignment_rows(weight: np.ndarray) -> np.ndarray:
    """Users among the best ``b`` of some rank (a column of ``weight``; ``b`` its width).

    Some optimal assignment of users to the ``b`` ranks uses only these (docs/offloading-model.md, "Large windows").
    """
    num_users, b = weight.shape
    if b >= num_users:
        return np.arange(num_users)
    return np.unique(np.argpartition(-weight, b - 1, axis=0)[:b])


def solve_timeline(instance: Instance, split_grid: Sequence[int] | None = None) -> Decision:
    """The optimum under the timeline latency model; ``split_grid`` restricts granted splits."""
    from scipy.optimize import linear_sum_assignment

    max_batch = instance.max_granted
    if max_batch == 0:
        return Decision.all_local(instance)
    can_stop = gains_fall_with_batch_size(instance)
    slope_min = float(link_slope(instance).min())
    slack = rounding_slack(instance, 2 * max_batch - 1)
    waiting, denied = instance.waiting_latency[:, None], denied_utility(instance)[:, None]
    delay = instance.start_delay  # a granted user's, whatever its rank and split
    split, gain = np.zeros((instance.num_users, 0), np.int64), np.zeros((instance.num_users, 0))
    best_total, best = 0.0, Decision.all_local(instance)
    for b in range(1, max_batch + 1):
        if gain.shape[1] < min(b + 1, max_batch):  # ranks 1..b, and b + 1 for the bound; grow by doubling
            ranks = np.arange(gain.shape[1] + 1, min(max(2 * gain.shape[1], 32), max_batch) + 1)
            more_split, value = _rank_values(instance, ranks, split_grid)
            split, gain = np.hstack([split, more_split]), np.hstack([gain, value - waiting - denied - delay])
            rank_best = gain.max(axis=0)  # C_r: no user gains more at rank r, nor at any later rank
        link = transmission_latency(instance.payload_bits, b, instance.eta, instance.W_max)
        weight = gain[:, :b] - link[:, None]
        rows = _assignment_rows(weight)
        users, rank = linear_sum_assignment(weight[rows], maximize=True)
        users = rows[users]
        total = float((gain[users, rank] - link[users]).sum())
        if total > best_total + 1e-12:
            granted = np.zeros(instance.num_users, bool)
            granted[users] = True
            chosen = np.full(instance.num_users, instance.N, dtype=np.int64)
            chosen[users] = split[users, rank]
            best_total, best = total, Decision(granted, chosen)
        if b < max_batch and can_stop:
            above = np.concatenate([rank_best[b:], np.full(max_batch - len(rank_best), rank_best[-1])])
            if larger_batch_bound(total, above, slope_min, 2 * b) < best_total - slack:
                break
    return best


def brute_force_timeline(instance: Instance, split_grid: Sequence[int], chunk: int = 8192) -> tuple[float, Decision]:
    """Best objective under the timeline model over every grant vector and grid split, by enumeration.

    Independent of the rank argument above: the batch size of every edge step, ``b_s``, is counted
    from its definition. ``(1 + len(split_grid)) ** I`` candidates; meant for ``I <= 10``.
    """
    grid = np.asarray(sorted(set(split_grid)), dtype=np.int64)
    options = np.concatenate(([-1], grid))  # -1: denied
    users = instance.num_users
    steps = int(instance.N - grid.min())
    s = np.arange(1, steps + 1)
    denied = denied_utility(instance)
    best_value, best = -np.inf, Decision.all_local(instance)  # all-denied is a candidate: replaced below
    for start in range(0, len(options) ** users, chunk):
        index = np.arange(start, min(start + chunk, len(options) ** users))
        digits = (index[:, None] // len(options) ** np.arange(users)[None, :]) % len(options)
        n = options[digits]  # candidates x users
        granted = n >= 0
        count = granted.sum(axis=1)
        m = np.where(granted, np.maximum(instance.N - n - instance.cached_steps, 0), 0)  # edge steps still to run
        batch = (m[:, None, :] >= s[None, :, None]).sum(axis=2)  # b_s per candidate
        running = np.zeros(steps, np.int64)  # earlier windows' members in each step, from the instance's r_s
        running[: min(steps, instance.running.size)] = instance.running[:steps]
        batch = batch + running[None, :]
        elapsed = np.concatenate(
            [
                np.zeros((len(m), 1)),
                np.cumsum(edge_step_latency(batch, instance.G, instance.edge_k, instance.edge_h), 1),
            ],
            axis=1,
        )
        edge = np.take_along_axis(elapsed, m, axis=1)
        link = transmission_latency(
            instance.payload_bits[None, :], np.maximum(count, 1)[:, None], instance.eta, instance.W_max
        )
        split = np.where(granted, n, instance.N)
        latency = (
            instance.waiting_latency
            + split * instance.local_step_latency
            + np.where(granted, edge + link + instance.start_delay, 0.0)
        )
        value = np.where(granted, instance.alpha * instance.pai(split) - latency, denied).sum(axis=1)
        value[count > instance.max_granted] = -np.inf
        at = int(np.argmax(value))
        if value[at] > best_value:
            best_value, best = float(value[at]), Decision(granted[at].copy(), split[at].copy())
    return best_value, best
