import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff.core.generator import alpha_interval, random_instance
from edgediff.core.instance import Instance
from edgediff.core.model import Decision, evaluate
from edgediff.offload import exact
from edgediff.offload.exact import (
    bounded_scan,
    full_scan,
    gain_table,
    gains_fall_with_batch_size,
    larger_batch_bound,
    link_slope,
    solve_exact,
)
from edgediff.offload.split import best_splits
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
@pytest.mark.slow
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


# --- the bounded scan (city-scale windows) against the full scan -------------------------------


def same_decision(a, b):
    return np.array_equal(a.granted, b.granted) and np.array_equal(a.split, b.split)


def varied_instance(seed, users, gpus, bmax, alpha_mode="drawn", payload_scale=1.0):
    """A generator instance, optionally with alphas at the generator's extremes or scaled payloads."""
    inst = random_instance(users, gpus, seed=seed, B_max=bmax)
    lo, hi = alpha_interval(inst.local_step_latency, gpus, inst.pai, inst.N_hat, inst.N)
    alpha = {"drawn": inst.alpha, "lo": np.maximum(lo, 1e-6), "hi": np.maximum(hi, 1e-6), "tiny": 1e-6}[alpha_mode]
    return replace(
        inst,
        alpha=np.broadcast_to(alpha, (users,)),
        prompt_bits=inst.prompt_bits * payload_scale,
        intermediate_bits=inst.intermediate_bits * payload_scale,
    )


window = dict(
    seed=st.integers(0, 2**32 - 1),
    users=st.integers(1, 300),
    gpus=st.sampled_from([1, 2, 8, 16]),
    bmax_share=st.floats(0, 1.2),
    alpha_mode=st.sampled_from(["drawn", "drawn", "lo", "hi", "tiny"]),
    payload_scale=st.sampled_from([1.0, 1.0, 0.0, 0.01, 10.0]),
)


@settings(max_examples=150, deadline=None)
@given(**window)
@pytest.mark.slow
def test_gains_fall_at_least_by_the_link_cost(seed, users, gpus, bmax_share, alpha_mode, payload_scale):
    # the lemma behind both of bounded_scan's bounds: gain_i(b + 1) <= gain_i(b) - delta_i
    inst = varied_instance(seed, users, gpus, max(1, round(bmax_share * users)), alpha_mode, payload_scale)
    _, gain = gain_table(inst)
    drop = np.diff(gain, axis=1) + link_slope(inst)[:, None]
    assert drop.max(initial=0.0) <= 1e-9 * (1 + np.abs(gain).max())


@settings(max_examples=150, deadline=None)
@given(**window)
@pytest.mark.slow
def test_bounded_scan_equals_the_full_scan(seed, users, gpus, bmax_share, alpha_mode, payload_scale):
    inst = varied_instance(seed, users, gpus, round(bmax_share * users), alpha_mode, payload_scale)
    assert same_decision(bounded_scan(inst), full_scan(inst))


@pytest.mark.parametrize("users, bmax, gpus", [(3000, 600, 8), (2000, 2000, 16), (2000, 400, 1)])
@pytest.mark.slow
def test_bounded_scan_equals_the_full_scan_at_city_scale(users, bmax, gpus):
    inst = random_instance(users, gpus, seed=users + gpus, B_max=bmax)
    assert same_decision(solve_exact(inst), full_scan(inst))


def test_bounded_scan_breaks_ties_like_the_full_scan():
    # every user appears three times: equal gains must be granted in user order
    base = random_instance(40, 8, seed=7, B_max=60)
    inst = Instance(
        ids=tuple(f"u{i}" for i in range(120)),
        **{name: np.tile(getattr(base, name), 3) for name in ("k", "h", "alpha", "request_time")},
        prompt_bits=np.tile(base.prompt_bits, 3),
        intermediate_bits=np.tile(base.intermediate_bits, 3),
        B_max=60,
    )
    decision = bounded_scan(inst)
    assert decision.granted_count > 1
    assert same_decision(decision, full_scan(inst))


def test_bounded_scan_evaluates_a_small_part_of_the_table(monkeypatch):
    inst = random_instance(10_000, 8, seed=0, B_max=2000)
    cells = []

    def counting(instance, batch_sizes, users=slice(None)):
        split, utility = best_splits(instance, batch_sizes, users)
        cells.append(utility.size)
        return split, utility

    monkeypatch.setattr(exact, "best_splits", counting)
    decision = exact.solve_exact(inst)
    assert 10 <= decision.granted_count <= 20
    assert sum(cells) < 0.01 * inst.num_users * inst.max_granted


