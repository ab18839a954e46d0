"""``milp``: the paper's Branch & Bound comparison, solved with HiGHS through SciPy.

As in the paper (Sec. IV, eqs. (11)-(19); Sec. VI-C) the split of every granted user is
fixed at ``N_hat``, so (P1) becomes a quadratic 0-1 program in the grant vector ``x``:
with ``b = sum_j x_j``, granting i gains ``A_i - B_i b`` over denying it, where
``A_i = alpha_i (F(N_hat) - F(N)) + (N - N_hat)(L_i(1) - h_e)`` and
``B_i = (s_p,i + s_m,i) / (eta W_max) + (N - N_hat) k_e / G``. With cached steps ``d_i`` the edge
runs ``e_i = max(0, N - N_hat - d_i)`` steps: ``A_i`` gains ``(N - N_hat - e_i) h_e`` and
``B_i``'s edge term is ``e_i k_e / G`` (docs/offloading-model.md, "Cached steps"). The products
``y_ij = x_i x_j`` (i < j) are linearized in the standard way (Glover & Woolsey): since
their cost ``B_i + B_j`` is non-negative, ``y_ij >= x_i + x_j - 1, y_ij >= 0`` suffices.
The resulting grant vector (split ``N_hat``) is what the policy returns; its objective is
then computed by the true model like every other policy's. Members of earlier windows still
running add ``(k_e/G) R(e_i)`` to a granted user's edge time, a constant of ``x`` at the fixed
split: ``A_i`` loses it (docs/offloading-model.md, "The running batch").
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from edgediff.core.instance import Instance
from edgediff.core.link import transmission_latency
from edgediff.core.model import Decision, running_latency
from edgediff.offload.policies import SolverError


def solve_milp(instance: Instance, time_limit: float | None = None) -> Decision:
    num_users = instance.num_users
    if instance.max_granted == 0:
        return Decision.all_local(instance)
    pai, steps = instance.pai, instance.N - instance.N_hat
    edge_steps = np.maximum(steps - instance.cached_steps, 0)  # what the edge runs after a cache hit
    # (steps - edge_steps) h_e is 0.0 without cached steps: the paper's A_i, bit for bit
    a = (
        instance.alpha * (pai(instance.N_hat) - pai(instance.N))
        + steps * (instance.local_step_latency - instance.edge_h)
        + (steps - edge_steps) * instance.edge_h
        - running_latency(instance, edge_steps)
        - instance.start_delay
    )
    slope = transmission_latency(instance.payload_bits, 1, instance.eta, instance.W_max)
    slope = slope + edge_steps * instance.edge_k / instance.G
    i, j = np.triu_indices(num_users, k=1)
    num_pairs = i.size

    # Minimize: -sum_i (A_i - B_i) x_i + sum_{i<j} (B_i + B_j) y_ij  (x_i^2 = x_i).
    cost = np.concatenate([-(a - slope), slope[i] + slope[j]])
    rows = np.repeat(np.arange(num_pairs), 3)
    cols = np.stack([i, j, num_users + np.arange(num_pairs)], axis=1).ravel()
    vals = np.tile([1.0, 1.0, -1.0], num_pairs)
    pair_rows = sparse.csr_array((vals, (rows, cols)), shape=(num_pairs, num_users + num_pairs))
    capacity_row = sparse.csr_array(
        (np.ones(num_users), (np.zeros(num_users, int), np.arange(num_users))),
        shape=(1, num_users + num_pairs),
    )
    constraints = [LinearConstraint(capacity_row, 0, instance.B_max)]  # C2
    if num_pairs:
        constraints.append(LinearConstraint(pair_rows, -np.inf, 1.0))  # y_ij >= x_i + x_j - 1
    integrality = np.concatenate([np.ones(num_users), np.zeros(num_pairs)])
    options = {} if time_limit is None else {"time_limit": float(time_limit)}
    result = milp(cost, constraints=constraints, integrality=integrality, bounds=Bounds(0, 1), options=options)
    if result.x is None:
        raise SolverError(f"HiGHS found no solution: {result.message}")
    granted = result.x[:num_users] > 0.5
    return Decision(granted, np.where(granted, instance.N_hat, instance.N))
