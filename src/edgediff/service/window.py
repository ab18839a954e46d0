"""The Part A decision of one window (docs/offloading-model.md), from the service's queued
requests: pure functions, no locks, no clock and no torch. The engine thread runs them on its
jobs; the digital twin (:mod:`edgediff.twin`) runs the same functions on simulated requests.

A job is anything with ``id``, ``steps`` (``N``), ``k``, ``h``, ``alpha``, ``prompt`` and
``arrived`` (seconds on the clock of the window's ``start``), and optionally ``cached_steps``
(the depth of a cached output it could start from; 0 when absent) and ``area`` (its latent
area over the model's native one; 1 when absent).

Image size: a member's denoiser rows cost in proportion to its latent area (docs/service.md,
"Image sizes", says what was measured), so a group of area ``a`` is decided with the edge's
per-member ``k_e``, the device's ``k`` and ``h`` (both profiled at the native size) and the
payload bits scaled by ``a``; the edge's per-call ``h_e`` is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgediff.core.instance import Instance
from edgediff.core.model import Decision, Evaluation, edge_steps_to_run, evaluate
from edgediff.core.pai import PaiCurve
from edgediff.service.config import SiteConfig

# latest request time k_i as a fraction of K: the model needs k_i < K, and a request that
# arrived after the boundary (while the previous window was being decided) counts as last
LATEST_ARRIVAL = 0.999


def window_instance(
    jobs: Sequence,
    config: SiteConfig,
    *,
    start: float,
    b_max: int,
    edge_profile: tuple[float, float],
    intermediate_bits: int,
    gpus: int | None = None,
    running=None,
    start_delay: float = 0.0,
) -> Instance:
    """The instance of ``jobs`` (of one step count ``N``) in the window
    that opened at ``start`` (the clock of their ``arrived``), with ``b_max`` batch slots left.

    Per request: the device's ``k, h`` and α, the request time from the window's start
    (the waiting time is ``K - k_i``), ``8 * len(prompt)`` prompt bits and the edge's
    ``intermediate_bits``, and its ``cached_steps`` (docs/offloading-model.md, "Cached steps").
    The edge: its profile ``L(b) = k b / G + h`` and ``G``: ``gpus`` (the edge's live workers),
    default ``config.gpus``. The paper's
    ``N = 200`` constants scaled to ``N``: ``N_hat`` by ``config.n_hat`` and the PAI curve
    ``config.pai_a, pai_b`` over the fraction of local steps (:meth:`PaiCurve.for_steps`).
    ``running``: ``r_s``, the members of earlier windows still in the batch at the window's
    ``s``-th edge step (docs/offloading-model.md, "The running batch"; default none).
    """
    steps = {job.steps for job in jobs}
    if len(steps) != 1:
        raise ValueError(f"a window instance has one step count N, got {sorted(steps)}")
    (N,) = steps
    areas = {getattr(job, "area", 1.0) for job in jobs}
    if len(areas) != 1:
        raise ValueError(f"a window instance has one image size, got latent areas {sorted(areas)}")
    (area,) = areas
    K = config.window_s
    edge_k, edge_h = edge_profile
    edge_k *= area
    intermediate_bits = round(intermediate_bits * area)
    return Instance(
        ids=tuple(job.id for job in jobs),
        k=np.array([job.k * area for job in jobs]),
        h=np.array([job.h * area for job in jobs]),
        alpha=np.array([job.alpha for job in jobs]),
        request_time=np.array([min(max(job.arrived - start, 0.0), LATEST_ARRIVAL * K) for job in jobs]),
        prompt_bits=np.array([8 * len(job.prompt.encode()) for job in jobs]),
        intermediate_bits=np.full(len(jobs), intermediate_bits),
        cached_steps=np.array([getattr(job, "cached_steps", 0) for job in jobs]),
        N=N,
        N_hat=config.n_hat(N),
        B_max=b_max,
        G=config.gpus if gpus is None else gpus,
        K=K,
        edge_k=edge_k,
        edge_h=edge_h,
        eta=config.eta,
        W_max=config.W_max,
        pai=PaiCurve(config.pai_a, config.pai_b).for_steps(N),
        running=running,
        start_delay=start_delay,
    )


def joiners_profile(
    per_window: float, edge_steps, steps_per_window: float, horizon: int, windows: int = 64
) -> np.ndarray:
    """Expected members of *later* windows in each of this window's next ``horizon`` edge
    steps: ``per_window`` members join at each later decision, every ``steps_per_window``
    steps, and stay for edge steps drawn like ``edge_steps`` (recent members')::

        f_s = per_window * sum_{w >= 1, w D < s} P(M >= s - w D)

    (docs/offloading-model.md, "The running batch": what a window cannot know, estimated)."""
    steps = np.asarray(edge_steps, dtype=np.int64)
    steps = steps[steps > 0]
    if per_window <= 0 or not steps.size or horizon < 1:
        return np.zeros(0)
    survival = (steps[None, :] >= np.arange(1, horizon + 1)[:, None]).mean(axis=1)  # P(M >= j), j = 1..horizon
    s = np.arange(1, horizon + 1)
    expected = np.zeros(horizon)
    for w in range(1, windows + 1):
        offset = s - w * max(steps_per_window, 1.0)  # steps since window w's members joined
        present = offset >= 1
        if not present.any():
            break
        expected[present] += per_window * survival[np.minimum(offset[present].astype(np.int64), horizon) - 1]
    return expected


def running_profile(edge_steps_left) -> np.ndarray:
    """``r_s`` for ``s = 1..max``: how many of the members with ``edge_steps_left`` edge steps
    still to run (after the step in flight) are in the batch at the next ``s``-th step."""
    left = np.asarray(edge_steps_left, dtype=np.int64)
    left = left[left > 0]
    if not left.size:
        return np.zeros(0, np.int64)
    leaving_after = np.bincount(left, minlength=int(left.max()) + 1)  # members whose last step is s
    return left.size - np.cumsum(leaving_after)[:-1]


def window_slots(config: SiteConfig, running: int) -> int:
    """The requests a window may grant: ``B_max``, and with ``max_batch`` no more than the
    running batch of ``running`` members has free."""
    if config.max_batch is None:
        return config.b_max
    return max(0, min(config.b_max, config.max_batch - running))


def denial_reason(instance: Instance, granted_count: int, policy: str) -> str:
    """Why a request of this window was denied, in words for the status object's ``reason``."""
    if granted_count >= instance.B_max:
        return "no batch slot left: other requests hold the batch's slots"
    return (
        f"policy {policy}: running every step on the device scores higher (given this request's α and device step time)"
    )


def window_policy(config: SiteConfig):
    """The policy that decides the service's windows: ``config.policy`` from the registry, with
    the service's seed and ``config.policy_options``."""
    from edgediff.offload.policies import make_policy

    return make_policy(config.policy, {"seed": config.seed, **config.policy_options})


@dataclass(frozen=True, eq=False)
class GroupDecision:
    """One step count's share of a window: its jobs, their instance, the policy's decision and
    its evaluation under the timeline model (the predicted latency the service reports), or
    the ``error`` the policy raised (then the group's requests fail with it)."""

    jobs: list
    instance: Instance | None = None
    decision: Decision | None = None
    outcome: Evaluation | None = None
    error: Exception | None = None


def decide_window(
    jobs: Sequence,
    config: SiteConfig,
    policy,
    *,
    start: float,
    edge_profile: tuple[float, float],
    intermediate_bits: int,
    gpus: int | None = None,
    running: int = 0,
    edge_steps_left=(),
    joiners=None,
    start_delay: float = 0.0,
) -> list[GroupDecision]:
    """The window's decisions: one Part A instance per step count ``N`` and latent area,
    groups in order of first arrival sharing the window's slots, each decided by
    ``policy`` (anything with ``decide(instance) -> Decision``), with ``G = gpus`` (default
    ``config.gpus``). The slots: ``config.b_max``, and with ``config.max_batch`` no more than
    the running batch (``running`` members of earlier windows) has free. ``edge_steps_left``:
    each running member's edge steps still to run after the step in flight; every instance sees
    them as ``r_s``, and a later group also the members an earlier group of the window granted
    (they share its steps). A policy that raises on a group (e.g. a learned policy that cannot
    take the instance) fails that group only. ``joiners``: the expected members of later
    windows in each step (:func:`joiners_profile`), added to every group's ``r_s``;
    ``start_delay``: seconds until the step in flight ends, before any granted member's first."""
    remaining = window_slots(config, running)
    left = [int(m) for m in edge_steps_left]
    expected = np.zeros(0) if joiners is None else np.asarray(joiners, dtype=float)
    groups: dict[tuple, list] = {}
    for job in jobs:  # one instance per step count and image size
        groups.setdefault((job.steps, getattr(job, "area", 1.0)), []).append(job)
    decided = []
    for group in groups.values():
        try:
            instance = window_instance(
                group,
                config,
                start=start,
                b_max=remaining,
                edge_profile=edge_profile,
                intermediate_bits=intermediate_bits,
                gpus=gpus,
                running=_add(running_profile(left), expected),
                start_delay=start_delay,
            )
            decision = policy.decide(instance)
            outcome = evaluate(instance, decision, "timeline")
        except Exception as err:
            decided.append(GroupDecision(group, error=err))
            continue
        remaining -= decision.granted_count
        left.extend(edge_steps_to_run(instance, decision)[decision.granted].tolist())
        decided.append(GroupDecision(group, instance, decision, outcome))
    return decided


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two per-step profiles summed (the shorter one is 0 beyond its end)."""
    out = np.zeros(max(a.size, b.size))
    out[: a.size] += a
    out[: b.size] += b
    return out
