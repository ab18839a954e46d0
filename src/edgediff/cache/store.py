"""The edge cache: intermediate outputs keyed by (class, step) under a byte capacity,
evicting by one of the rules of :mod:`edgediff.cache.eviction`.

The ``value`` rule ranks entries by a value function the owner passes in (the simulator's
online estimates, :mod:`edgediff.cache.demand`), re-read whenever a value is needed because the
estimates move. The usage rules keep their entries in a heap with lazy deletion (a touched
entry is pushed again under its new key; stale copies are skipped when popped), so an
eviction costs O(log n) instead of a sort of every entry; free slots are a heap too, so an
insert takes the lowest free slot as before and ties (broken by slot) evict the same entry."""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.eviction import EVICTION_RULES, EntryStats, check_rule, sort_key, victim
from edgediff.cache.model import Catalog, topic_reusable_steps

ValueFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

# (r3) NIRVANA's cost-benefit rule (docs/caching-model.md, eviction), for the Part B simulator's ``lcbfu`` policy:
# evict the lowest (steps the entry saves x its hit rate since it was stored) per byte, then least
# recent. The hit rate moves with the clock, so this rule sorts instead of keeping a heap. The
# shared ``lcbfu`` rule of :mod:`edgediff.cache.eviction` (hits x steps, no clock) is the service's.
COST_BENEFIT = "lcbfu-rate"
STORE_RULES: tuple[str, ...] = (*EVICTION_RULES, COST_BENEFIT)
SORTED_RULES = ("value", COST_BENEFIT)


