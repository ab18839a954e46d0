"""``exact``: the provable optimum of (P1) under the paper latency model.

With exactly ``b`` users granted, every granted user's best split and utility depend on
``b`` alone (the batch size fixes ``L_e`` and the bandwidth share), so the objective is
``sum_i V_d,i + sum_{i granted} gain_i(b)`` with ``gain_i(b) = V_g,i(b) - V_d,i``. For each
``b`` the best grant set is the ``b`` users of largest gain; the optimum is the best ``b``.

Two scans return the same decision. :func:`full_scan` builds the whole ``(I, B)`` gain table
and sorts every column: fastest for small windows. :func:`bounded_scan` is for city-scale
windows: gains only fall as ``b`` grows, so it evaluates each batch size only for the users
that can be among its best ``b + 1``, and stops at the batch size past which no larger one can
beat the incumbent. Members of earlier windows still running add ``(k_e/G) R(m_i)`` to a
granted user's edge time, a term of its own split alone: the decomposition, the falling gains
and so both scans stay exact (the splits are then enumerated). Proofs: docs/offloading-model.md.
"""

from __future__ import annotations

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.link import transmission_latency
from edgediff.core.model import Decision, denied_latency, running_latency
from edgediff.core.profiles import edge_step_latency
from edgediff.offload.split import best_splits

FULL_SCAN_MAX_CELLS = 10_000
"""Windows whose gain table has at most this many cells get the full scan (one array operation wins)."""

ROUNDING_SLACK = 1e-9
"""Relative slack of the bounded scan's comparisons, far above float64 rounding (docs/offloading-model.md)."""


def denied_utility(instance: Instance) -> np.ndarray:
    """``V_d,i = alpha_i F(N) - (l_R,i + N L_i(1))``."""
    return instance.alpha * instance.pai(instance.N) - denied_latency(instance)


