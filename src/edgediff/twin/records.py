"""What the twin records of each request (its outcome codes and the per-request arrays) and the
constants both the simulation (:mod:`edgediff.twin.sim`) and its report
(:mod:`edgediff.twin.report`) read; a module of its own, so the report does not import the
simulation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgediff.service.scheduler import EPS
from edgediff.twin.workload import Arrivals

__all__ = ["DENIED", "EPS", "FAILED", "GRANTED", "OUTCOMES", "PROMPT", "REJECTED", "Records", "prompt_bits"]

PROMPT = " " * 27  # a class-keyed request's prompt: the paper's 216 bits

# request outcomes
DENIED, GRANTED, FAILED, REJECTED = 0, 1, 2, 3
OUTCOMES = ("denied", "granted", "failed", "rejected")


def prompt_bits(arrivals: Arrivals) -> np.ndarray:
    """``s_p``: each request's prompt in bits (a class-keyed request's is :data:`PROMPT`)."""
    if arrivals.prompts is None:
        return np.full(len(arrivals), 8.0 * len(PROMPT))
    return np.array([8.0 * len(p.encode()) for p in arrivals.prompts])


@dataclass
class Records:
    """Per-request outcome arrays, filled as the simulation runs."""

    site: np.ndarray
    outcome: np.ndarray
    decided_at: np.ndarray
    answered_at: np.ndarray
    split: np.ndarray
    hit: np.ndarray
    window_granted: np.ndarray
    predicted_latency: np.ndarray

    @classmethod
    def empty(cls, n: int, steps: np.ndarray) -> Records:
        nan = np.full(n, np.nan)
        return cls(
            site=np.full(n, -1, np.int32),
            outcome=np.full(n, FAILED, np.int8),
            decided_at=nan.copy(),
            answered_at=nan.copy(),
            split=steps.astype(np.int64).copy(),
            hit=np.zeros(n, np.int64),
            window_granted=np.zeros(n, np.int64),
            predicted_latency=nan.copy(),
        )

    def decide(self, i, site, t, granted, split, b, predicted):
        self.site[i] = site
        self.decided_at[i] = t
        self.outcome[i] = GRANTED if granted else DENIED
        self.split[i] = split
        self.window_granted[i] = b if granted else 0
        self.predicted_latency[i] = predicted
        if not granted:
            self.answered_at[i] = t

    def fail(self, i, t):
        self.outcome[i] = FAILED
        self.decided_at[i] = self.answered_at[i] = t

    def reject(self, i, t):
        self.outcome[i] = REJECTED
        self.decided_at[i] = self.answered_at[i] = t
