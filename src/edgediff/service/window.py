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
from edgediff.core.model import Decision, Evaluation, evaluate
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
    )


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
) -> list[GroupDecision]:
    """The window's decisions: one Part A instance per step count ``N`` and latent area,
    groups in order of first arrival sharing the window's slots, each decided by
    ``policy`` (anything with ``decide(instance) -> Decision``), with ``G = gpus`` (default
    ``config.gpus``). The slots: ``config.b_max``, and with ``config.max_batch`` no more than
    the running batch (``running`` members of earlier windows) has free. A policy that raises
    on a group (e.g. a learned policy that cannot take the instance) fails that group only."""
    remaining = window_slots(config, running)
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
            )
            decision = policy.decide(instance)
            outcome = evaluate(instance, decision, "timeline")
        except Exception as err:
            decided.append(GroupDecision(group, error=err))
            continue
        remaining -= decision.granted_count
        decided.append(GroupDecision(group, instance, decision, outcome))
    return decided
