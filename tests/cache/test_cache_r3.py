"""Revision 3 of Part B (SPEC r3): the 5G link, fair classic caches, NIRVANA's cost-benefit rule,
demand counted on arrival, the delay new edge work adds to later slots, the multi-seed summaries."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

from edgediff.cache.config import BANDWIDTH_UNITS, CacheConfig
from edgediff.cache.model import Slot, backlog_wait, edge_work, make_catalog, objective, slot_latency
from edgediff.cache.optimum import deepest_store, solve_slot
from edgediff.cache.policies import CachePolicy, make_cache_policy
from edgediff.cache.simulator import all_hit_floor, make_environment, simulate
from edgediff.cache.store import COST_BENEFIT, EdgeCache
from edgediff.cache.sweep import mean_ci, paired_ratio, run_point, t_quantile

TINY = CacheConfig(users=4, classes=40, topics=4, reusable_steps=3, capacity_bytes=2e6, slots=50)


def random_slot(cfg, rng, n):
    s1 = cfg.reusable_steps + 1
    usable = rng.random((n, s1)) < 0.3
    usable[:, 0] = False
    value = rng.choice([0.0, 1e-4, 1e-3, 5e-3], (n, s1))
    value[:, 0] = 0.0
    return Slot(0, np.arange(n), rng.integers(0, cfg.classes, n), rng.uniform(0.5e9, 1.5e9, n),
                rng.uniform(1e6, 2e9, n), np.maximum.accumulate(np.where(usable, np.arange(s1), 0), axis=1),
                value, float(rng.choice([0.0, 1e-3])), float(rng.uniform(0, 3000)),
                backlog_wait(cfg, rng.uniform(0, 0.5, int(rng.integers(0, 4)))),
                edge_jobs=int(rng.integers(0, 6)))  # fmt: skip


def test_the_5g_link_is_the_default_and_khz_a_sensitivity_case():
    mhz, khz = CacheConfig(), CacheConfig(bandwidth_unit_hz=BANDWIDTH_UNITS["kHz"])
    assert (mhz.bandwidth_min_hz, mhz.bandwidth_max_hz) == (80e6, 100e6)
    assert (khz.bandwidth_min_hz, khz.bandwidth_max_hz) == (80e3, 100e3)
    a, b = make_environment(mhz.with_(slots=50), 0), make_environment(khz.with_(slots=50), 0)
    np.testing.assert_allclose(a.rate, 1000 * b.rate)  # same draws, the unit alone differs
    # the all-hit floor: a few ms of transfer at MHz, seconds at kHz
    assert all_hit_floor(khz.with_(slots=50), b).mean() > all_hit_floor(mhz.with_(slots=50), a).mean() + 1.0


@pytest.mark.parametrize("seed", range(3))
def test_classic_caches_offload_as_oo_with_the_deepest_step_stored(seed):
    """lru/lfu/lcbfu's decision is the per-slot optimum with their admission fixed (exhaustive search)."""
    cfg = TINY
    rng = np.random.default_rng(seed)
    s1 = cfg.reusable_steps + 1
    for _ in range(10):
        n = int(rng.integers(1, 5))
        slot = random_slot(cfg, rng, n)
        # a usage rule has no value estimate: the objective it minimizes has no future-value term
        slot = replace(slot, value=np.zeros_like(slot.value), value_floor=0.0)
        combos = np.array(list(itertools.product(range(s1), repeat=n)))  # every stop-step vector
        brute = objective(cfg, slot, combos, deepest_store(cfg, slot, combos)).min()
        for name in ("lru", "lfu", "lcbfu"):
            m, stored = make_cache_policy(name, cfg).decide(slot)
            assert objective(cfg, slot, m, stored) == pytest.approx(brute, rel=1e-12, abs=1e-9)
            assert np.array_equal(stored, np.where(edge_work(slot, m) > 0, m, 0))


def test_without_a_cache_classic_and_oo_are_the_same_offloading():
    cfg = CacheConfig(slots=150, capacity_bytes=0.0)
    env = make_environment(cfg, 4)
    oo, lfu = simulate(cfg, "oo", 4, env=env), simulate(cfg, "lfu", 4, env=env)
    np.testing.assert_array_equal(oo.latency, lfu.latency)
    np.testing.assert_array_equal(oo.stop_step, lfu.stop_step)
    greedy = simulate(cfg, "lfu-greedy", 4, env=env)  # revision 2's split: a different offloading
    assert not np.array_equal(greedy.stop_step, lfu.stop_step)
    assert greedy.latency.mean() > lfu.latency.mean()


