"""The personalized accuracy index (PAI) curve ``F(n)`` fitted by the paper (docs/offloading-model.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit


@dataclass(frozen=True)
class PaiCurve:
    """``F(n) = 1 / (1 + exp(-a (n - b)))`` over split point ``n`` (steps run locally)."""

    a: float = 0.0413
    b: float = 71.44

    def __call__(self, split):
        return expit(self.a * (np.asarray(split, dtype=float) - self.b))

    def derivative(self, split):
        f = self(split)
        return self.a * f * (1.0 - f)

    def inverse(self, value):
        """The split at which ``F`` takes ``value`` (``value`` in (0, 1))."""
        return self.b + logit(value) / self.a
