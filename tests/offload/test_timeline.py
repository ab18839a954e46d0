import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff.core.generator import random_instance
from edgediff.core.model import Decision, evaluate
from edgediff.offload.exact import solve_exact
from edgediff.offload.timeline import brute_force_timeline, solve_timeline

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
