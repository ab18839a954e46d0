"""GPU latency profiles: per-denoising-step latency ``L(b) = k*b + h`` (docs/offloading-model.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuProfile:
    """Per-step latency of one GPU running a batch of ``b`` requests, in seconds.

    ``h`` may be negative (it is a fitted intercept, as in several of the paper's
    measured profiles); what must be positive is the latency at every batch size used.
    """

    k: float
    h: float

    @property
    def local_step_latency(self) -> float:
        """``L(1) = k + h``: a user device always runs batch size 1."""
        return local_step_latency(self.k, self.h)


# The paper authors' measured profiles (published computing_power_profile.npy), ms -> s.
# Row 0 is the edge GPU (an H100 NVL); rows 3..10 are the user GPUs, faster to slower.
_PROFILE_TABLE_MS = np.array(
    [
        [36.4604, 13.7667],
        [54.3481, 21.3780],
        [81.9737, -8.3810],
        [103.8972, 15.5916],
        [121.2305, -1.0847],
        [195.7460, -67.0094],
        [203.0522, 3.7758],
        [240.7149, 29.2571],
        [174.4575, 65.1134],
        [281.0392, 14.8237],
        [344.0871, -38.2560],
    ]
)
PROFILE_TABLE = _PROFILE_TABLE_MS / 1000.0
"""``(k, h)`` in seconds for each row of the published profile table."""

EDGE_ROW = 0
USER_ROWS = np.arange(3, 11)

PRESETS: dict[str, GpuProfile] = {"edge-h100": GpuProfile(*PROFILE_TABLE[EDGE_ROW])}
PRESETS.update({f"row{r}": GpuProfile(*PROFILE_TABLE[r]) for r in range(len(PROFILE_TABLE))})
"""Named presets: ``edge-h100`` (= ``row0``) and ``row0`` .. ``row10``."""

DEFAULT_EDGE = PRESETS["edge-h100"]


def local_step_latency(k, h):
    """``L_i(1) = k_i + h_i``: a user device's step latency, at batch size 1 (vectorized)."""
    return k + h


def edge_step_latency(batch_size, gpus, k_e: float, h_e: float):
    """``L_e(b, G) = k_e * b / G + h_e`` (paper Sec. III-C; vectorized over ``b``).

    The published code divides ``h_e`` by G as well; we follow the paper's formula.
    """
    return k_e * np.asarray(batch_size, dtype=float) / gpus + h_e


IMPLAUSIBLE_STEP_S = 10.0
"""A step latency ``k`` or ``h`` above this many seconds is almost surely given in milliseconds."""


def warn_implausible(where: str, k, h) -> bool:
    """Log one warning if any ``(k, h)`` exceeds :data:`IMPLAUSIBLE_STEP_S` (vectorized); ``where``
    names the profile, with ``{i}`` standing for the index when ``k``, ``h`` are arrays."""
    k, h = np.atleast_1d(np.asarray(k, dtype=float)), np.atleast_1d(np.asarray(h, dtype=float))
    bad = np.flatnonzero((np.abs(k) > IMPLAUSIBLE_STEP_S) | (np.abs(h) > IMPLAUSIBLE_STEP_S))
    if bad.size == 0:
        return False
    i = int(bad[0])
    more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
    log.warning(
        "warning: %s: k = %g, h = %g s per step%s is implausible (over %g s per step); "
        "step latencies are in seconds, not milliseconds",
        where.format(i=i),
        k[i],
        h[i],
        more,
        IMPLAUSIBLE_STEP_S,
    )
    return True
