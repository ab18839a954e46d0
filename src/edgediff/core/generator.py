"""The random instance distribution of docs/offloading-model.md (as in the paper's published code)."""

from __future__ import annotations

import numpy as np

from edgediff.core.instance import INTERMEDIATE_BITS, PROMPT_BITS, Instance
from edgediff.core.pai import PaiCurve
from edgediff.core.profiles import DEFAULT_EDGE, PROFILE_TABLE, USER_ROWS, edge_step_latency

ALPHA_REFERENCE_BATCH = 20
"""Batch size whose edge latency sets the lower end of the alpha interval (docs/offloading-model.md)."""

USER_ROW_WEIGHTS = np.linspace(1.0, 2.0, USER_ROWS.size) / np.linspace(1.0, 2.0, USER_ROWS.size).sum()


def alpha_interval(local_step_latency, gpus: int, pai: PaiCurve, n_hat: int, n: int, edge=DEFAULT_EDGE):
    """``(lo, hi)`` of the uniform alpha distribution for users of the given step latency.

    ``lo = D(20) / (a F(N_hat)(1 - F(N_hat)))``, ``hi = 0.05 D(1) / (a F(N)(1 - F(N)))``
    with ``D(b) = max(L_i(1) - L_e(b, G), 0)``; ``hi`` is raised to ``lo`` where smaller.
    """

    def saving(b):
        return np.maximum(local_step_latency - edge_step_latency(b, gpus, edge.k, edge.h), 0.0)

    lo = saving(ALPHA_REFERENCE_BATCH) / pai.derivative(n_hat)
    hi = 0.05 * saving(1) / pai.derivative(n)
    return lo, np.maximum(hi, lo)


def random_instance(
    num_users: int,
    gpus: int = 8,
    *,
    seed: int | np.random.Generator,
    B_max: int = 20,
    N: int = 200,
    N_hat: int = 80,
    K: float = 1.0,
) -> Instance:
    """A random instance on the paper's defaults; the same seed gives the same instance."""
    if num_users < 1:
        raise ValueError("num_users must be >= 1")
    if gpus < 1:
        raise ValueError("gpus must be >= 1")
    if B_max < 0:
        raise ValueError("B_max must be >= 0")
    rng = np.random.default_rng(seed)
    pai = PaiCurve()
    rows = rng.choice(USER_ROWS, size=num_users, p=USER_ROW_WEIGHTS)
    k, h = PROFILE_TABLE[rows, 0], PROFILE_TABLE[rows, 1]
    request_time = rng.uniform(0.0, K, size=num_users)
    lo, hi = alpha_interval(k + h, gpus, pai, N_hat, N)
    alpha = rng.uniform(lo, hi)
    # A user as fast as the edge at batch 20 would get alpha = 0; keep alpha > 0, as (P1) requires.
    alpha = np.maximum(alpha, 1e-6)
    return Instance(
        ids=tuple(f"u{i}" for i in range(num_users)),
        k=k,
        h=h,
        alpha=alpha,
        request_time=request_time,
        prompt_bits=np.full(num_users, float(PROMPT_BITS)),
        intermediate_bits=np.full(num_users, float(INTERMEDIATE_BITS)),
        N=N,
        N_hat=N_hat,
        B_max=B_max,
        G=gpus,
        K=K,
        pai=pai,
    )