def gain_table(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """``(split, gain)`` for ``b = 1..min(B_max, I)``, each shaped ``(I, B)``."""
    batch_sizes = np.arange(1, instance.max_granted + 1)
    split, granted_utility = best_splits(instance, batch_sizes)
    return split, granted_utility - denied_utility(instance)[:, None]


def decision_from_table(instance: Instance, granted: np.ndarray, split: np.ndarray) -> Decision:
    """The decision granting ``granted``, each with its best split for that batch size."""
    b = int(granted.sum())
    if b == 0:
        return Decision.all_local(instance)
    return Decision(granted, np.where(granted, split[:, b - 1], instance.N))


def gains_fall_with_batch_size(instance: Instance) -> bool:
    """Whether every ``gain_i(b)`` is non-increasing in ``b`` (true of every valid instance file)."""
    return instance.edge_k >= 0 and bool(np.all(instance.payload_bits >= 0))


def solve_exact(instance: Instance) -> Decision:
    """The optimum of (P1) under the paper latency model."""
    small = instance.num_users * instance.max_granted <= FULL_SCAN_MAX_CELLS
    if small or not gains_fall_with_batch_size(instance):
        return full_scan(instance)
    return bounded_scan(instance)


def full_scan(instance: Instance) -> Decision:
    """``exact`` by the whole gain table: the reference :func:`bounded_scan` must equal."""
    if instance.max_granted == 0:
        return Decision.all_local(instance)
    split, gain = gain_table(instance)
    order = np.argsort(-gain, axis=0, kind="stable")  # per column, best users first
    top_sums = np.cumsum(np.take_along_axis(gain, order, axis=0), axis=0)
    columns = np.arange(gain.shape[1])
    best_total = top_sums[columns, columns]  # sum of the top b gains for b = column + 1
    col = int(np.argmax(best_total))
    if best_total[col] <= 0:  # granting nobody is at least as good
        return Decision.all_local(instance)
    chosen = order[: col + 1, col]
    granted = np.zeros(instance.num_users, bool)
    granted[chosen] = True
    return decision_from_table(instance, granted, split)


def link_slope(instance: Instance) -> np.ndarray:
    """``delta_i = l_T(i, b + 1) - l_T(i, b)``: what one more granted user adds to user i's link time."""
    return transmission_latency(instance.payload_bits, 1, instance.eta, instance.W_max)


def larger_batch_bound(value: float, above: np.ndarray, slope_min: float, offset: int) -> float:
    """``max_t value + sum_{k <= t} above_k - slope_min t (offset + t)`` over ``t = 1..len(above)``.

    What no batch size ``b + t`` above the current ``b`` can exceed (docs/offloading-model.md, "Large windows").
    """
    steps = np.arange(1, len(above) + 1)
    return value + float(np.max(np.cumsum(above) - slope_min * steps * (offset + steps)))


def rounding_slack(instance: Instance, edge_batch: int) -> float:
    """``ROUNDING_SLACK * B * M``: ``M`` bounds every term of a gain whose edge steps run at batch sizes
    up to ``edge_batch`` with at most ``B = min(B_max, I)`` users granted."""
    batch = instance.max_granted
    largest_term = (
        np.max(instance.alpha + instance.waiting_latency + instance.N * np.abs(instance.local_step_latency))
        + instance.N * abs(edge_step_latency(edge_batch, instance.G, instance.edge_k, instance.edge_h))
        + abs(float(running_latency(instance, instance.N)))
        + np.max(transmission_latency(instance.payload_bits, batch, instance.eta, instance.W_max))
    )
    return ROUNDING_SLACK * batch * float(largest_term)


def bounded_scan(instance: Instance) -> Decision:
    """``exact`` by increasing batch size with two bounds; the same decision as :func:`full_scan`.

    ``bound_i >= gain_i(b)`` holds for every user at the current ``b``: a user's last evaluated
    gain less the link cost added since (gains fall at least that fast). Column ``b`` is evaluated
    only for users whose bound reaches the ``(b+1)``-th best gain of a probe, which holds every
    user among the true best ``b + 1``. After column ``b``, every larger batch size ``b + t`` is worth
    at most ``T(b) + t g_(b+1) - delta_min t (b + t)`` (``T(b)``: the top-``b`` sum, ``g_(b+1)``: the
    runner-up, ``delta_min``: the least link cost per unit of batch size); once that is below the
    incumbent for every ``t`` no larger batch size can win.
    """
    if not gains_fall_with_batch_size(instance):
        raise ValueError("bounded_scan needs gains that fall with the batch size (edge k >= 0, payloads >= 0)")
    num_users, max_batch = instance.num_users, instance.max_granted
    if max_batch == 0:
        return Decision.all_local(instance)
    denied = denied_utility(instance)
    slope = link_slope(instance)
    slope_min = float(slope.min())
    slack = rounding_slack(instance, max_batch)

    def column(b: int, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        split, utility = best_splits(instance, [b], users)
        return split[:, 0], utility[:, 0] - denied[users]

    bound = np.full(num_users, np.inf)  # nothing evaluated yet
    best_total, chosen, chosen_split = -np.inf, np.zeros(0, np.int64), np.zeros(0, np.int64)
    for b in range(1, max_batch + 1):
        bound -= slope  # still >= gain_i(b): gain_i(b) <= gain_i(b - 1) - delta_i
        contenders = min(b + 1, num_users)  # the best b and the runner-up
        if b > 1:  # column 1 is evaluated for everyone: it seeds the bounds
            probe = np.argpartition(bound, num_users - contenders)[num_users - contenders :]
            floor = column(b, probe)[1].min()  # <= the contenders-th best gain of column b
            users = np.flatnonzero(bound >= floor - slack)
        else:
            users = np.arange(num_users)
        split, gain = column(b, users)
        bound[users] = gain
        order = np.argsort(-gain, kind="stable")  # users ascend, so ties keep the full scan's order
        total = float(np.cumsum(gain[order[:b]])[-1])
        if total > best_total:
            best_total, chosen, chosen_split = total, users[order[:b]], split[order[:b]]
        if b == max_batch:
            break
        runner_up = np.full(max_batch - b, gain[order[b]])  # bounds each further member's gain at b
        if larger_batch_bound(total, runner_up, slope_min, b) < max(best_total, 0) - slack:
            break
    if best_total <= 0:
        return Decision.all_local(instance)
    granted = np.zeros(num_users, bool)
    granted[chosen] = True
    split = np.full(num_users, instance.N, dtype=np.int64)
    split[chosen] = chosen_split
    return Decision(granted, split)
