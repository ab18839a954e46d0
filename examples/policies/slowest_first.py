"""A greedy offloading heuristic, as your own policy (docs/your-policy.md): grant the users
whose devices are slowest, up to B_max, each split at N_hat (the most steps the edge may run).

    edgediff solve --policy examples/policies/slowest_first.py:solve --users 20
"""

import numpy as np

from edgediff.core.model import Decision


def solve(instance, *, share: float = 1.0) -> Decision:
    """``share``: the fraction of the window's users to consider granting (a --policy-option)."""
    slowest = np.argsort(-(instance.k + instance.h), kind="stable")  # L(1) of each device, slowest first
    count = min(instance.B_max, round(share * instance.num_users))
    granted = np.zeros(instance.num_users, dtype=bool)
    granted[slowest[:count]] = True
    return Decision(granted, np.where(granted, instance.N_hat, instance.N))
