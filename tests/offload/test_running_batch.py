"""The running batch: members of earlier windows share a window's edge steps (``r_s``). Every
edge step's batch is counted from its definition here, independently of the model's
``(k_e/G) R(m)`` shortcut; ``exact`` and ``timeline`` stay optimal against enumeration."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

from edgediff.core.generator import random_instance
from edgediff.core.instance import Instance, InstanceError
from edgediff.core.model import Decision, evaluate
from edgediff.offload.exact import bounded_scan, full_scan, solve_exact
from edgediff.offload.milp import solve_milp
from edgediff.offload.timeline import brute_force_timeline, solve_timeline


def running_instance(seed: int, users: int, N: int = 8, N_hat: int = 3) -> Instance:
    """A small window with earlier members running (a shrinking batch, as the executor has it)
    and some cached steps; users of all sorts, so that grants and splits vary."""
    rng = np.random.default_rng(seed)
    inst = random_instance(users, int(rng.integers(1, 5)), seed=seed, B_max=int(rng.integers(1, users + 1)))
    running = np.sort(rng.integers(0, 30, int(rng.integers(1, N + 3))))[::-1]
    return replace(
        inst,
        N=N,
        N_hat=N_hat,
        pai=inst.pai.for_steps(N),
        alpha=inst.alpha * rng.uniform(0.02, 2.0, users),
        k=inst.k * rng.uniform(0.5, 8.0, users),
        edge_k=inst.edge_k * 5,  # a step's batch matters: the running members cost something
        cached_steps=rng.integers(0, N + 1, users) * (rng.uniform(size=users) < 0.3),
        running=running,
        start_delay=float(rng.choice([0.0, rng.uniform(0, 2.0)])),  # a step in flight at the decision
    )


def latency_by_steps(inst: Instance, granted, split, model: str) -> np.ndarray:
    """Each user's latency with every edge step's batch counted: the granted users still at the
    edge (``paper``: all of them), plus ``r_s`` earlier members."""
    granted, split = np.asarray(granted, bool), np.asarray(split)
    b = int(granted.sum())
    m = np.where(granted, np.maximum(inst.N - split - inst.cached_steps, 0), 0)
    latency = inst.waiting_latency + split * inst.local_step_latency
    for i in np.flatnonzero(granted):
        edge = 0.0
        for s in range(1, m[i] + 1):
            ours = b if model == "paper" else int((m[granted] >= s).sum())
            r = int(inst.running[s - 1]) if s <= inst.running.size else 0
            edge += inst.edge_k * (ours + r) / inst.G + inst.edge_h
        latency[i] += edge + inst.payload_bits[i] * b / (inst.eta * inst.W_max) + inst.start_delay
    return latency


def brute_force(inst: Instance, model: str) -> float:
    best = -np.inf
    for mask in itertools.product([False, True], repeat=inst.num_users):
        if sum(mask) > inst.B_max:
            continue
        for split in itertools.product(*[range(inst.N_hat, inst.N + 1) if g else [inst.N] for g in mask]):
            latency = latency_by_steps(inst, mask, split, model)
            best = max(best, float((inst.alpha * inst.pai(np.array(split)) - latency).sum()))
    return best


@pytest.mark.parametrize("seed", range(10))
def test_exact_is_optimal_with_members_running(seed):
    inst = running_instance(seed, users=3)
    decision = solve_exact(inst)
    outcome = evaluate(inst, decision, "paper")
    assert outcome.latency == pytest.approx(latency_by_steps(inst, decision.granted, decision.split, "paper"))
    assert outcome.objective == pytest.approx(brute_force(inst, "paper"), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_timeline_is_optimal_with_members_running(seed):
    inst = running_instance(seed, users=3)
    decision = solve_timeline(inst)
    outcome = evaluate(inst, decision, "timeline")
    assert outcome.latency == pytest.approx(latency_by_steps(inst, decision.granted, decision.split, "timeline"))
    assert outcome.objective == pytest.approx(brute_force(inst, "timeline"), rel=1e-9, abs=1e-9)
    grid = (inst.N_hat, inst.N - 2, inst.N)
    best, _ = brute_force_timeline(inst, grid)
    assert evaluate(inst, solve_timeline(inst, grid), "timeline").objective == pytest.approx(best, rel=1e-9)


def test_running_members_cost_each_granted_user_by_its_own_edge_steps():
    inst = replace(random_instance(2, 4, seed=3, B_max=2), N=10, N_hat=2, running=[5, 5, 3])
    idle = replace(inst, running=None)
    decision = Decision(np.array([True, True]), np.array([8, 4]))  # 2 and 6 edge steps
    extra = evaluate(inst, decision, "timeline").latency - evaluate(idle, decision, "timeline").latency
    assert extra == pytest.approx(inst.edge_k / inst.G * np.array([10, 13]))
    # the optimum sees them: fewer edge steps (or fewer grants) than on an idle edge
    busy = replace(inst, running=np.full(10, 400))
    assert (inst.N - solve_exact(busy).split).sum() < (inst.N - solve_exact(idle).split).sum()


@pytest.mark.slow
def test_bounded_scan_equals_the_full_scan_with_members_running():
    big = replace(random_instance(2000, 8, seed=4, B_max=300), running=np.arange(150, 0, -1))
    a, b = bounded_scan(big), full_scan(big)
    assert np.array_equal(a.granted, b.granted) and np.array_equal(a.split, b.split)


def test_milp_prices_the_running_members():
    inst = replace(random_instance(6, 4, seed=2, B_max=6), edge_k=0.2)
    busy = replace(inst, running=np.full(inst.N, 500))
    assert solve_milp(busy).granted_count < solve_milp(inst).granted_count


def test_running_travels_in_the_instance_file_and_is_checked():
    inst = replace(random_instance(2, 4, seed=1), running=[3, 2, 0])
    data = inst.to_dict()
    assert data["running"] == [3, 2] and np.array_equal(Instance.from_dict(data).running, [3, 2])
    with pytest.raises(InstanceError, match="running"):
        Instance.from_dict({**data, "running": [1, -1]})
