"""A value-aware cache policy, as your own (docs/your-policy.md): each request runs at the edge
up to the stop step that minimizes its own latency estimate, edge delays included, and its
deepest computed output is stored only when its estimated value rate beats ``margin`` x what a
store would evict.

    edgediff cache-sim --slots 500 --policy examples/policies/value_aware_cache.py:decide
"""

import numpy as np

from edgediff.cache.model import edge_work, later_delay_per_step, transmission_s


def decide(slot, cfg, *, margin: float = 1.0):
    """``margin`` (a --policy-option): how much more an output must be worth than the evicted one."""
    steps = np.arange(cfg.reusable_steps + 1)
    work = steps[None, :] - slot.cached_step  # edge steps each stop step costs, after the cache's help
    edge = (
        work * cfg.cycles_per_step / cfg.f_es * slot.n  # shared with the slot's other jobs (as if all as long)
        + 2 * slot.backlog_wait[work]  # waiting behind the backlog, and the delay it adds to the backlog
        + later_delay_per_step(cfg, slot) * work  # the delay it adds to later slots' jobs
    )
    local = (cfg.steps - steps[None, :]) * cfg.cycles_per_step / slot.f_local[:, None]
    estimate = np.where(steps > 0, edge + transmission_s(cfg, slot.rate)[:, None], 0.0) + local
    m = estimate.argmin(axis=1)
    value = slot.value[np.arange(slot.n), m]
    stored = np.where((edge_work(slot, m) > 0) & (value > margin * slot.value_floor), m, 0)
    stored[np.argsort(-value * (stored > 0), kind="stable")[cfg.capacity_entries :]] = 0  # no more than fit
    return m, stored


decide.eviction = "value"  # type: ignore[attr-defined]  # the cache evicts the lowest estimated value first
