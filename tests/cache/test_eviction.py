"""The eviction rules: one definition, the same victim in the Part B store and the service's cache."""

import numpy as np
import pytest

from edgediff.cache.config import CacheConfig
from edgediff.cache.eviction import EVICTION_RULES, USAGE_RULES, EntryStats, victim
from edgediff.cache.model import make_catalog
from edgediff.cache.store import EdgeCache
from edgediff.service.config import ServiceConfig, ServiceConfigError
from edgediff.service.latent_cache import LatentCache

CFG = CacheConfig(classes=40, topics=4, reusable_steps=6, capacity_bytes=40 * 500e3)


def reference_key(rule, last_used, uses, step, value):
    """The rules as stated in the docs, written out per entry."""
    return {
        "value": (value, last_used),
        "lru": (last_used,),
        "lfu": (uses, last_used),
        "lcbfu": (uses * step, last_used),
    }[rule]


def random_stats(rng, n):
    # small ranges: many ties, so the tie-breaks are exercised too
    return EntryStats(
        last_used=rng.integers(0, 4, n),
        uses=rng.integers(0, 3, n),
        step=rng.integers(1, CFG.reusable_steps + 1, n),
        value=rng.choice([0.0, 0.5, 1.0], n),
    )


def store_victim(rule, stats):
    """The entry the Part B simulator's store evicts, given these statistics."""
    cache = EdgeCache(CFG, make_catalog(CFG, np.random.default_rng(0)), rule)
    n = stats.step.size
    for i in range(n):
        assert cache.insert(i, int(stats.step[i]), t=0)
    cache.last_used[:n], cache.uses[:n], cache.value[:n] = stats.last_used, stats.uses, stats.value
    cache._rebuild_heap()
    cache._evict_one()
    (gone,) = np.flatnonzero(~cache.valid[:n])
    return int(gone)


def latent_cache_victim(rule, stats):
    """The entry the service's latent cache evicts, given these statistics."""
    import torch

    from edgediff.runtime.request import GenerationRequest, LatentState

    cache = LatentCache(10**9, eviction=rule)
    n = stats.step.size
    for i, m in enumerate(stats.step.tolist()):
        embedding = np.eye(n, dtype=np.float32)[i]  # one row each: no duplicates
        request = GenerationRequest(str(i), steps=20)
        assert cache.insert(embedding, LatentState(torch.zeros(1, 1, 1, 1), request, 20 - m, "S", {}), m, str(i))
    (group,) = cache._groups.values()
    group.uses[:n], group.last_used[:n] = stats.uses, stats.last_used  # slots in insertion order
    cache._rebuild_heap()
    cache._evict_one()
    (gone,) = set(range(n)) - {int(e.prompt) for e in cache.entries()}
    return gone


@pytest.mark.parametrize("rule", EVICTION_RULES)
def test_both_stores_evict_the_same_entry(rule):
    rng = np.random.default_rng(7)
    for _ in range(30):
        stats = random_stats(rng, int(rng.integers(1, 12)))
        keys = [reference_key(rule, *row) for row in zip(stats.last_used, stats.uses, stats.step, stats.value)]
        expected = min(range(len(keys)), key=lambda i: (*keys[i], i))  # ties: stored first
        assert victim(rule, stats) == expected
        assert store_victim(rule, stats) == expected
        if rule in USAGE_RULES:
            assert latent_cache_victim(rule, stats) == expected


def test_one_list_of_rule_names():
    assert EVICTION_RULES == ("value", "lru", "lfu", "lcbfu")
    assert USAGE_RULES == ("lru", "lfu", "lcbfu")  # no value estimate in the service
    for rule in ("value", "fifo"):
        with pytest.raises(ValueError, match="unknown eviction rule"):
            LatentCache(1, eviction=rule)
        with pytest.raises(ServiceConfigError, match="cache_eviction must be lru, lfu or lcbfu"):
            ServiceConfig(cache_eviction=rule)
    with pytest.raises(ValueError, match="unknown eviction rule"):
        EdgeCache(CFG, make_catalog(CFG, np.random.default_rng(0)), "fifo")


class SortingStore(EdgeCache):
    """The store as it was before its heap: every eviction orders all entries."""

    def _evict_one(self, t: int = 0) -> None:
        self._evict_by_sort()


@pytest.mark.parametrize("rule", USAGE_RULES)
def test_the_store_heap_evicts_as_a_full_sort_does(rule):
    cfg = CacheConfig(classes=60, topics=6, reusable_steps=6, capacity_bytes=12 * 500e3)
    catalog = make_catalog(cfg, np.random.default_rng(1))
    heap, reference = EdgeCache(cfg, catalog, rule), SortingStore(cfg, catalog, rule)
    rng = np.random.default_rng(5)
    for t in range(3000):
        cls, step = int(rng.integers(0, 60)), int(rng.integers(1, 7))
        if (cls, step) in reference.key_index and rng.uniform() < 0.7:
            heap.touch(cls, step, t)
            reference.touch(cls, step, t)
        else:
            assert heap.insert(cls, step, t) == reference.insert(cls, step, t)
        assert heap.key_index == reference.key_index and heap.entries == reference.entries
