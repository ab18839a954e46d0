"""The personalized accuracy index (PAI) curve ``F(n)`` fitted by the paper
(docs/offloading-model.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from edgediff.errors import InputError

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


class PaiFileError(InputError):
    """A PAI fit file cannot be read; the message names the file and the field."""


def load_pai_fit(path: str | Path) -> PaiCurve:
    """The PAI curve of a ``measure-pai`` output (``pai.json``: its ``pai_at_N200``) or of a
    JSON object ``{"a", "b"}`` with an optional ``"N"`` (the run length it was fitted on,
    default 200), in ``PAPER_STEPS``-step units (what the service scales to each request's N)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise PaiFileError(f"cannot read PAI file {str(path)!r}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise PaiFileError(f"PAI file {path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise PaiFileError(f"PAI file {path}: expected a JSON object")
    fit, N = data, data.get("N", PAPER_STEPS)
    if "pai_at_N200" in data:
        fit, N = data["pai_at_N200"], PAPER_STEPS
    elif "pai" in data:
        fit = data["pai"]
    try:
        a, b, N = float(fit["a"]), float(fit["b"]), int(N)
    except (KeyError, TypeError, ValueError):
        raise PaiFileError(
            f"PAI file {path}: needs numbers a and b (measure-pai's pai.json, or {{'a', 'b', 'N'}})"
        ) from None
    if not (np.isfinite(a) and np.isfinite(b) and a > 0 and N >= 1):
        raise PaiFileError(f"PAI file {path}: needs a > 0, b finite and N >= 1, got a={a}, b={b}, N={N}")
    return PaiCurve(a, b).for_steps(PAPER_STEPS, over=N)
