"""The front door's routing rule, shared by the service's Ray front door and the twin.

A request of ``N`` steps goes to the site of least expected latency, the window's own
prediction (docs/offloading-model.md, "The running batch") for one more member: the wait for
that site's next window decision, plus ``m`` edge steps at the batch it would join — the
requests queued there and this one, plus the members already running for as many of those
``m`` steps as they still have — with ``m = N - N_hat`` the most steps a grant offloads::

    score_s = wait_s + m_s L_e(q_s + 1, G_s) + (k_s / G_s) R_s(m_s),   L_e(b, G) = k_s b / G_s + h_s

``R_s(m) = sum_j min(left_j, m)``, ``left_j`` each running member's edge steps still to run
(without them: every member for all ``m`` steps, ``R = members m``). ``q_s`` counts the
requests the front door has sent the site and not yet heard back about, so a burst routed
before any site answers spreads instead of piling on the last report's best site. A site
whose queue is full (or that is down) scores infinity; ties go to the lowest index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def running_work(edge_steps_left: Sequence[int], offloaded: int) -> float:
    """``R(m) = sum_j min(left_j, m)``: member-steps the running members add to ``m`` new edge steps."""
    left = np.asarray(edge_steps_left, dtype=float)
    return float(np.minimum(left, offloaded).sum()) if left.size else 0.0


def expected_latency(wait, offloaded, k_g, h, members, queued, limit, work=None) -> np.ndarray:
    """Each site's score (seconds), vectorized over sites; every argument broadcasts
    (``k_g`` is ``k / G``; ``work``: each site's ``R(m)``, default ``members m``)."""
    wait, queued, offloaded = np.asarray(wait, float), np.asarray(queued, float), np.asarray(offloaded, float)
    work = np.asarray(members, float) * offloaded if work is None else np.asarray(work, float)
    k_g = np.asarray(k_g, float)
    score = wait + offloaded * (k_g * (queued + 1) + np.asarray(h)) + k_g * work
    return np.where(queued >= np.asarray(limit), np.inf, score)


def least_expected_latency(wait, offloaded, k_g, h, members, queued, limit, work=None) -> int:
    """The index of the site to route to (see the module docstring)."""
    return int(np.argmin(expected_latency(wait, offloaded, k_g, h, members, queued, limit, work)))
