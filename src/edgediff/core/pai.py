"""The personalized accuracy index (PAI) curve ``F(n)`` fitted by the paper
(docs/offloading-model.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

PAPER_STEPS = 200  # N of the paper's fit (Sec. VI-A): the default a, b are for 200-step runs


@dataclass(frozen=True)
class PaiCurve:
    """``F(n) = 1 / (1 + exp(-a (n - b)))`` over split point ``n`` (steps run locally) of an
    ``N``-step run; the defaults are the paper's fit for ``N = PAPER_STEPS``."""

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

    def for_steps(self, N: int, over: int = PAPER_STEPS) -> PaiCurve:
        """This curve, fitted on ``over``-step runs, for ``N``-step runs: the same curve over the
        fraction ``n / N`` of local steps, ``a * over / N`` and ``b * N / over``."""
        scale = over / N  # one factor: the service's instances depend on its exact rounding
        return PaiCurve(a=self.a * scale, b=self.b / scale)
