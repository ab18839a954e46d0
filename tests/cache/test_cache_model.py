import itertools

import numpy as np
import pytest

from edgediff.cache.config import CacheConfig, CacheConfigError
from edgediff.cache.model import (
    Slot,
    channel_rate,
    entry_value,
    latencies,
    make_catalog,
    objective,
    processor_sharing_times,
    similarity,
    storable,
    theta,
    thresholds,
    topic_reusable_steps,
)
from edgediff.cache.optimum import solve_slot
from edgediff.cache.store import EdgeCache

TINY = CacheConfig(users=4, classes=40, topics=4, reusable_steps=3, capacity_bytes=2e6, slots=50)


def random_slot(cfg, catalog, rng, n):
    s1 = cfg.reusable_steps + 1
    cls = rng.integers(0, cfg.classes, n)
    usable = rng.random((n, s1)) < 0.3
    usable[:, 0] = False
    cached = np.maximum.accumulate(np.where(usable, np.arange(s1), 0), axis=1)
    floor = float(rng.choice([0.0, 1e-3]))
    return Slot(
        0,
        np.arange(n),
        cls,
        rng.uniform(0.5e9, 1.5e9, n),
        rng.uniform(1e6, 2e6, n),
        cached,
        entry_value(cfg, catalog, cls[:, None], np.arange(s1)[None, :]),
        floor,
        float(rng.uniform(0, 3000)),
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
    assert 1.4e6 < rate < 1.9e6  # SPEC: about 1.4-1.7 Mbit/s, a 500 KB output in about 2.5 s


def test_processor_sharing_matches_event_simulation():
    cfg = CacheConfig()
    rng = np.random.default_rng(2)
    for _ in range(20):
        e = rng.integers(0, cfg.reusable_steps + 1, rng.integers(1, 8))
        closed = processor_sharing_times(cfg, e)
        events = ps_event_simulation(e * cfg.cycles_per_step / cfg.f_es)
        np.testing.assert_allclose(closed, events, rtol=1e-9, atol=1e-12)


def test_latency_all_local_and_hit():
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
    )
    lat = latencies(cfg, slot, np.array([0, 6]), np.array([False, False]))
    assert lat[0] == pytest.approx(20 * 1.5)  # all local: S w / f
    assert lat[1] == pytest.approx(4e6 / 2e6 + 14 * 1.5)  # full hit: no edge compute
    assert not storable(slot, np.array([6, 6]))[1]  # nothing new computed, nothing to store


@pytest.mark.parametrize("seed", range(3))
def test_oo_is_the_per_slot_optimum(seed):
    cfg = TINY
    rng = np.random.default_rng(seed)
    catalog = make_catalog(cfg, rng)
    s1 = cfg.reusable_steps + 1
    for _ in range(15):
        n = int(rng.integers(1, 5))
        slot = random_slot(cfg, catalog, rng, n)
        ms = np.array(list(itertools.product(range(s1), repeat=n)))
        flags = np.array(list(itertools.product([False, True], repeat=n)))
        m_all = np.repeat(ms, len(flags), axis=0)
        s_all = np.tile(flags, (len(ms), 1)) & storable(slot, m_all)
        brute = objective(cfg, slot, m_all, s_all).min()
        m, store = solve_slot(cfg, slot)
        assert objective(cfg, slot, m, store) == pytest.approx(brute, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(
    "change",
    [
        {"users": 0},
        {"reusable_steps": 21},
        {"p_req": 1.5},
        {"capacity_bytes": -1.0},
        {"V": float("nan")},
        {"f_min": 2e9},
        {"slots": 2.5},
        {"nope": 1},
    ],
)
def test_config_validation(change):
    with pytest.raises(CacheConfigError):
        CacheConfig().with_(**change)
