import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff.core.generator import random_instance
from edgediff.core.model import Decision, evaluate
from edgediff.offload.baselines import first_come
from edgediff.offload.policies import POLICY_NAMES, UnknownPolicy, make_policy
from reference import objective


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), users=st.integers(1, 20), gpus=st.integers(1, 16), bmax=st.integers(0, 20))
@pytest.mark.slow
def test_no_policy_beats_exact_and_reports_honestly(seed, users, gpus, bmax):
    inst = random_instance(users, gpus, seed=seed, B_max=bmax)
    best = evaluate(inst, make_policy("exact").decide(inst)).objective
    for name in POLICY_NAMES:
        decision = make_policy(name, seed=seed % 1000).decide(inst)
        value = evaluate(inst, decision).objective
        assert value <= best + 1e-9, name
        assert value == pytest.approx(objective(inst.to_dict(), list(decision.granted), list(decision.split)))


def test_ga_is_seeded_and_finds_the_optimum_on_small_instances():
    inst = random_instance(10, 8, seed=11)
    a, b = (make_policy("ga", seed=5).decide(inst) for _ in range(2))
    assert np.array_equal(a.granted, b.granted) and np.array_equal(a.split, b.split)
    assert evaluate(inst, a).objective == pytest.approx(evaluate(inst, make_policy("exact").decide(inst)).objective)


def test_milp_solves_its_split_fixed_problem_exactly():
    for seed in range(4):
        inst = random_instance(9, 4, seed=seed, B_max=5)
        got = evaluate(inst, make_policy("milp").decide(inst)).objective
        best = -np.inf
        for mask in itertools.product([False, True], repeat=inst.num_users):
            granted = np.array(mask)
            if granted.sum() > inst.B_max:
                continue
            d = Decision(granted, np.where(granted, inst.N_hat, inst.N))
            best = max(best, evaluate(inst, d).objective)
        assert got == pytest.approx(best, rel=1e-9)


def test_baselines():
    inst = random_instance(25, 8, seed=3, B_max=20)
    order = np.argsort(inst.request_time)
    fc = first_come(inst)
    assert fc.sum() == 20 and fc[order[:20]].all() and not fc[order[20:]].any()
    b1, b2, b3 = (make_policy(n).decide(inst) for n in ("b1", "b2", "b3"))
    assert np.array_equal(b1.granted, fc) and np.array_equal(b2.granted, fc)
    assert np.all(b2.split[fc] == inst.N_hat)
    assert b3.granted_count == 0 and np.all(b3.split == inst.N)


def test_unknown_policy():
    with pytest.raises(UnknownPolicy, match="choose from"):
        make_policy("dqn-typo")


def test_options_pass_through_to_the_policy_and_its_config():
    from edgediff.offload.ga import GaConfig

    inst = random_instance(8, 4, seed=3)
    small = make_policy("ga", {"population": 10, "generations": 5}, seed=2)
    assert small.options == {"seed": 2, "config": GaConfig(population=10, generations=5)}
    default = make_policy("ga", seed=2)
    assert default.options == {"seed": 2}
    assert evaluate(inst, make_policy("ga", population=100, seed=2).decide(inst)).objective == pytest.approx(
        evaluate(inst, default.decide(inst)).objective
    )
    grid = make_policy("timeline", split_grid=[80, 140, 200])
    assert set(grid.decide(inst).split.tolist()) <= {80, 140, 200}


def test_unknown_option_names_it_and_the_valid_ones():
    from edgediff.errors import InputError
    from edgediff.offload.policies import UnknownPolicyOption

    with pytest.raises(UnknownPolicyOption, match=r"'populaton'.*seed, config, population") as err:
        make_policy("ga", populaton=10)
    assert isinstance(err.value, InputError)
    make_policy("exact", seed=1, time_limit=None, checkpoint=None)  # run settings: ignored where not taken


def test_a_built_policy_is_returned_as_it_is():
    from edgediff.offload.policies import UnknownPolicyOption

    policy = make_policy("b3")
    assert make_policy(policy) is policy and make_policy(policy, seed=3) is policy
    with pytest.raises(UnknownPolicyOption, match="'population' applies to a policy name"):
        make_policy(policy, population=5)
