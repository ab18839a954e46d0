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
"""

from __future__ import annotations

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.link import transmission_latency
from edgediff.core.model import Decision
from edgediff.core.profiles import edge_step_latency


def _upper_root(saving, alpha, pai, low, high) -> np.ndarray:
    """The larger stationary point ``n+`` of ``alpha F(n) - saving n``, clipped to ``[low, high]``."""
    q = saving / (alpha * pai.a)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = pai.inverse(0.5 * (1.0 + np.sqrt(1.0 - 4.0 * q)))
    # saving <= 0: O increases everywhere (best at high); q >= 1/4: O decreases everywhere (low).
    root = np.where(saving <= 0, high, np.where(q >= 0.25, low, root))
    return np.clip(root, low, high)


def best_split_for_edge_latency(instance: Instance, edge_step, users=slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Best split of each of ``users`` (default: all) for every per-step edge latency in ``edge_step`` (``(1, B)``).

    Returns ``(split, value)`` shaped ``(len(users), B)`` with
    ``value = alpha F(n) - max(0, N - n - d) edge - n L_i(1)``, the split-dependent part of the
    granted utility, at the best ``n`` (``d``: the user's cached steps, 0 without a cache hit).

    With ``d > 0`` the edge charges nothing for the last ``d`` offloaded steps, so the value is the
    closed form's on two pieces: ``n <= N - d`` (edge latency ``edge``) and ``n >= N - d`` (edge
    latency 0); the best split is among each piece's ends and ``floor/ceil(n+)``.
    """
    alpha = instance.alpha[users, None]
    local = instance.local_step_latency[users, None]
    N, N_hat = float(instance.N), float(instance.N_hat)
    hit_split = np.maximum(N - instance.cached_steps[users, None], N_hat)  # max(N_hat, N - d): where hits start to count
    saving = local - edge_step  # time saved per offloaded step that the edge runs
    pai = instance.pai

    # piece 1, [N_hat, N - d] (empty unless N - d >= N_hat): every offloaded step costs `edge`
    root = _upper_root(saving, alpha, pai, N_hat, hit_split)
    # piece 2, [max(N_hat, N - d), N]: the cache already did every offloaded step
    hit_root = _upper_root(np.broadcast_to(local, saving.shape), alpha, pai, hit_split, N)
    # Candidates in order of decreasing n, so that ties keep more steps local (with d = 0 the
    # first four are all N: the choice is the closed form's without cached steps, bit for bit).
    candidates = np.stack(
        np.broadcast_arrays(
            N, np.ceil(hit_root), np.floor(hit_root), hit_split, np.ceil(root), np.floor(root), N_hat
        )
    )
    # O(n) up to a constant: alpha F(n) - saving n on piece 1, and less edge (n - (N - d)) above it
    beyond = np.maximum(candidates - (N - instance.cached_steps[users, None]), 0.0)
    value = alpha * pai(candidates) - saving * candidates - beyond * edge_step
    best = np.take_along_axis(candidates, value.argmax(axis=0)[None], axis=0)[0]
    remaining = np.maximum(N - best - instance.cached_steps[users, None], 0.0)
    return best.astype(np.int64), alpha * pai(best) - remaining * edge_step - best * local


def best_splits(instance: Instance, batch_sizes, users=slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Best split and granted utility of each of ``users`` (default: all) for every batch size.

    Returns ``(split, utility)``, both shaped ``(len(users), len(batch_sizes))``:
    ``utility = alpha F(n) - (l_R + l_T(b) + (N - n) L_e(b, G) + n L_i(1))`` at the best ``n``.
    """
    b = np.atleast_1d(np.asarray(batch_sizes, dtype=float))[None, :]
    edge = edge_step_latency(b, instance.G, instance.edge_k, instance.edge_h)
    best, value = best_split_for_edge_latency(instance, edge, users)
    link = transmission_latency(instance.payload_bits[users, None], b, instance.eta, instance.W_max)
    return best, value - instance.waiting_latency[users, None] - link


def optimize_splits(instance: Instance, granted) -> Decision:
    """Best splits for a given grant vector (the inner solver as a library call)."""
    granted = np.asarray(granted, dtype=bool)
    split = np.full(instance.num_users, instance.N, dtype=np.int64)
    count = int(granted.sum())
    if count:
        best, _ = best_splits(instance, [count])
        split[granted] = best[granted, 0]
    return Decision(granted, split)
