import itertools

import numpy as np
import pytest

from edgediff.cache.config import CacheConfig, CacheConfigError
from edgediff.cache.edge import EdgeServer
from edgediff.cache.model import (
    Slot,
    backlog_wait,
    best_store,
    channel_rate,
    latencies,
    latency_weight,
    make_catalog,
    objective,
    processor_sharing_times,
    similarity,
    storable,
    theta,
    thresholds,
    topic_reusable_steps,
)
from edgediff.cache.optimum import _levels_by_dp, _levels_by_flow, level_costs, solve_slot
from edgediff.cache.store import EdgeCache

TINY = CacheConfig(users=4, classes=40, topics=4, reusable_steps=3, capacity_bytes=2e6, slots=50)


def random_slot(cfg, catalog, rng, n):
    s1 = cfg.reusable_steps + 1
    cls = rng.integers(0, cfg.classes, n)
    usable = rng.random((n, s1)) < 0.3
    usable[:, 0] = False
    cached = np.maximum.accumulate(np.where(usable, np.arange(s1), 0), axis=1)
    floor = float(rng.choice([0.0, 1e-3]))
    value = rng.choice([0.0, 1e-4, 1e-3, 5e-3], (n, s1))
    value[:, 0] = 0.0
    return Slot(
        0,
        np.arange(n),
        cls,
        rng.uniform(0.5e9, 1.5e9, n),
        rng.uniform(1e6, 2e6, n),
        cached,
        value,
        floor,
        float(rng.uniform(0, 3000)),
        backlog_wait(cfg, rng.uniform(0, 0.5, int(rng.integers(0, 4)))),
        edge_jobs=int(rng.integers(0, 6)),  # (r3) the delay new edge work adds to later slots' jobs
    )


def ps_event_simulation(work_seconds):
    """Egalitarian processor sharing, step by step: an independent check of the closed form."""
    remaining = np.array(work_seconds, dtype=float)
    done = np.zeros_like(remaining)
    now = 0.0
    active = remaining > 0
    while active.any():
        k = active.sum()
        dt = remaining[active].min() * k
        now += dt
        remaining[active] -= dt / k
        finished = active & (remaining <= 1e-12)
        done[finished] = now
        active &= ~finished
    return done


def test_theta_rule_and_similarity():
    cfg = CacheConfig()
    th = thresholds(cfg)
    assert th[1] == pytest.approx(0.8) and th[cfg.reusable_steps] == pytest.approx(1.0)
    assert np.all(np.diff(th[1:]) > 0)
    # with sigma_topic = 0.85 only steps 1 and 2 serve other classes of the topic
    assert topic_reusable_steps(cfg).nonzero()[0].tolist() == [1, 2]
    catalog = make_catalog(cfg, np.random.default_rng(0))
    same_topic = np.flatnonzero(catalog.topic == catalog.topic[0])[1]
    other = np.flatnonzero(catalog.topic != catalog.topic[0])[0]
    assert similarity(cfg, catalog, [0, 0, 0], [0, same_topic, other]).tolist() == [1.0, 0.85, 0.0]
    assert catalog.popularity.sum() == pytest.approx(1.0) and np.all(np.diff(catalog.popularity) < 0)


def test_theta_is_one_plain_function_of_m_s_star_theta_min():
    for s_star, theta_min in ((6, 0.8), (1, 0.8), (2, 0.0), (13, 0.37)):
        cfg = CacheConfig(steps=20, reusable_steps=s_star, theta_min=max(theta_min, 1e-9))
        m = np.arange(s_star + 1)
        assert np.array_equal(thresholds(cfg), theta(m, s_star, cfg.theta_min))
        assert [theta(int(k), s_star, theta_min) for k in m] == theta(m, s_star, theta_min).tolist()
        assert theta(0, s_star, theta_min) == np.inf and theta(s_star, s_star, theta_min) == 1.0
        if s_star > 1:
            assert theta(1, s_star, theta_min) == theta_min
    # the values the service and the simulator always had
    assert theta(np.arange(1, 7), 6, 0.8).tolist() == [0.8 + (1.0 - 0.8) * (k - 1) / 5 for k in range(1, 7)]
    assert isinstance(theta(3, 6, 0.8), float)


