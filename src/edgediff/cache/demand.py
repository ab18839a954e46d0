"""Online estimates of what an entry is worth (docs/caching-model.md, "No oracle").

The edge sees only past requests and its own load, never the catalog's true popularity:
request rates come from exponentially decayed counts per class and per topic, and the time a
hit saves from the observed number of jobs sharing the edge.
"""

from __future__ import annotations

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import topic_reusable_steps

_RENORMALIZE = 1e12  # rescale the lazily decayed counts before they overflow


class DemandEstimator:
    """Decayed request counts (memory ``rate_memory_slots``) and the edge's mean sharing degree.

    Counts are kept multiplied by ``decay^-(t - t0)`` so that an observation costs only the
    classes requested; the rate of class ``c`` at slot ``t`` is
    ``(1 - decay) * sum_i decay^(t - t_i)`` over its past requests ``t_i``. In the first slots
    this is biased low, on purpose: a class seen once in ten slots is not worth storing as if it
    came every ten slots (dividing by ``1 - decay^(t+1)`` made early estimates wild and every
    store look worth it).
    """

    def __init__(self, cfg: CacheConfig, topic: np.ndarray) -> None:
        self.cfg = cfg
        self.topic = np.asarray(topic)
        self.decay = 1.0 - 1.0 / cfg.rate_memory_slots
        self.class_count = np.zeros(cfg.classes)
        self.topic_count = np.zeros(cfg.topics)
        self.t0 = 0
        self.sharing = 1.0  # running mean of the edge jobs sharing the processor (>= 1)
        self.topic_ok = topic_reusable_steps(cfg)

    def observe(self, t: int, cls: np.ndarray, edge_jobs: int) -> None:
        """Count slot ``t``'s requests and the jobs that shared the edge."""
        self.count(t, cls)
        self.observe_load(edge_jobs)

    def count(self, t: int, cls: np.ndarray) -> None:
        """Count slot ``t``'s requests. The simulator counts them when they arrive, before the slot's
        decision: a request is itself evidence that its class is in demand (docs/caching-model.md,
        "What the value estimate missed")."""
        weight = self.decay ** -(t - self.t0)
        np.add.at(self.class_count, cls, weight)
        np.add.at(self.topic_count, self.topic[cls], weight)
        if weight > _RENORMALIZE:
            self.class_count /= weight
            self.topic_count /= weight
            self.t0 = t

    def observe_load(self, edge_jobs: int) -> None:
        """The jobs that shared the edge after a slot's decision (a running mean)."""
        if edge_jobs > 0:
            self.sharing += 0.01 * (edge_jobs - self.sharing)

    def _scale(self, t: int) -> float:
        return (1.0 - self.decay) * self.decay ** (t - self.t0)

    def class_rate(self, t: int, cls: np.ndarray) -> np.ndarray:
        """Estimated requests per slot of each class."""
        return self.class_count[cls] * self._scale(t)

    def hit_saving_s(self) -> np.ndarray:
        """Estimated slot-wide latency a hit on an entry ``m`` steps deep saves, for m = 0..S*.

        Under processor sharing with ``k`` jobs, removing ``x`` seconds of one job's work saves
        about ``(2k - 1) x`` of summed completion times; ``k`` is the observed sharing degree.
        """
        m = np.arange(self.cfg.reusable_steps + 1, dtype=float)
        return m * self.cfg.cycles_per_step / self.cfg.f_es * (2.0 * self.sharing - 1.0)

    def value(self, t: int, cls: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Estimated value rate (seconds saved per slot) of an entry of class ``cls`` at ``step``.

        The estimated request rate of the classes it serves (its class, or its whole topic when
        ``theta(step) <= sigma_topic``) times :meth:`hit_saving_s` of its depth; 0 at step 0.
        """
        cls, step = np.asarray(cls), np.asarray(step)
        scale = self._scale(t)
        rate = np.where(self.topic_ok[step], self.topic_count[self.topic[cls]] * scale, self.class_count[cls] * scale)
        return np.where(step > 0, rate * self.hit_saving_s()[step], 0.0)
