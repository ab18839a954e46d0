"""Hindsight bounds on what any policy can reach on a trace (docs/results-twin.md, "The
online question"): how far per-window optimization is from the best conceivable.

Both bounds relax the coupling between requests, so each request is bounded on its own:

- ``free``: the request is answered the moment it arrives, shares neither the edge nor the
  link (every edge step at batch size 1, the link to itself), and, with a cache, finds a
  cached output ``S*`` steps deep. ``max_n alpha F(n) - latency(n)`` over every split, or all
  local. No schedule of the edge can do better for that request, so the mean over the trace
  bounds every policy, online or offline.
- ``windowed``: the same, but the answer comes no earlier than the end of the request's
  window (``phase + j K``), as with every policy that decides at window ends. The gap between
  the two is what the window wait costs; the gap between ``windowed`` and a per-window policy
  is at most what planning across windows (batching, queueing, foresight) could still win.

The bounds are loose where the edge is the bottleneck (they ignore the batch's and the
queue's delay); they are exact for a request alone on an idle edge.
"""

from __future__ import annotations

import math

import numpy as np

from edgediff.core.link import transmission_latency
from edgediff.core.pai import PaiCurve
from edgediff.core.profiles import edge_step_latency, local_step_latency
from edgediff.twin.config import Site
from edgediff.twin.records import EPS, prompt_bits
from edgediff.twin.workload import Arrivals


def hindsight_bounds(site: Site, arrivals: Arrivals) -> tuple[np.ndarray, np.ndarray]:
    """``(free, windowed)`` upper bounds on each request's utility at ``site`` (seconds)."""
    svc = site.service
    k_e, h_e = site.executed_profile
    edge_step = float(edge_step_latency(1, svc.gpus, k_e, h_e))  # the fastest an edge step can be: batch size 1
    link = transmission_latency(prompt_bits(arrivals) + site.intermediate_bits, 1, svc.eta, svc.W_max)  # the link alone
    local = local_step_latency(arrivals.k, arrivals.h)
    free = np.empty(len(arrivals))
    for N in np.unique(arrivals.steps).tolist():
        rows = arrivals.steps == N
        pai = PaiCurve(svc.pai_a, svc.pai_b).for_steps(N)
        cached = svc.reusable_steps(N) if svc.cache_bytes > 0 else 0
        n = np.arange(svc.n_hat(N), N + 1)[None, :]
        alpha = arrivals.alpha[rows, None]
        edge = np.maximum(N - n - cached, 0) * edge_step
        granted = alpha * pai(n) - (n * local[rows, None] + edge + link[rows, None])
        denied = arrivals.alpha[rows] * pai(N) - N * local[rows]
        free[rows] = np.maximum(granted[:, :-1].max(axis=1, initial=-np.inf), denied)  # n = N: nothing offloaded
    window_end = site.phase_s + svc.window_s * np.maximum(
        1, np.floor((arrivals.time - site.phase_s) / svc.window_s + EPS) + 1
    )
    return free, free - (window_end - arrivals.time)


def mean_bounds(site: Site, arrivals: Arrivals) -> dict:
    """The bounds' means over the trace, as summary columns."""
    if not len(arrivals):
        return {"utility_bound_free": math.nan, "utility_bound_windowed": math.nan}
    free, windowed = hindsight_bounds(site, arrivals)
    return {"utility_bound_free": float(free.mean()), "utility_bound_windowed": float(windowed.mean())}
