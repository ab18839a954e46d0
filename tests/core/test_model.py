import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff.core.generator import random_instance
from edgediff.core.model import Decision, DecisionError, edge_latency_timeline, evaluate
from edgediff.core.profiles import PRESETS, PROFILE_TABLE, edge_step_latency
from reference import objective, user_latencies


def random_decision(inst, rng):
    granted = np.zeros(inst.num_users, bool)
    count = rng.integers(0, inst.max_granted + 1)
    granted[rng.choice(inst.num_users, size=count, replace=False)] = True
    split = np.where(granted, rng.integers(inst.N_hat, inst.N + 1, size=inst.num_users), inst.N)
    return Decision(granted, split)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    users=st.integers(1, 12),
    gpus=st.integers(1, 16),
    model=st.sampled_from(["paper", "timeline"]),
)
def test_evaluate_matches_loop_reference(seed, users, gpus, model):
    rng = np.random.default_rng(seed)
    inst = random_instance(users, gpus, seed=seed, B_max=int(rng.integers(0, 21)))
    decision = random_decision(inst, rng)
    ev = evaluate(inst, decision, model)
    ref = user_latencies(inst.to_dict(), list(decision.granted), list(decision.split), model)
    np.testing.assert_allclose(ev.latency, ref, rtol=1e-12)
    assert ev.objective == pytest.approx(objective(inst.to_dict(), list(decision.granted), list(decision.split), model))


def test_timeline_never_slower_than_fixed_batch():
    rng = np.random.default_rng(3)
    for seed in range(20):
        inst = random_instance(15, 4, seed=seed)
        decision = random_decision(inst, rng)
        paper, timeline = evaluate(inst, decision, "paper"), evaluate(inst, decision, "timeline")
        assert np.all(timeline.latency <= paper.latency + 1e-12)
        assert timeline.objective >= paper.objective - 1e-9


def test_timeline_edge_latency_by_hand():
    # two members: 3 and 1 offloaded steps; batch 2 for the first step, then 1
    ke, he, G = 0.04, 0.01, 2
    out = edge_latency_timeline(np.array([3, 1]), G, ke, he)
    two, one = ke * 2 / G + he, ke * 1 / G + he
    np.testing.assert_allclose(out, [two + 2 * one, two])


def test_edge_step_latency_follows_the_paper_formula():
    assert edge_step_latency(10, 8, 0.0364604, 0.0137667) == pytest.approx(0.0364604 * 10 / 8 + 0.0137667)
    assert PRESETS["edge-h100"].k == PROFILE_TABLE[0, 0] == pytest.approx(0.0364604)
    assert PRESETS["row10"].local_step_latency == pytest.approx(0.3058311)


@pytest.mark.parametrize(
    "granted, split, message",
    [
        ([True, True, True], [100, 100, 100], "B_max"),
        ([True, False, False], [79, 200, 200], "N_hat"),
        ([False, False, False], [150, 200, 200], "denied"),
        ([True, False], [100, 200], "one entry per user"),
    ],
)
def test_invalid_decisions_are_refused(granted, split, message):
    inst = random_instance(3, 8, seed=0, B_max=2)
    with pytest.raises(DecisionError, match=message):
        evaluate(inst, Decision(granted, split))


def test_unknown_latency_model():
    inst = random_instance(3, 8, seed=0)
    with pytest.raises(ValueError, match="latency model"):
        evaluate(inst, Decision.all_local(inst), "fast")
