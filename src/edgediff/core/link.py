"""The shared wireless link (docs/offloading-model.md, eq. (3)): granted users split ``W_max`` equally."""

from __future__ import annotations

import numpy as np


def transmission_latency(payload_bits, granted_count, eta: float | np.ndarray, w_max: float | np.ndarray):
    """``l_T(i, b) = (s_p,i + s_m,i) * b / (eta * W_max)``: uplink prompt + downlink latent.

    ``payload_bits`` is ``s_p + s_m`` per user; broadcasts against ``granted_count`` (and
    ``eta``, ``w_max``: one per user where users are on different links).
    """
    return np.asarray(payload_bits, dtype=float) * np.asarray(granted_count, dtype=float) / (eta * w_max)