def test_reusable_rule_in_cache_lookup():
    cfg = CacheConfig(classes=100, topics=10, capacity_bytes=1e7)
    catalog = make_catalog(cfg, np.random.default_rng(1))
    cache = EdgeCache(cfg, catalog, "lru")
    c = 5
    mate = int(next(k for k in np.flatnonzero(catalog.topic == catalog.topic[c]) if k != c))
    cache.insert(c, 6, t=0)  # exact-class entry at S*: serves only class c
    cache.insert(mate, 2, t=0)  # topic entry at step 2 (theta = 0.84 <= 0.85): serves the topic
    cache.insert(mate, 4, t=0)  # step 4 (theta = 0.92 > 0.85): serves only its own class
    j = cache.cached_steps(np.array([c, mate]))
    assert j[0].tolist() == [0, 0, 2, 2, 2, 2, 6]
    assert j[1].tolist() == [0, 0, 2, 2, 4, 4, 4]


def test_channel_rate_magnitude():
    cfg = CacheConfig()
    rate = channel_rate(cfg, 90e3, 100.0, 1.0)
    assert 1.4e6 < rate < 1.9e6  # at 90 kHz: about 1.4-1.7 Mbit/s, a 500 KB output in about 2.5 s
    assert channel_rate(cfg, 90e6, 100.0, 1.0) == pytest.approx(1000 * rate)  # at 90 MHz (r3): ~2.5 ms


def test_processor_sharing_matches_event_simulation():
    cfg = CacheConfig()
    rng = np.random.default_rng(2)
    for _ in range(20):
        e = rng.integers(0, cfg.reusable_steps + 1, rng.integers(1, 8))
        closed = processor_sharing_times(cfg, e)
        events = ps_event_simulation(e * cfg.cycles_per_step / cfg.f_es)
        np.testing.assert_allclose(closed, events, rtol=1e-9, atol=1e-12)


def test_edge_server_carries_work_across_slots():
    """One slot at a time with carry-over gives the finish times of one long processor-sharing run."""
    rng = np.random.default_rng(4)
    for _ in range(10):
        arrivals = [rng.uniform(0.05, 0.6, int(rng.integers(0, 4))) for _ in range(6)]
        edge, finish = EdgeServer(), {}
        next_id = 0
        for t, work in enumerate(arrivals):
            edge.add(np.arange(next_id, next_id + work.size), work)
            next_id += work.size
            done, at = edge.run(1.0)
            assert np.all(np.diff(at) >= 0) and np.all(at <= 1.0)
            finish.update({int(j): t + a for j, a in zip(done, at)})
        done, at = edge.run(np.inf)
        finish.update({int(j): len(arrivals) + a for j, a in zip(done, at)})
        # reference: event simulation with arrivals at integer times
        ref = ps_with_arrivals([(t, w) for t, work in enumerate(arrivals) for w in work])
        np.testing.assert_allclose([finish[i] for i in range(next_id)], ref, rtol=1e-9, atol=1e-9)


def ps_with_arrivals(jobs):
    """Egalitarian processor sharing with arrivals, event by event."""
    arrive = np.array([a for a, _ in jobs], dtype=float)
    remaining = np.array([w for _, w in jobs], dtype=float)
    done = np.full(len(jobs), np.nan)
    now = 0.0
    while np.isnan(done).any():
        active = (arrive <= now + 1e-12) & np.isnan(done)
        future = arrive[arrive > now + 1e-12]
        nxt = future.min() if future.size else np.inf
        if not active.any():
            now = nxt
            continue
        k = active.sum()
        dt = min(remaining[active].min() * k, nxt - now)
        remaining[active] -= dt / k
        now += dt
        finished = active & (remaining <= 1e-12)
        done[finished] = now
    return done


