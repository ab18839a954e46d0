"""The paper's three baselines (Sec. VI-C): first come, first granted; or all local."""

from __future__ import annotations

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.model import Decision
from edgediff.offload.split import optimize_splits


def first_come(instance: Instance) -> np.ndarray:
    """Grant the ``B_max`` earliest requests (ties: file order); later ones run locally."""
    order = np.argsort(instance.request_time, kind="stable")
    granted = np.zeros(instance.num_users, bool)
    granted[order[: instance.max_granted]] = True
    return granted


def solve_b1(instance: Instance) -> Decision:
    """Baseline 1: first come up to ``B_max`` granted, split optimized."""
    return optimize_splits(instance, first_come(instance))


def solve_b2(instance: Instance) -> Decision:
    """Baseline 2: first come up to ``B_max`` granted, ``N - N_hat`` steps offloaded."""
    granted = first_come(instance)
    return Decision(granted, np.where(granted, instance.N_hat, instance.N))


def solve_b3(instance: Instance) -> Decision:
    """Baseline 3: everyone runs all steps locally."""
    return Decision.all_local(instance)
