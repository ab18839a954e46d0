"""The front door's routing rule, shared by the service's Ray front door and the twin.

A request of ``N`` steps goes to the site of least expected latency: the wait for that
site's next window decision plus ``m`` edge steps at the batch it would join (the members
now in it, the requests queued there and this one), ``m = N - N_hat`` the most steps a grant
offloads::

    score_s = wait_s + m_s L_e(b_s + q_s + 1, G_s),   L_e(b, G) = k_s b / G_s + h_s

A site whose queue is full (or that is down) scores infinity; ties go to the lowest index.
"""

from __future__ import annotations

import numpy as np


def expected_latency(wait, offloaded, k_g, h, members, queued, limit) -> np.ndarray:
    """Each site's score (seconds), vectorized over sites; every argument broadcasts
    (``k_g`` is ``k / G``)."""
    wait, queued = np.asarray(wait, float), np.asarray(queued, float)
    score = wait + np.asarray(offloaded) * (np.asarray(k_g) * (np.asarray(members) + queued + 1) + np.asarray(h))
    return np.where(queued >= np.asarray(limit), np.inf, score)


def least_expected_latency(wait, offloaded, k_g, h, members, queued, limit) -> int:
    """The index of the site to route to (see the module docstring)."""
    return int(np.argmin(expected_latency(wait, offloaded, k_g, h, members, queued, limit)))