def test_latency_all_local_hit_and_backlog():
    cfg = CacheConfig()
    slot = Slot(
        0,
        np.arange(2),
        np.array([0, 1]),
        np.array([1e9, 1e9]),
        np.array([2e6, 2e6]),
        np.array([[0] * 7, [0, 1, 2, 3, 4, 5, 6]]),
        np.zeros((2, 7)),
        0.0,
        0.0,
        backlog_wait(cfg, np.array([0.1, 2.0])),
    )
    lat = latencies(cfg, slot, np.array([0, 6]), np.array([0, 0]))
    assert lat[0] == pytest.approx(20 * 1.5)  # all local: S w / f
    assert lat[1] == pytest.approx(4e6 / 2e6 + 14 * 1.5)  # full hit: no edge compute, no wait
    assert not storable(slot, np.array([6, 6]))[1].any()  # nothing new computed, nothing to store
    # a 6-step job shares the edge with the backlog: its 0.45 s, plus 0.1 s and 0.45 s of theirs
    lat = latencies(cfg, slot, np.array([6, 0]), np.array([0, 0]))
    assert lat[0] == pytest.approx(0.45 + 0.1 + 0.45 + 2.0 + 14 * 1.5)
    # the stored step may be shallower than the stop step, never one the edge did not compute
    assert storable(slot, np.array([4, 6]))[0].tolist() == [False, True, True, True, True, False, False]


@pytest.mark.parametrize("seed", range(3))
def test_oo_is_the_per_slot_optimum(seed):
    cfg = TINY
    rng = np.random.default_rng(seed)
    catalog = make_catalog(cfg, rng)
    s1 = cfg.reusable_steps + 1
    for _ in range(15):
        n = int(rng.integers(1, 5))
        slot = random_slot(cfg, catalog, rng, n)
        per_request = []
        for r in range(n):
            opts = []
            for m in range(s1):
                ok = storable(slot, np.full(n, m))[r]
                opts += [(m, k) for k in range(s1) if k == 0 or ok[k]]
            per_request.append(opts)
        combos = np.array(list(itertools.product(*per_request)))  # (N, n, 2)
        brute = objective(cfg, slot, combos[..., 0], combos[..., 1]).min()
        m, stored = solve_slot(cfg, slot)
        assert objective(cfg, slot, m, stored) == pytest.approx(brute, rel=1e-12, abs=1e-9)
        assert np.array_equal(stored, best_store(cfg, slot, m))
        m = _solve_with(_levels_by_flow, cfg, slot)  # the min-cost flow finds the same optimum
        assert objective(cfg, slot, m, best_store(cfg, slot, m)) == pytest.approx(brute, rel=1e-12, abs=1e-9)


def _solve_with(levels_of, cfg, slot):
    """Stop steps from one of oo's two exact solvers (solve_slot picks one by the DP's size)."""
    cost, best = level_costs(cfg, slot)
    share_weight = latency_weight(cfg, slot) * cfg.cycles_per_step / cfg.f_es
    return best[np.arange(slot.n), levels_of(cost, share_weight)]


@pytest.mark.parametrize("seed", range(4))
def test_oo_min_cost_flow_equals_the_dynamic_program_on_larger_slots(seed):
    """Where exhaustive search is out of reach: the flow and the DP (both exact) agree, e.g.
    14 requests at S* = 8 (320k histogram states, the flow's side of solve_slot's switch)."""
    rng = np.random.default_rng(100 + seed)
    cfg = CacheConfig(users=20, reusable_steps=int(rng.integers(4, 9)))
    catalog = make_catalog(cfg, rng)
    for n in (6, 10, 14):
        slot = random_slot(cfg, catalog, rng, n)
        by_dp, by_flow = (_solve_with(f, cfg, slot) for f in (_levels_by_dp, _levels_by_flow))
        dp_value, flow_value = (objective(cfg, slot, m, best_store(cfg, slot, m)) for m in (by_dp, by_flow))
        assert flow_value == pytest.approx(dp_value, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(
    "change",
    [
        {"users": 0},
        {"reusable_steps": 21},
        {"p_req": 1.5},
        {"capacity_bytes": -1.0},
        {"capacity_bytes": 1000.0},  # below one 500 KB output
        {"V": float("nan")},
        {"f_min": 2e9},
        {"slots": 2.5},
        {"nope": 1},
        {"bandwidth_unit_hz": 0.0},
        {"bandwidth_min": 120.0},  # above bandwidth_max
        {"later_delay_factor": -1.0},
    ],
)
def test_config_validation(change):
    with pytest.raises(CacheConfigError):
        CacheConfig().with_(**change)
