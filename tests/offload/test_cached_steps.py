"""Part A with cached steps d_i (docs/offloading-model.md, "Cached steps"), beyond exact's tests
in test_exact.py: the split against a scan, timeline and milp against enumeration, dqn's refusal,
and d = 0 changes no policy's decision."""

import itertools
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff.core.generator import random_instance
from edgediff.core.instance import Instance, InstanceError
from edgediff.core.model import Decision, evaluate
from edgediff.offload.milp import solve_milp
from edgediff.offload.policies import CheckpointError, make_policy
from edgediff.offload.split import best_splits
from edgediff.offload.timeline import brute_force_timeline, solve_timeline
from reference import objective


def small_window(seed: int, users: int, gpus: int, bmax: int, N: int = 12, N_hat: int = 4) -> Instance:
    """A generator window scaled to N steps (every split enumerable), with random cached steps
    and a PAI curve whose interesting part lies inside [N_hat, N]."""
    rng = np.random.default_rng(seed)
    base = random_instance(users, gpus, seed=seed, B_max=bmax)
    data = base.to_dict()
    data.update(N=N, N_hat=N_hat, pai={"a": float(rng.uniform(0.2, 2.0)), "b": float(rng.uniform(0, N))})
    for user in data["users"]:
        user["alpha"] = float(rng.uniform(0.05, 5.0))
        user["cached_steps"] = int(rng.integers(0, N + 1)) if rng.random() < 0.7 else 0
    return Instance.from_dict(data)


def enumerate_all(inst: Instance, model: str = "paper") -> float:
    """Best objective over every grant vector and every integer split of every granted user,
    computed by the loop-by-loop reference model (not core.model)."""
    data = inst.to_dict()
    options = [None, *range(inst.N_hat, inst.N + 1)]  # None: denied
    best = -np.inf
    for choice in itertools.product(options, repeat=inst.num_users):
        granted = [c is not None for c in choice]
        if sum(granted) > inst.B_max:
            continue
        split = [inst.N if c is None else c for c in choice]
        best = max(best, objective(data, granted, split, model))
    return best


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), users=st.integers(1, 4), bmax=st.integers(1, 4))
def test_timeline_equals_enumeration(seed, users, bmax):
    inst = small_window(seed, users, 8, bmax, N=10, N_hat=4)
    decision = solve_timeline(inst)
    value = evaluate(inst, decision, "timeline").objective
    assert value == pytest.approx(enumerate_all(inst, "timeline"), rel=1e-9, abs=1e-9)
    grid_value, _ = brute_force_timeline(inst, range(inst.N_hat, inst.N + 1))
    assert value == pytest.approx(grid_value, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    n_hat=st.integers(0, 120),
    extra=st.integers(1, 120),
    cached=st.integers(0, 250),
    pai_b=st.floats(-20, 220),
    pai_a=st.floats(0.005, 0.5),
    alpha=st.floats(0.01, 500),
    k=st.floats(0.0, 0.4),
    h=st.floats(-0.05, 0.1),
    gpus=st.integers(1, 16),
)
@pytest.mark.slow
def test_split_with_cached_steps_equals_scan(n_hat, extra, cached, pai_b, pai_a, alpha, k, h, gpus):
    if k + h <= 1e-4:
        return
    N = n_hat + extra
    user = {"id": "u", "k": k, "h": h, "alpha": alpha, "request_time": 0.5, "cached_steps": min(cached, N)}
    inst = Instance.from_dict({"N": N, "N_hat": n_hat, "G": gpus, "pai": {"a": pai_a, "b": pai_b}, "users": [user]})
    split, util = best_splits(inst, [1])  # one user: the reference's batch size is 1
    n = np.arange(n_hat, N + 1)
    scan = [objective(inst.to_dict(), [True], [int(m)]) for m in n]
    assert n_hat <= split[0, 0] <= N
    np.testing.assert_allclose(util[0, 0], max(scan), rtol=1e-10, atol=1e-9)


def test_cached_steps_zero_changes_nothing():
    inst = random_instance(12, 8, seed=3)
    zeros = replace(inst, cached_steps=np.zeros(inst.num_users, np.int64))
    assert inst.to_dict() == zeros.to_dict()  # files without hits are written as before
    for name in ("exact", "timeline", "b1", "b2", "milp"):
        a, b = make_policy(name).decide(inst), make_policy(name).decide(zeros)
        np.testing.assert_array_equal(a.split, b.split)
        assert evaluate(inst, a).objective == evaluate(zeros, b).objective  # bit for bit


def test_milp_prices_cached_steps():
    """milp's quadratic model (splits at N_hat) against enumeration of its grant vectors, on
    windows where a hit decides who is worth granting."""
    for seed in range(8):
        rng = np.random.default_rng(seed)
        base = random_instance(8, int(rng.integers(1, 4)), seed=seed, B_max=4)
        inst = replace(base, cached_steps=rng.choice([0, 60, base.N - base.N_hat], 8), alpha=base.alpha * 0.05)
        chosen = solve_milp(inst)
        best = max(
            evaluate(inst, Decision(np.array(g), np.where(g, inst.N_hat, inst.N))).objective
            for g in itertools.product([False, True], repeat=8)
            if sum(g) <= inst.B_max
        )
        assert evaluate(inst, chosen).objective == pytest.approx(best, rel=1e-7, abs=1e-7)


def test_instance_file_cached_steps():
    data = random_instance(2, 8, seed=0).to_dict()
    data["users"][1]["cached_steps"] = 7
    inst = Instance.from_dict(data)
    assert list(inst.cached_steps) == [0, 7]
    assert Instance.from_dict(inst.to_dict()).to_dict() == inst.to_dict()
    assert "cached_steps" not in inst.to_dict()["users"][0]
    for bad, message in (
        (-1, "users.1.cached_steps"),
        (inst.N + 1, "users.1.cached_steps"),
        (2.5, "users.1.cached_steps"),
    ):
        data["users"][1]["cached_steps"] = bad
        with pytest.raises(InstanceError, match=message):
            Instance.from_dict(data)


def test_instance_rejects_cached_steps_of_another_length():
    inst = random_instance(3, 8, seed=0)
    with pytest.raises(InstanceError, match="one integer >= 0 per user"):
        replace(inst, ids=("a", "b"), k=inst.k[:2], h=inst.h[:2], alpha=inst.alpha[:2])
    with pytest.raises(InstanceError, match="one integer >= 0 per user"):
        replace(inst, cached_steps=[0, -1, 0])


def test_dqn_refuses_cached_steps_it_cannot_see(monkeypatch):
    from edgediff.offload.dqn import policy

    q_function, config = policy._load(None)
    inst = replace(random_instance(6, 8, seed=1), cached_steps=[0, 5, 0, 0, 0, 0])
    assert config.mdp_options["features"] in ("convex", "set")  # the shipped checkpoint sees gains with d_i
    policy.solve_dqn(inst)
    paper_state = SimpleNamespace(mdp_options={**config.mdp_options, "features": "paper"})
    monkeypatch.setattr(policy, "_load", lambda checkpoint: (q_function, paper_state))
    with pytest.raises(CheckpointError, match="cached_steps"):
        policy.solve_dqn(inst)
