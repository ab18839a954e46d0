"""``exact``: the provable optimum of (P1) under the paper latency model.

With exactly ``b`` users granted, every granted user's best split and utility depend on
``b`` alone (the batch size fixes ``L_e`` and the bandwidth share), so the objective is
``sum_i V_d,i + sum_{i granted} gain_i(b)`` with ``gain_i(b) = V_g,i(b) - V_d,i``. For each
``b`` the best grant set is the ``b`` users of largest gain; the optimum is the best ``b``.
Cost: one ``(I, B)`` gain table and a column-wise sort. Proof: docs/offloading-model.md.
"""

from __future__ import annotations

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.model import Decision, denied_latency
from edgediff.offload.split import best_splits


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


def solve_exact(instance: Instance) -> Decision:
    num_users = instance.num_users
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
    granted = np.zeros(num_users, bool)
    granted[chosen] = True
    return decision_from_table(instance, granted, split)
