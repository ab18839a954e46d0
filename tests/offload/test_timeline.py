import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from edgediff.core.generator import random_instance
from edgediff.core.link import transmission_latency
from edgediff.core.model import Decision, evaluate
from edgediff.offload.exact import denied_utility, solve_exact
from edgediff.offload.timeline import _assignment_rows, _rank_values, brute_force_timeline, solve_timeline

GRID = (80, 140, 200)


def timeline_objective(inst, decision):
    return evaluate(inst, decision, "timeline").objective


@pytest.mark.parametrize("users", [1, 4, 7])
@pytest.mark.parametrize("gpus", [1, 8])
def test_timeline_matches_brute_force_on_a_split_grid(users, gpus):
    for seed in range(3):
        inst = random_instance(users, gpus, seed=seed, B_max=max(1, users - 2))
        best, best_decision = brute_force_timeline(inst, GRID)
        decision = solve_timeline(inst, split_grid=GRID)
        assert set(decision.split[decision.granted]) <= set(GRID)
        assert decision.granted_count <= inst.B_max
        assert timeline_objective(inst, decision) == pytest.approx(best, rel=1e-9, abs=1e-9)
        assert timeline_objective(inst, best_decision) == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_brute_force_equals_the_best_decision_scored_by_evaluate():
    inst = random_instance(3, 2, seed=4, B_max=2)
    options = (-1, *GRID)  # -1: denied
    values = []
    for choice in itertools.product(options, repeat=inst.num_users):
        n = np.array(choice)
        if (n >= 0).sum() <= inst.B_max:
            values.append(timeline_objective(inst, Decision(n >= 0, np.where(n >= 0, n, inst.N))))
    assert brute_force_timeline(inst, GRID)[0] == pytest.approx(max(values), rel=1e-12)


def test_timeline_with_free_splits_matches_brute_force_over_every_integer_split():
    for seed in range(4):
        inst = random_instance(2, 4, seed=seed)
        best, _ = brute_force_timeline(inst, range(inst.N_hat, inst.N + 1))
        assert timeline_objective(inst, solve_timeline(inst)) == pytest.approx(best, rel=1e-9, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), users=st.integers(1, 60), gpus=st.integers(1, 16), bmax=st.integers(0, 25))
def test_timeline_is_never_worse_than_exact_under_the_timeline_model(seed, users, gpus, bmax):
    inst = random_instance(users, gpus, seed=seed, B_max=bmax)
    exact = solve_exact(inst)
    timeline = solve_timeline(inst)
    assert timeline.granted_count <= inst.B_max
    assert timeline_objective(inst, timeline) >= timeline_objective(inst, exact) - 1e-9
    # ... and the timeline model is never slower than the paper model for the same decision.
    assert timeline_objective(inst, exact) >= evaluate(inst, exact).objective - 1e-9


def test_split_grid_outside_the_range_is_rejected():
    inst = random_instance(3, 8, seed=0)
    with pytest.raises(ValueError, match="split_grid"):
        solve_timeline(inst, split_grid=[10, 200])


def assignment_per_batch_size(inst, split_grid=None):
    """The previous ``timeline``: one assignment over every user for every ``b`` up to ``min(B_max, I)``."""
    if inst.max_granted == 0:
        return Decision.all_local(inst)
    ranks = np.arange(1, inst.max_granted + 1)
    split, value = _rank_values(inst, ranks, split_grid)
    gain = value - inst.waiting_latency[:, None] - denied_utility(inst)[:, None]
    best_total, best = 0.0, Decision.all_local(inst)
    for b in ranks:
        link = transmission_latency(inst.payload_bits, b, inst.eta, inst.W_max)
        users, rank = linear_sum_assignment(gain[:, :b] - link[:, None], maximize=True)
        total = float((gain[users, rank] - link[users]).sum())
        if total > best_total + 1e-12:
            chosen = np.full(inst.num_users, inst.N, dtype=np.int64)
            chosen[users] = split[users, rank]
            best_total, best = total, Decision(np.isin(np.arange(inst.num_users), users), chosen)
    return best


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    users=st.integers(1, 120),
    gpus=st.sampled_from([1, 2, 8, 16]),
    bmax_share=st.floats(0, 1.2),
    grid=st.sampled_from([None, None, GRID]),
)
def test_timeline_equals_an_assignment_over_every_user_and_batch_size(seed, users, gpus, bmax_share, grid):
    # pruned rows and the early stop change neither the decision nor its value
    inst = random_instance(users, gpus, seed=seed, B_max=round(bmax_share * users))
    reference = assignment_per_batch_size(inst, grid)
    decision = solve_timeline(inst, split_grid=grid)
    assert timeline_objective(inst, decision) == pytest.approx(timeline_objective(inst, reference), rel=1e-12, abs=1e-9)
    assert np.array_equal(decision.granted, reference.granted) and np.array_equal(decision.split, reference.split)


@pytest.mark.parametrize("users, bmax", [(1000, 200), (400, 400)])
def test_timeline_equals_the_full_assignment_scan_at_scale(users, bmax):
    inst = random_instance(users, 8, seed=users, B_max=bmax)
    decision, reference = solve_timeline(inst), assignment_per_batch_size(inst)
    assert np.array_equal(decision.granted, reference.granted) and np.array_equal(decision.split, reference.split)


@pytest.mark.parametrize("edge_k, eta", [(-1e-4, 10.0), (0.0, 1e30)])
def test_timeline_matches_where_gains_need_not_fall_or_the_link_is_free(edge_k, eta):
    # edge_k < 0 (no valid instance file has it): no early stop, every batch size over pruned rows
    inst = replace(random_instance(60, 8, seed=5, B_max=30), edge_k=edge_k, eta=eta)
    decision, reference = solve_timeline(inst), assignment_per_batch_size(inst)
    assert np.array_equal(decision.granted, reference.granted) and np.array_equal(decision.split, reference.split)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), users=st.integers(1, 40), b=st.integers(1, 12), ties=st.booleans())
def test_an_assignment_over_each_ranks_best_users_is_optimal(seed, users, b, ties):
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(users, min(b, users)))
    if ties:
        weight = np.round(weight)  # many equal cells
    rows = _assignment_rows(weight)
    pruned = weight[rows][linear_sum_assignment(weight[rows], maximize=True)].sum()
    assert pruned == pytest.approx(weight[linear_sum_assignment(weight, maximize=True)].sum(), abs=1e-12)
