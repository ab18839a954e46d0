"""The random instance distribution of docs/offloading-model.md (as in the paper's published code).

The distribution itself is :data:`edgediff.core.scenario.PAPER_SCENARIO`; this module keeps the
short call the rest of the package and its users know.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.scenario import (  # noqa: F401  (re-exported: their historical home)
    ALPHA_REFERENCE_BATCH,
    PAPER_SCENARIO,
    USER_ROW_WEIGHTS,
    alpha_interval,
    draw_instance,
)


def random_instance(
    num_users: int,
    gpus: int = 8,
    *,
    seed: int | np.random.SeedSequence | np.random.Generator,
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
    scenario = dataclasses.replace(PAPER_SCENARIO, G=gpus, B_max=B_max, N=N, N_hat=N_hat, K=K)
    return draw_instance(scenario, num_users, seed)