class EdgeCache:
    def __init__(self, cfg: CacheConfig, catalog: Catalog, rule: str, value_fn: ValueFn | None = None) -> None:
        self.cfg, self.catalog, self.rule = cfg, catalog, check_rule(rule, STORE_RULES)
        self.value_fn = value_fn
        cap = cfg.capacity_entries
        self.capacity_bytes = cfg.capacity_bytes
        self.valid = np.zeros(cap, dtype=bool)
        self.cls = np.zeros(cap, dtype=np.int64)
        self.step = np.zeros(cap, dtype=np.int64)
        self.size = np.zeros(cap)
        self.value = np.zeros(cap)
        self.last_used = np.zeros(cap, dtype=np.int64)
        self.uses = np.zeros(cap, dtype=np.int64)
        self.inserted = np.zeros(cap, dtype=np.int64)
        self.key_index: dict[tuple[int, int], int] = {}
        self.topic_index: dict[tuple[int, int], set[int]] = {}
        s1 = cfg.reusable_steps + 1
        self.class_steps = np.zeros((cfg.classes, s1), dtype=bool)
        self.topic_count = np.zeros((cfg.topics, s1), dtype=np.int64)
        self.topic_ok = topic_reusable_steps(cfg)
        self.writes = 0
        self._bytes = 0.0
        self._count = 0
        self._free = list(range(cap))  # a heap: inserts take the lowest free slot
        self._heap: list[tuple] = []  # usage rules: (*sort key, slot, stamp), stale when the stamp moved
        self._stamp = np.zeros(cap, dtype=np.int64)

    # ------------------------------------------------------------------ state
    @property
    def bytes_used(self) -> float:
        return self._bytes

    @property
    def entries(self) -> int:
        return self._count

    def free_entries(self) -> int:
        return int((self.capacity_bytes - self.bytes_used) // self.cfg.output_bytes)

    def value_floor(self, n_new: int) -> float:
        """Value rate a store displaces: 0 while ``n_new`` outputs still fit, else the lowest.

        A cache that holds nothing at all (zero capacity) makes every store worthless: inf.
        """
        if self.valid.size == 0:
            return float("inf")
        if self.free_entries() >= n_new or self._count == 0:
            return 0.0
        self._refresh_values()
        return float(self.value[self.valid].min())

    def _refresh_values(self) -> None:
        if self.value_fn is not None and self.valid.any():
            idx = np.flatnonzero(self.valid)
            self.value[idx] = self.value_fn(self.cls[idx], self.step[idx])

    def cached_steps(self, cls: np.ndarray) -> np.ndarray:
        """``J[r, m]``: the best usable cached step <= m for each request class (0: none)."""
        cls = np.asarray(cls, dtype=np.int64)
        usable = self.class_steps[cls] | ((self.topic_count[self.catalog.topic[cls]] > 0) & self.topic_ok)
        steps = np.where(usable, np.arange(usable.shape[-1]), 0)
        return np.maximum.accumulate(steps, axis=-1)

    # ------------------------------------------------------------------ updates
    def touch(self, cls: int, step: int, t: int) -> None:
        """Record a hit on the entry that serves class ``cls`` at ``step``."""
        idx = self.key_index.get((cls, step))
        if idx is None:
            idx = min(self.topic_index[(int(self.catalog.topic[cls]), step)])
        self.last_used[idx] = t
        self.uses[idx] += 1
        self._push(idx)

    def _heap_item(self, i: int) -> tuple:
        key = sort_key(self.rule, int(self.last_used[i]), int(self.uses[i]), int(self.step[i]))
        return (*key, i, int(self._stamp[i]))

    def _push(self, i: int) -> None:
        """(Re)index slot ``i`` under its current key (usage rules only)."""
        if self.rule in SORTED_RULES:
            return
        self._stamp[i] += 1
        heapq.heappush(self._heap, self._heap_item(i))
        if len(self._heap) > 2 * self._count + 64:  # mostly stale copies: rebuild from the live entries
            self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        self._heap = [self._heap_item(j) for j in np.flatnonzero(self.valid).tolist()]
        heapq.heapify(self._heap)

    def _evict_one(self, t: int = 0) -> None:
        if self.rule == COST_BENEFIT:
            return self._evict_cost_benefit(t)
        if self.rule != "value":
            while True:
                *_, i, stamp = heapq.heappop(self._heap)
                if self.valid[i] and stamp == self._stamp[i]:
                    return self._remove(i)
        self._evict_by_sort()

    def _evict_by_sort(self) -> None:
        """The victim found by ordering every entry (the ``value`` rule; the heap's reference)."""
        self._refresh_values()
        idx = np.flatnonzero(self.valid)
        stats = EntryStats(self.last_used[idx], self.uses[idx], self.step[idx], self.value[idx])
        self._remove(int(idx[victim(self.rule, stats)]))

    def _evict_cost_benefit(self, t: int) -> None:
        """NIRVANA's rule at time ``t``: the lowest ``step * uses / (t - inserted + 1) / size``, then least recent."""
        idx = np.flatnonzero(self.valid)
        benefit = self.step[idx] * self.uses[idx] / (t - self.inserted[idx] + 1.0) / self.size[idx]
        self._remove(int(idx[np.lexsort((self.last_used[idx], benefit))[0]]))

    def _remove(self, i: int) -> None:
        c, s = int(self.cls[i]), int(self.step[i])
        self.valid[i] = False
        self._bytes -= self.size[i]
        self._count -= 1
        heapq.heappush(self._free, i)
        del self.key_index[(c, s)]
        self.class_steps[c, s] = False
        if self.topic_ok[s]:
            tp = int(self.catalog.topic[c])
            self.topic_count[tp, s] -= 1
            self.topic_index[(tp, s)].discard(i)

    def insert(self, cls: int, step: int, t: int) -> bool:
        """Store the output of class ``cls`` at ``step``, evicting by the rule if needed."""
        cls, step = int(cls), int(step)
        if (cls, step) in self.key_index or self.valid.size == 0:
            return False
        size = self.cfg.output_bytes
        while self.bytes_used + size > self.capacity_bytes and self._count:
            self._evict_one(t)
        if self.bytes_used + size > self.capacity_bytes or not self._free:
            return False
        i = heapq.heappop(self._free)
        self.valid[i] = True
        self._count += 1
        self.cls[i], self.step[i], self.size[i] = cls, step, size
        self._bytes += size
        self.last_used[i], self.uses[i], self.inserted[i] = t, 0, t
        self._push(i)
        self.key_index[(cls, step)] = i
        self.class_steps[cls, step] = True
        if self.topic_ok[step]:
            tp = int(self.catalog.topic[cls])
            self.topic_count[tp, step] += 1
            self.topic_index.setdefault((tp, step), set()).add(i)
        self.writes += 1
        return True
