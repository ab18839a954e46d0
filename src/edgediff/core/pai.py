"""The personalized accuracy index (PAI) curve ``F(n)`` fitted by the paper
(docs/offloading-model.md)."""

from __future__ import annotations

import json
import math
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
    """A PAI file (``edgediff measure-pai``'s ``pai.json``) cannot be used; the message says why."""


@dataclass(frozen=True)
class MeasuredPai:
    """The curve of a ``measure-pai`` output, for ``PAPER_STEPS``-step runs, and the cluster-wide
    model it was measured with (``None`` if the file does not say)."""

    curve: PaiCurve
    cluster: str | None


def load_measured_pai(path: str | Path) -> MeasuredPai:
    """Read ``edgediff measure-pai``'s ``pai.json`` (docs/formats.md): its ``pai_at_N200`` fit,
    or its ``pai`` fit over ``N``-step runs scaled to ``PAPER_STEPS``; :class:`PaiFileError` naming
    the problem otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise PaiFileError(f"cannot read PAI file {str(path)!r}: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PaiFileError(f"PAI file {str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise PaiFileError(f"PAI file {str(path)!r}: expected measure-pai's pai.json (an object)")
    key = "pai_at_N200" if "pai_at_N200" in data else "pai"
    fit, steps = data.get(key), PAPER_STEPS if key == "pai_at_N200" else data.get("N")
    if not isinstance(fit, dict) or not all(_finite(fit.get(name)) for name in ("a", "b")):
        raise PaiFileError(f"PAI file {str(path)!r}: needs measure-pai's fit 'pai_at_N200' or 'pai' with numbers a and b")
    if fit["a"] <= 0:
        raise PaiFileError(f"PAI file {str(path)!r}: {key}.a must be > 0, got {fit['a']}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PaiFileError(f"PAI file {str(path)!r}: 'N' must be a positive integer, got {steps!r}")
    cluster = data.get("cluster")
    curve = PaiCurve(float(fit["a"]), float(fit["b"])).for_steps(PAPER_STEPS, over=steps)
    return MeasuredPai(curve, cluster if isinstance(cluster, str) else None)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
