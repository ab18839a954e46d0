"""The edge's cache of reusable early-step latents (the Part B reuse rule of
docs/caching-model.md, on real latents).

An entry is the latent of a request after ``m`` denoising steps (``1 <= m <= S*``), keyed by
its prompt's embedding. A later request of the same step count and latent shape may start
from it if ``sim(prompt, entry prompt) >= theta(m)``, with
``theta(m) = theta_min + (1 - theta_min)(m - 1)/(S* - 1)`` (:func:`edgediff.cache.model.theta`):
early, noisier latents are shared by more prompts, the last reusable step needs (near)
identical prompts. Among the usable entries the one with the most steps done wins (it saves
the most edge work), ties by similarity. Capacity is in bytes (latent + embedding); eviction
by a usage rule of :mod:`edgediff.cache.eviction`: ``lcbfu`` (the Part B store's rule),
``lru`` or ``lfu``. Thread-safe: the engine thread writes it, ``/metrics`` reads sizes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np

from edgediff.cache.eviction import USAGE_RULES, EntryStats, check_rule, victim
from edgediff.cache.model import theta


@dataclass(eq=False)
class CacheEntry:
    embedding: np.ndarray = field(repr=False)
    step: int  # m, denoising steps done
    steps: int  # N of the request that made it
    shape: tuple[int, ...]
    state: object = field(repr=False)  # LatentState with split N - m
    nbytes: int
    prompt: str
    uses: int = 0
    last_used: int = 0


@dataclass(frozen=True)
class CacheHit:
    entry: CacheEntry
    similarity: float

    @property
    def step(self) -> int:
        return self.entry.step


class LatentCache:
    # similarity at which a new entry counts as a duplicate of one already stored at its step
    DUPLICATE = 0.999

    def __init__(self, capacity_bytes: int, theta_min: float = 0.8, eviction: str = "lcbfu"):
        self.capacity_bytes = int(capacity_bytes)
        self.theta_min = theta_min
        self.eviction = check_rule(eviction, USAGE_RULES)
        self._entries: list[CacheEntry] = []
        self._bytes = 0
        self._clock = 0  # logical time: one tick per lookup or insert
        self._lock = threading.Lock()
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, embedding: np.ndarray, steps: int, shape: tuple, max_step: int, reusable_steps: int):
        """The best usable entry with at most ``max_step`` steps done, or ``None``."""
        with self._lock:
            self._clock += 1
            thresholds = theta(np.arange(reusable_steps + 1), reusable_steps, self.theta_min)
            best, best_key = None, None
            for e in self._entries:
                if e.steps != steps or e.shape != shape or e.step > max_step:
                    continue
                sim = float(np.dot(embedding, e.embedding))
                if sim >= thresholds[e.step] - 1e-6:
                    key = (e.step, sim)
                    if best_key is None or key > best_key:
                        best, best_key = e, key
            if best is None:
                return None
            best.uses += 1
            best.last_used = self._clock
            return CacheHit(best, best_key[1])

    def insert(self, embedding: np.ndarray, state, step: int, prompt: str) -> bool:
        """Store ``state`` (``step`` steps done); evicts by the rule; ``False`` if not stored
        (cache off, entry larger than the capacity, or a duplicate already there)."""
        latent = state.latent
        nbytes = int(latent.numel() * latent.element_size()) + int(embedding.nbytes)
        if nbytes > self.capacity_bytes:
            return False
        shape = tuple(latent.shape)
        with self._lock:
            self._clock += 1
            for e in self._entries:
                if e.step == step and e.steps == state.steps and e.shape == shape:
                    if float(np.dot(embedding, e.embedding)) >= self.DUPLICATE:
                        return False
            while self._bytes + nbytes > self.capacity_bytes:
                self._evict_one()
            stored = replace(state, latent=latent.detach().to("cpu").clone())
            self._entries.append(
                CacheEntry(embedding.copy(), step, state.steps, shape, stored, nbytes, prompt, 0, self._clock)
            )
            self._bytes += nbytes
            return True

    def _evict_one(self) -> None:
        entries = self._entries
        stats = EntryStats(
            last_used=np.array([e.last_used for e in entries]),
            uses=np.array([e.uses for e in entries]),
            step=np.array([e.step for e in entries]),
        )
        evicted = entries.pop(victim(self.eviction, stats))
        self._bytes -= evicted.nbytes
        self.evictions += 1
