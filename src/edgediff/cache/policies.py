"""Caching policies behind one interface: ``make_cache_policy(name, cfg).decide(slot)``.

Adding a policy is its module and one ``REGISTRY`` line. Your own policy needs no line here
(docs/your-policy.md): a name ``module:attr`` or ``path/to/file.py:attr`` is a plugin, and an
installed package adds names through the entry-point group ``edgediff.cache_policies``. A
plugin is a :class:`CachePolicyFunction` or a class following :class:`CachePolicyLike`; every
decision it returns is checked (:func:`check_cache_decision`) before the simulator uses it.

A policy returns, for the slot's ``n`` requests, the paper's placement decision: the stop
steps ``m`` (ints in 0..S*) and the stored steps ``m'`` (0 = none, else a step the edge
computes this slot); it names the eviction rule its cache uses, and may ``learn`` from what it
decided. Policies are registered by module path and imported when made, so only ``drc`` and
``dnn`` load torch.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from typing import Any, Protocol

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
    """``(target, summary)`` of a registered policy, without importing it (``drc`` needs torch),
    of an installed one (entry-point group :data:`CACHE_ENTRY_POINTS`) or of a plugin
    (``module:attr``, ``file.py:attr``); raises :class:`UnknownCachePolicy` naming the choices."""
    if name in REGISTRY:
        return REGISTRY[name]
    installed = _installed()
    if name in installed:
        return installed[name], "installed plugin"
    if ":" in name:
        return name, "plugin"
    raise UnknownCachePolicy(
        f"unknown policy {name!r}; choose from {', '.join([*CACHE_POLICIES, *installed])}, "
        "or name your own as module:attr or file.py:attr"
    )


def make_cache_policy(name_or_policy: str | CachePolicy, cfg: CacheConfig, *, seed: int = 0, **options) -> CachePolicy:
    """Build a registered policy (a ``CachePolicy`` is returned as it is); ``options`` are its
    constructor's keyword parameters beyond ``name, cfg, seed`` (``drc``'s ``drc: DrcConfig``)."""
    if isinstance(name_or_policy, CachePolicy):
        if options:
            raise UnknownCachePolicy(f"option {next(iter(options))!r} applies to a policy name, not a built policy")
        if type(name_or_policy).__module__.startswith("edgediff.cache."):  # built-in, or already wrapped
            return name_or_policy
        # your own, built by you: its decisions are checked as a named plugin's are
        return PluginCachePolicy(name_or_policy.name, name_or_policy.cfg, name_or_policy, {}, name_or_policy.seed)
    if name_or_policy not in REGISTRY:
        return make_plugin_cache_policy(name_or_policy, cfg, seed=seed, **options)
    module, cls = cache_policy_spec(name_or_policy)[0].split(":")
    policy_class = getattr(importlib.import_module(module), cls)
    valid = list(inspect.signature(policy_class).parameters)[3:]
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise UnknownCachePolicy(
            f"policy {name_or_policy!r} takes no option {unknown[0]!r}; it takes: {', '.join(valid) or 'none'}"
        )
    return policy_class(name_or_policy, cfg, seed=seed, **options)


# --- your own cache policy (docs/your-policy.md) ----------------------------------------------

CACHE_ENTRY_POINTS = "edgediff.cache_policies"  # the entry-point group through which a package adds names


class CachePolicyFunction(Protocol):
    """A cache policy as a function: the slot's requests and state (:class:`Slot`), the Part B
    parameters (:class:`CacheConfig`) and its options as keywords, to the placement decision
    ``(m, stored)``: per request the stop step ``m`` in ``0..S*`` (the edge runs steps up to
    ``m``; 0 = all local) and the stored step ``m'`` (0 = none, else a step the edge computes
    for that request this slot, ``j(m) < m' <= m``). Its cache evicts by the function's
    ``eviction`` attribute (``value``, the default, ``lru``, ``lfu``, ``lcbfu`` or
    ``lcbfu-rate``). Keyword parameters with defaults are its ``--policy-option``s."""

    def __call__(self, slot: Slot, cfg: CacheConfig, /, **options: Any) -> tuple[np.ndarray, np.ndarray]: ...


class CachePolicyLike(Protocol):
    """A cache policy as a class, built as ``cls(name, cfg, seed=seed, **options)`` (subclass
    :class:`CachePolicy` to get that constructor): ``decide(slot) -> (m, stored)`` as
    :class:`CachePolicyFunction`, the ``eviction`` rule its cache applies and, optionally,
    ``learn(slot, m, stored)``, called after each decision."""

    eviction: str

    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]: ...


class CacheDecisionError(InputError):
    """A plugin cache policy returned an infeasible decision, or could not decide."""


def _installed() -> dict[str, str]:
    """Names added by installed packages (entry-point group :data:`CACHE_ENTRY_POINTS`)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=CACHE_ENTRY_POINTS)}


