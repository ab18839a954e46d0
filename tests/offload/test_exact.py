import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff.core.generator import random_instance
from edgediff.core.model import evaluate
from edgediff.offload.exact import solve_exact
from reference import objective


def brute_force_optimum(inst):
    """Max of (P1) over all 2^I grant vectors, each granted user's split by full scan."""
    n = np.arange(inst.N_hat, inst.N + 1)
    local = inst.local_step_latency[:, None]
    wait = (inst.K - inst.request_time)[:, None]
    pai = inst.pai(n)[None, :]
    denied = inst.alpha * inst.pai(inst.N) - (wait[:, 0] + inst.N * local[:, 0])
    granted_best = np.empty((inst.num_users, inst.num_users + 1))
    for b in range(1, inst.num_users + 1):
        edge = inst.edge_k * b / inst.G + inst.edge_h
        tx = inst.payload_bits[:, None] * b / (inst.eta * inst.W_max)
        util = inst.alpha[:, None] * pai - (wait + tx + (inst.N - n) * edge + n * local)
        granted_best[:, b] = util.max(axis=1)
    masks = np.array(list(itertools.product([False, True], repeat=inst.num_users)))
    counts = masks.sum(axis=1)
    feasible = counts <= inst.B_max
    values = np.where(masks, granted_best[:, counts].T, denied[None, :]).sum(axis=1)
    return values[feasible].max()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), users=st.integers(1, 14), gpus=st.integers(1, 16), bmax=st.integers(0, 16))
def test_exact_equals_brute_force(seed, users, gpus, bmax):
    inst = random_instance(users, gpus, seed=seed, B_max=bmax)
    decision = solve_exact(inst)
    value = evaluate(inst, decision).objective
    assert value == pytest.approx(brute_force_optimum(inst), rel=1e-9, abs=1e-9)
    # and the reported value is what an independent loop computes from the decision
    assert value == pytest.approx(objective(inst.to_dict(), list(decision.granted), list(decision.split)))


def test_exact_with_no_capacity_is_all_local():
    inst = random_instance(6, 8, seed=1, B_max=0)
    assert solve_exact(inst).granted_count == 0


def test_exact_respects_bmax_when_many_users_want_the_edge():
    inst = random_instance(40, 16, seed=4, B_max=3)
    assert solve_exact(inst).granted_count <= 3
