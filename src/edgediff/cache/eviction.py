"""Eviction rules: which cached entry goes first when a store needs room.

One home for the rules of both caches: the Part B simulator's store
(:class:`edgediff.cache.store.EdgeCache`) and the service's latent cache
(:class:`edgediff.service.latent_cache.LatentCache`). A rule orders entries by sort keys over
their statistics and evicts the smallest; ties go to the entry stored first. :func:`victim`
orders arrays of statistics; :func:`sort_key` gives one entry's key (for a heap).

- ``value``: lowest estimated future value rate first (DRC, DNN, OO; needs the Part B value
  estimate, so only the simulator's store applies it);
- ``lru``: least recently used;
- ``lfu``: least frequently used, then least recent;
- ``lcbfu`` (NIRVANA): least computationally beneficial and frequently used, i.e. the lowest
  ``uses * step`` (hits times the steps a hit saves), then least recent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EntryStats:
    """Per-entry statistics, one array element per entry in storage order.

    ``last_used``: logical time of the last hit (or of the insert); ``uses``: hits since the
    insert; ``step``: denoising steps the entry holds; ``value``: its future value rate.
    """

    last_used: np.ndarray
    uses: np.ndarray
    step: np.ndarray
    value: np.ndarray | None = None


# each rule's sort keys, most significant first: the smallest entry is evicted first
_KEYS = {
    "value": lambda s: (s.value, s.last_used),
    "lru": lambda s: (s.last_used,),
    "lfu": lambda s: (s.uses, s.last_used),
    "lcbfu": lambda s: (s.uses * s.step, s.last_used),
}
EVICTION_RULES: tuple[str, ...] = tuple(_KEYS)
# the rules over usage alone: what a cache without the Part B value estimate can apply
USAGE_RULES: tuple[str, ...] = tuple(rule for rule in EVICTION_RULES if rule != "value")


def check_rule(rule: str, rules: tuple[str, ...] = EVICTION_RULES) -> str:
    """``rule`` if it is one of ``rules``, else ``ValueError``."""
    if rule not in rules:
        raise ValueError(f"unknown eviction rule {rule!r}")
    return rule


def sort_key(rule: str, last_used: int, uses: int, step: int) -> tuple:
    """One entry's sort key under a usage ``rule`` (what :func:`victim` orders by), for
    stores that keep their entries in a heap instead of re-sorting them at each eviction."""
    return _KEYS[rule](EntryStats(np.asarray(last_used), np.asarray(uses), np.asarray(step)))


def victim(rule: str, stats: EntryStats) -> int:
    """Position (in ``stats``) of the entry the rule evicts; ties: the lowest position."""
    keys = _KEYS[check_rule(rule)](stats)
    return int(np.lexsort(keys[::-1])[0])  # lexsort is stable and takes its primary key last