def check_cache_decision(cfg: CacheConfig, slot: Slot, m, stored) -> tuple[np.ndarray, np.ndarray]:
    """``(m, stored)`` as integer arrays if they are a feasible decision for ``slot``, else
    :class:`CacheDecisionError` naming the first broken constraint: one value per request,
    integers, stop steps in ``0..S*``, stored steps computed at the edge this slot
    (``j(m) < m' <= m``), no more stores than the cache holds entries."""
    arrays = []
    for label, given in (("stop steps m", m), ("stored steps m'", stored)):
        a = np.asarray(given)
        if a.shape != (slot.n,):
            raise CacheDecisionError(f"{label}: expected {slot.n} values (one per request), got shape {a.shape}")
        if a.dtype.kind not in "iub" and not (
            a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == a.round())
        ):
            raise CacheDecisionError(f"{label}: expected integers, got {a.dtype} values")
        arrays.append(a.astype(np.int64))
    m, stored = arrays
    s_star = cfg.reusable_steps
    for label, a in (("stop step m", m), ("stored step m'", stored)):
        bad = np.flatnonzero((a < 0) | (a > s_star))
        if bad.size:
            r = int(bad[0])
            raise CacheDecisionError(f"{label}[{r}] = {a[r]} is out of range 0..S* ({s_star})")
    computed_from = edge_work(slot, m)
    deepest_cached = m - computed_from
    bad = np.flatnonzero((stored > 0) & ((stored > m) | (stored <= deepest_cached)))
    if bad.size:
        r = int(bad[0])
        edge = (
            f"steps {deepest_cached[r] + 1}..{m[r]}"
            if m[r] > deepest_cached[r]
            else "no step (its stop step is cached)"
        )
        raise CacheDecisionError(
            f"stored step m'[{r}] = {stored[r]} was never computed at the edge this slot (it computes {edge} "
            "for that request)"
        )
    stores = int((stored > 0).sum())
    if stores > cfg.capacity_entries:
        raise CacheDecisionError(
            f"capacity exceeded: {stores} outputs stored this slot, the cache holds {cfg.capacity_entries} "
            f"(capacity_bytes {cfg.capacity_bytes:g} / output_bytes {cfg.output_bytes:g})"
        )
    return m, stored


class PluginCachePolicy(CachePolicy):
    """Your own policy (a :class:`CachePolicyFunction` or a :class:`CachePolicyLike` instance)
    behind the :class:`CachePolicy` interface: every decision checked, anything it raises one
    :class:`CacheDecisionError` naming the policy and the slot."""

    def __init__(self, name: str, cfg: CacheConfig, inner: Any, options: dict[str, Any], seed: int = 0) -> None:
        super().__init__(name, cfg, seed)
        self.inner, self.options = inner, options
        self.eviction = getattr(inner, "eviction", "value")
        self.uses_cache = bool(getattr(inner, "uses_cache", True))

    def decide(self, slot: Slot) -> tuple[np.ndarray, np.ndarray]:
        try:
            if inspect.isroutine(self.inner):
                decision = self.inner(slot, self.cfg, **self.options)
            else:
                decision = self.inner.decide(slot)
            m, stored = decision
        except CacheDecisionError:
            raise
        except Exception as err:  # the plugin's failure is reported, not a traceback out of the simulator
            raise CacheDecisionError(
                f"policy {self.name!r} failed at slot {slot.t}: {type(err).__name__}: {err}"
            ) from err
        try:
            return check_cache_decision(self.cfg, slot, m, stored)
        except CacheDecisionError as err:
            raise CacheDecisionError(
                f"policy {self.name!r} returned an infeasible decision at slot {slot.t}: {err}"
            ) from None

    def learn(self, slot: Slot, m: np.ndarray, stored: np.ndarray) -> None:
        learn = getattr(self.inner, "learn", None)
        if learn is not None and not inspect.isroutine(self.inner):
            learn(slot, m, stored)

    def __getattr__(self, name: str):  # the simulator reads optional records (losses, k_history)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _plugin_target(name: str) -> Any:
    """The function or class ``name`` stands for, imported now."""
    from edgediff.plugins import PluginNotFound, import_target

    target = cache_policy_spec(name)[0]
    try:
        module, attr = import_target(target)
    except PluginNotFound as err:
        raise UnknownCachePolicy(str(err)) from None
    found = getattr(module, attr, None)
    if not callable(found):
        raise UnknownCachePolicy(f"policy {name!r}: {target.rpartition(':')[0]} has no function or class {attr!r}")
    return found


def cache_policy_option_names(name: str) -> tuple[str, ...]:
    """The options policy ``name`` takes: a class's constructor keywords beyond ``name, cfg,
    seed``, a function's beyond ``slot, cfg``."""
    if name in REGISTRY:
        module, cls = REGISTRY[name][0].split(":")
        return tuple(list(inspect.signature(getattr(importlib.import_module(module), cls)).parameters)[3:])
    found = _plugin_target(name)
    if inspect.isclass(found):
        params = list(inspect.signature(found).parameters)
        return tuple(p for p in params[1:] if p not in ("cfg", "seed"))
    return tuple(list(inspect.signature(found).parameters)[2:])


def make_plugin_cache_policy(name: str, cfg: CacheConfig, *, seed: int = 0, **options) -> CachePolicy:
    """Your own policy ``name`` (``module:attr``, ``file.py:attr`` or an installed name), bound to
    its options and checked (:class:`PluginCachePolicy`)."""
    from edgediff.cache.store import STORE_RULES

    found = _plugin_target(name)
    valid = cache_policy_option_names(name)
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise UnknownCachePolicy(
            f"policy {name!r} takes no option {unknown[0]!r}; it takes: {', '.join(valid) or 'none'}"
        )
    if inspect.isclass(found):
        build: Any = found  # a class following CachePolicyLike's constructor
        inner, bound = build(name, cfg, seed=seed, **options), {}
        if not callable(getattr(inner, "decide", None)):
            raise UnknownCachePolicy(f"policy {name!r}: class {found.__name__} has no decide(slot) method")
    else:
        inner, bound = found, options
    eviction = getattr(inner, "eviction", "value")
    if eviction not in STORE_RULES:
        raise UnknownCachePolicy(f"policy {name!r}: eviction {eviction!r} is not one of {', '.join(STORE_RULES)}")
    return PluginCachePolicy(name, cfg, inner, bound, seed)