def test_lcbfu_evicts_by_steps_times_hit_rate_not_by_hit_count():
    cfg = CacheConfig(classes=40, topics=4, reusable_steps=6, capacity_bytes=2 * 500e3)
    catalog = make_catalog(cfg, np.random.default_rng(0))
    victims = {}
    for rule in ("lfu", COST_BENEFIT):
        cache = EdgeCache(cfg, catalog, rule)
        assert cache.insert(10, 6, t=0)  # old: 2 hits in 100 slots
        cache.touch(10, 6, 1)
        cache.touch(10, 6, 2)
        assert cache.insert(11, 6, t=98)  # young: 1 hit in 2 slots
        cache.touch(11, 6, 99)
        assert cache.insert(12, 6, t=100)  # needs room
        victims[rule] = sorted(int(c) for c in cache.cls[cache.valid])
    assert victims["lfu"] == [10, 12]  # lfu drops the entry with fewer hits
    assert victims[COST_BENEFIT] == [11, 12]  # cost-benefit drops the lower hit rate (2/101 < 1/3)
    assert make_cache_policy("lcbfu", cfg).eviction == COST_BENEFIT
    assert make_cache_policy("lfu", cfg).eviction == "lfu"


def test_demand_is_counted_when_requests_arrive():
    """The first slot's requests already carry value: a class's own request is evidence of demand."""
    values = []

    class Spy(CachePolicy):
        def decide(self, slot):
            values.append(slot.value.copy())
            return np.zeros(slot.n, dtype=np.int64), np.zeros(slot.n, dtype=np.int64)

    cfg = CacheConfig(slots=3)
    simulate(cfg, Spy("spy", cfg), 0)
    assert values and np.all(values[0][:, 1:] > 0) and np.all(values[0][:, 0] == 0)


def test_later_slots_delay_prices_edge_work():
    cfg = TINY
    rng = np.random.default_rng(7)
    worked = []
    for _ in range(30):
        slot = random_slot(cfg, rng, int(rng.integers(2, 5)))
        m = rng.integers(0, cfg.reusable_steps + 1, slot.n)
        e = edge_work(slot, m).sum()
        free = cfg.with_(later_delay_factor=0.0)
        step_s = cfg.cycles_per_step / cfg.f_es
        extra = slot_latency(cfg, slot, m, 0 * m) - slot_latency(free, slot, m, 0 * m)
        assert extra == pytest.approx(cfg.later_delay_factor * slot.edge_jobs * step_s * e)
        # a dearer edge second never makes the optimum put more work on the edge
        w = [edge_work(slot, solve_slot(c, slot)[0]).sum() for c in (free, cfg, cfg.with_(later_delay_factor=20.0))]
        assert w[0] >= w[1] >= w[2]
        worked.append(w[0] > w[2])
    assert any(worked)


def test_mean_ci_and_paired_ratio():
    mean, ci = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and ci == pytest.approx(t_quantile(2) / np.sqrt(3))
    assert t_quantile(4) == pytest.approx(2.776, abs=1e-3)
    assert mean_ci([5.0]) == (5.0, 0.0)
    m, c, per_seed = paired_ratio([99.0, 110.0], [100.0, 100.0])
    np.testing.assert_allclose(per_seed, [-1.0, 10.0])
    assert m == pytest.approx(4.5) and c > 0


def test_run_point_same_in_workers_and_in_process():
    cfg = CacheConfig(slots=60, capacity_bytes=20 * 500e3)
    a = run_point(cfg, [1, 2], ["lfu", "ncldc"], jobs=1)
    b = run_point(cfg, [1, 2], ["lfu", "ncldc"], jobs=2)
    assert list(a) == ["lfu", "ncldc", "0 GB (oo)", "all-hit floor"]
    for p in a:
        assert [r["seed"] for r in a[p]] == [1, 2]
        key = "mean_response_time_s"
        assert [r[key] for r in a[p]] == [r[key] for r in b[p]]
    floor = [r["mean_response_time_s"] for r in a["all-hit floor"]]
    assert all(f < r["mean_response_time_s"] for f, r in zip(floor, a["lfu"]))


def test_an_entry_hit_long_ago_outranks_a_one_off_request():
    """Issue 29's fix: an entry stays in a 3 GB cache ~3,000 slots; the rate memory must not
    forget its hits by then, or the value rule evicts proven entries before one-off ones."""
    from edgediff.cache.demand import DemandEstimator

    for memory, hit_entry_first in ((2_000.0, False), (CacheConfig().rate_memory_slots, True)):
        cfg = CacheConfig(classes=100, topics=4, rate_memory_slots=memory)
        demand = DemandEstimator(cfg, np.arange(100) % 4)
        demand.count(0, np.array([7]))  # stored, then hit once
        demand.count(1, np.array([7]))
        demand.count(3_000, np.array([9]))  # a one-off request now
        value = demand.value(3_000, np.array([7, 9]), np.array([6, 6]))
        assert (value[0] > value[1]) == hit_entry_first
    # H moved with M (H / M as at 100 / 2,000), so a first request's future value H * v is as before
    cfg = CacheConfig()
    assert cfg.value_horizon_slots / cfg.rate_memory_slots == pytest.approx(100 / 2_000)
