"""Caching policies behind one interface: ``make_cache_policy(name, cfg).decide(slot)``.

Adding a policy is its module and one ``REGISTRY`` line.

A policy returns, for the slot's ``n`` requests, the paper's placement decision: the stop
steps ``m`` (ints in 0..S*) and the stored steps ``m'`` (0 = none, else a step the edge
computes this slot); it names the eviction rule its cache uses, and may ``learn`` from what it
decided. Policies are registered by module path and imported when made, so only ``drc`` and
``dnn`` load torch.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import Slot, edge_work, transmission_s
from edgediff.cache.store import COST_BENEFIT
from edgediff.errors import InputError

REGISTRY: dict[str, tuple[str, str]] = {
    "drc": ("edgediff.cache.drc:DrcPolicy", "DROO-style actor, K quantized candidates, model-based critic"),
    "oo": ("edgediff.cache.optimum:OnlineOptimal", "exact per-slot optimum of the drift-plus-penalty objective"),
    "dnn": ("edgediff.cache.drc:DnnPolicy", "the actor alone: one rounded candidate"),
    "ncldc": ("edgediff.cache.policies:NoCacheLocal", "no cache, every step local"),
    "lru": (
        "edgediff.cache.policies:ClassicCache",
        "oo's offloading, store the deepest step, evict least recently used",
    ),
    "lfu": (
        "edgediff.cache.policies:ClassicCache",
        "oo's offloading, store the deepest step, evict least frequently used",
    ),
    "lcbfu": (
        "edgediff.cache.policies:ClassicCache",
        "oo's offloading, store the deepest step, evict by NIRVANA's cost-benefit (steps x hit rate)",
    ),
    "lru-greedy": ("edgediff.cache.policies:GreedyClassicCache", "lru with revision 2's greedy per-request split"),
    "lfu-greedy": ("edgediff.cache.policies:GreedyClassicCache", "lfu with revision 2's greedy per-request split"),
    "lcbfu-greedy": ("edgediff.cache.policies:GreedyClassicCache", "lcbfu with revision 2's greedy per-request split"),
}
CACHE_POLICIES: tuple[str, ...] = tuple(REGISTRY)
# the fair classic caches (docs/caching-model.md, revision 3): oo's offloading, their own admission and eviction
CLASSIC_POLICIES: tuple[str, ...] = ("lru", "lfu", "lcbfu")
GREEDY_POLICIES: tuple[str, ...] = tuple(f"{p}-greedy" for p in CLASSIC_POLICIES)
# what every comparison runs: the greedy variants are extra rows, run on request
COMPARED_POLICIES: tuple[str, ...] = tuple(p for p in CACHE_POLICIES if p not in GREEDY_POLICIES)


class UnknownCachePolicy(InputError):
    """The caching policy name is not registered."""


class CachePolicy:
    """Base: subclasses set ``eviction`` and implement ``decide``."""

    eviction = "value"
    uses_cache = True

    def __init__(self, name: str, cfg: CacheConfig, seed: int = 0) -> None:
        self.name, self.cfg, self.seed = name, cfg, seed

    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def learn(self, slot: Slot, m: np.ndarray, stored: np.ndarray) -> None:
        """Online learning hook; most policies do not learn."""


class NoCacheLocal(CachePolicy):
    """NCLDC: all denoising steps on the device, nothing cached."""

    uses_cache = False

    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(slot.n, dtype=np.int64), np.zeros(slot.n, dtype=np.int64)


class ClassicCache(CachePolicy):
    """A standard cache with ``oo``'s offloading (docs/caching-model.md, revision 3): each slot's
    stop steps are the per-slot optimum of the drift-plus-penalty latency
    (``optimum.solve_slot``) with the admission fixed — every request the edge computes for
    stores its deepest computed step — and the rule (LRU, LFU, LCBFU) picks evictions. Only
    admission and eviction differ from ``oo``.
    """

    def __init__(self, name: str, cfg: CacheConfig, seed: int = 0) -> None:
        super().__init__(name, cfg, seed)
        rule = name.removesuffix("-greedy")
        self.eviction = COST_BENEFIT if rule == "lcbfu" else rule

    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        from edgediff.cache.optimum import solve_slot

        return solve_slot(self.cfg, slot, admission="deepest")


class GreedyClassicCache(ClassicCache):
    """A standard cache replacement rule with greedy per-request offloading (revision 2's baselines).

    Requests are decided one after another; each picks the stop step that minimizes its own
    predicted latency under processor sharing with the edge backlog and the jobs of the slot
    decided before it. The deepest step the edge computes for it is stored (always admit), and
    the rule (LRU, LFU, LCBFU) picks evictions.
    """

    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        step_s = cfg.cycles_per_step / cfg.f_es
        steps = np.arange(cfg.reusable_steps + 1)
        work = steps[None, :] - slot.cached_step  # (n, S*+1) edge steps of each stop step
        tx = transmission_s(cfg, slot.rate)
        local = (cfg.steps - steps[None, :]) * cfg.cycles_per_step / slot.f_local[:, None]
        wait = np.tile(slot.backlog_wait, (slot.n, 1))  # the backlog's share, then this slot's earlier jobs'
        m = np.zeros(slot.n, dtype=np.int64)
        for r in range(slot.n):
            x = work[r] * step_s
            edge = np.where(work[r] > 0, x + wait[r, work[r]], 0.0)
            estimate = np.where(steps > 0, edge + tx[r] + (work[r] > 0) * cfg.write_cost_s, 0.0) + local[r]
            m[r] = int(estimate.argmin())
            wait += np.minimum(steps * step_s, work[r, m[r]] * step_s)[None, :]
        deepest = np.where((edge_work(slot, m) > 0) & (cfg.capacity_entries > 0), m, 0)
        return m, deepest


def cache_policy_spec(name: str) -> tuple[str, str]:
    """``(target, summary)`` of a registered policy, without importing it (``drc`` needs torch);
    raises :class:`UnknownCachePolicy` naming the choices."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownCachePolicy(f"unknown policy {name!r}; choose from {', '.join(CACHE_POLICIES)}") from None


def make_cache_policy(name_or_policy: str | CachePolicy, cfg: CacheConfig, *, seed: int = 0, **options) -> CachePolicy:
    """Build a registered policy (a ``CachePolicy`` is returned as it is); ``options`` are its
    constructor's keyword parameters beyond ``name, cfg, seed`` (``drc``'s ``drc: DrcConfig``)."""
    if isinstance(name_or_policy, CachePolicy):
        if options:
            raise UnknownCachePolicy(f"option {next(iter(options))!r} applies to a policy name, not a built policy")
        return name_or_policy
    module, cls = cache_policy_spec(name_or_policy)[0].split(":")
    policy_class = getattr(importlib.import_module(module), cls)
    valid = list(inspect.signature(policy_class).parameters)[3:]
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise UnknownCachePolicy(
            f"policy {name_or_policy!r} takes no option {unknown[0]!r}; it takes: {', '.join(valid) or 'none'}"
        )
    return policy_class(name_or_policy, cfg, seed=seed, **options)