def test_solve_exact_falls_back_to_the_full_scan_when_gains_can_rise():
    inst = replace(random_instance(300, 8, seed=2, B_max=100), edge_k=-1e-4)  # not a valid instance file
    assert not gains_fall_with_batch_size(inst)
    with pytest.raises(ValueError, match="fall with the batch size"):
        bounded_scan(inst)
    assert same_decision(solve_exact(inst), full_scan(inst))


@given(
    value=st.floats(-100, 100),
    above=st.lists(st.floats(-50, 50), min_size=1, max_size=40),
    slope=st.floats(0, 2),
    offset=st.integers(1, 60),
)
@pytest.mark.slow
def test_larger_batch_bound_is_the_max_over_every_larger_batch_size(value, above, slope, offset):
    brute = max(value + sum(above[:t]) - slope * t * (offset + t) for t in range(1, len(above) + 1))
    bound = larger_batch_bound(value, np.array(above), slope, offset)
    assert bound == pytest.approx(brute, rel=1e-12, abs=1e-9)


def cached_instance(seed: int, users: int, N: int = 12, N_hat: int = 4) -> Instance:
    """A small random window whose users have random cached steps (some beyond N - N_hat)."""
    rng = np.random.default_rng(seed)
    inst = random_instance(users, int(rng.integers(1, 9)), seed=seed, B_max=int(rng.integers(0, users + 1)))
    pai = inst.pai.for_steps(N)
    return replace(
        inst,
        N=N,
        N_hat=N_hat,
        pai=pai,
        alpha=inst.alpha * rng.uniform(0.02, 2.0, users),  # all sorts of users: some gain from the edge
        k=inst.k * rng.uniform(0.5, 8.0, users),
        cached_steps=rng.integers(0, N + 1, users) * (rng.uniform(size=users) < 0.7),
    )


def brute_force_with_cache(inst: Instance) -> float:
    """Max of (P1) with cached steps over every grant vector and every split of every granted user."""
    best = -np.inf
    for mask in itertools.product([False, True], repeat=inst.num_users):
        if sum(mask) > inst.B_max:
            continue
        choices = [range(inst.N_hat, inst.N + 1) if g else [inst.N] for g in mask]
        for split in itertools.product(*choices):
            best = max(best, objective(inst.to_dict(), list(mask), list(split)))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_exact_is_optimal_with_cached_steps(seed):
    """exact against every grant set and every split, with users whose request hits the cache."""
    inst = cached_instance(seed, users=3 + seed % 2)
    assert inst.has_cached_steps or seed  # the first instance has hits (seed 0 draws some)
    decision = solve_exact(inst)
    value = evaluate(inst, decision).objective
    assert value == pytest.approx(objective(inst.to_dict(), list(decision.granted), list(decision.split)))
    assert value == pytest.approx(brute_force_with_cache(inst), rel=1e-9, abs=1e-9)


@pytest.mark.slow
def test_cached_steps_are_free_at_the_edge_and_never_hurt():
    """A hit covering a granted user's offloaded steps removes its edge time; the optimum with
    hits is at least the optimum without; the bounded scan agrees with the full scan with hits."""
    inst = replace(cached_instance(3, users=4), B_max=4)
    hit = replace(inst, cached_steps=np.full(4, inst.N - inst.N_hat))
    none = replace(inst, cached_steps=None)
    assert evaluate(hit, solve_exact(hit)).objective >= evaluate(none, solve_exact(none)).objective
    decision = Decision(np.array([True, True, False, False]), np.array([hit.N_hat, hit.N_hat, hit.N, hit.N]))
    with_hit, without = evaluate(hit, decision).latency, evaluate(none, decision).latency
    edge = (hit.N - hit.N_hat) * (hit.edge_k * 2 / hit.G + hit.edge_h)
    assert with_hit[:2] == pytest.approx(without[:2] - edge) and np.array_equal(with_hit[2:], without[2:])
    big = random_instance(3000, 8, seed=4, B_max=400)
    big = replace(big, cached_steps=np.random.default_rng(0).integers(0, 80, 3000))
    same_decision(bounded_scan(big), full_scan(big))
