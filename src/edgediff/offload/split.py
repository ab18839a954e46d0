"""The inner problem (P2): each granted user's best split point for a given batch size.

With ``b`` granted users, user i's granted utility as a function of its split ``n`` is
``O(n) = alpha F(n) - d n + const`` with ``d = L_i(1) - L_e(b, G)`` the time saved per
offloaded step. ``O'(n) = alpha a F(n)(1 - F(n)) - d``, and ``F(1 - F) = d / (alpha a)``
has the closed-form roots ``F = (1 +- sqrt(1 - 4 d / (alpha a))) / 2``, i.e.
``n = b_F + logit(F) / a``. ``O`` therefore decreases up to the smaller root, increases
up to the larger root ``n+`` and decreases after it, so over the integers of
``[N_hat, N]`` its maximum is at ``N_hat``, ``N``, ``floor(n+)`` or ``ceil(n+)`` (clipped).
This holds whether or not ``N_hat > b_F`` (the paper's concavity condition), and needs
no numerical root finding (the paper uses SciPy's solver because it missed the closed form).

With members of earlier windows running, ``O`` also loses ``(k_e/G) R(N - n - d)``, a term of
no closed shape: every integer split of ``[N_hat, N]`` is then evaluated (still exact;
docs/offloading-model.md, "The running batch").
"""

from __future__ import annotations

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.link import transmission_latency
from edgediff.core.model import Decision, running_latency
from edgediff.core.profiles import edge_step_latency

ENUMERATION_CELLS = 4_000_000
"""Values evaluated at once when every split is enumerated (users are taken in chunks)."""


def _best_on_interval(instance: Instance, alpha, saving, lo, hi) -> np.ndarray:
    """The ``n`` in ``[lo, hi]`` maximizing ``alpha F(n) - saving n`` (ties: the larger ``n``)."""
    pai = instance.pai
    q = saving / (alpha * pai.a)
    with np.errstate(invalid="ignore", divide="ignore"):
        upper_root = pai.inverse(0.5 * (1.0 + np.sqrt(1.0 - 4.0 * q)))
    # saving <= 0: the objective increases everywhere (best at hi); q >= 1/4: it decreases everywhere (lo).
    upper_root = np.where(saving <= 0, hi, np.where(q >= 0.25, lo, upper_root))
    upper_root = np.clip(upper_root, lo, hi)

    # Candidates ordered so that ties keep more steps local.
    candidates = np.stack(np.broadcast_arrays(hi, np.ceil(upper_root), np.floor(upper_root), lo)).astype(float)
    value = alpha * pai(candidates) - saving * candidates  # O(n) up to a constant
    return np.take_along_axis(candidates, value.argmax(axis=0)[None], axis=0)[0]


def best_split_for_edge_latency(instance: Instance, edge_step, users=slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Best split of each of ``users`` (default: all) for every per-step edge latency in ``edge_step`` (``(1, B)``).

    Returns ``(split, value)`` shaped ``(len(users), B)`` with
    ``value = alpha F(n) - max(0, N - n - d) edge - n L_i(1)``, the split-dependent part of the
    granted utility, at the best ``n`` (``d``: the user's cached steps).

    With cached steps the objective is the no-cache one on ``n <= N - d`` and the edge-free one
    ``alpha F(n) - n L_i(1)`` on ``n >= N - d``; each piece has the shape above, so the best of
    the two pieces' closed-form candidates is the optimum (docs/offloading-model.md, "Cached steps").
    """
    if instance.has_running:
        return _best_by_enumeration(instance, edge_step, users)
    alpha = instance.alpha[users, None]
    local = instance.local_step_latency[users, None]
    N, N_hat = float(instance.N), float(instance.N_hat)
    best = _best_on_interval(instance, alpha, local - edge_step, N_hat, N)
    if instance.has_cached_steps:
        cached_from = np.maximum(N - instance.cached_steps[users, None], N_hat)  # n >= this: no edge step left
        below = _best_on_interval(instance, alpha, local - edge_step, N_hat, cached_from)
        above = _best_on_interval(instance, alpha, local + 0.0 * edge_step, cached_from, N)
        cached = instance.cached_steps[users, None]

        def value(n):
            return alpha * instance.pai(n) - np.maximum(N - n - cached, 0) * edge_step - n * local

        best = np.where(value(above) >= value(below), above, below)
        return best.astype(np.int64), value(best)
    return best.astype(np.int64), alpha * instance.pai(best) - (instance.N - best) * edge_step - best * local


def _best_by_enumeration(instance: Instance, edge_step, users) -> tuple[np.ndarray, np.ndarray]:
    """:func:`best_split_for_edge_latency` by evaluating every split ``N..N_hat`` (ties: the
    larger ``n``), the running members' ``(k_e/G) R(m)`` included."""
    alpha = instance.alpha[users]
    local = instance.local_step_latency[users]
    cached = instance.cached_steps[users]
    edge_step = np.asarray(edge_step, dtype=float)
    shape = np.broadcast_shapes(alpha[:, None].shape, edge_step.shape)
    edge_step = np.broadcast_to(edge_step, shape)
    n = np.arange(instance.N, instance.N_hat - 1, -1)  # descending: argmax keeps the larger n on ties
    best, value = np.empty(shape, np.int64), np.empty(shape)
    chunk = max(1, ENUMERATION_CELLS // (shape[1] * n.size))
    for lo in range(0, shape[0], chunk):
        rows = slice(lo, lo + chunk)
        m = np.maximum(instance.N - n[None, :] - cached[rows, None], 0)  # users x splits
        fixed = alpha[rows, None] * instance.pai(n)[None, :] - n[None, :] * local[rows, None]
        fixed = fixed - running_latency(instance, m)
        values = fixed[:, None, :] - m[:, None, :] * edge_step[rows, :, None]  # users x B x splits
        at = values.argmax(axis=2)
        best[rows] = n[at]
        value[rows] = np.take_along_axis(values, at[..., None], axis=2)[..., 0]
    return best, value


def best_splits(instance: Instance, batch_sizes, users=slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Best split and granted utility of each of ``users`` (default: all) for every batch size.

    Returns ``(split, utility)``, both shaped ``(len(users), len(batch_sizes))``:
    ``utility = alpha F(n) - (l_R + l_T(b) + (N - n) L_e(b, G) + n L_i(1))`` at the best ``n``.
    """
    b = np.atleast_1d(np.asarray(batch_sizes, dtype=float))[None, :]
    edge = edge_step_latency(b, instance.G, instance.edge_k, instance.edge_h)
    best, value = best_split_for_edge_latency(instance, edge, users)
    link = transmission_latency(instance.payload_bits[users, None], b, instance.eta, instance.W_max)
    return best, value - instance.waiting_latency[users, None] - link - instance.start_delay


def optimize_splits(instance: Instance, granted) -> Decision:
    """Best splits for a given grant vector (the inner solver as a library call)."""
    granted = np.asarray(granted, dtype=bool)
    split = np.full(instance.num_users, instance.N, dtype=np.int64)
    count = int(granted.sum())
    if count:
        best, _ = best_splits(instance, [count])
        split[granted] = best[granted, 0]
    return Decision(granted, split)
