"""Decisions and their value under the two latency models of docs/offloading-model.md.

A decision grants or denies each user and gives each a split point ``n``: steps
``N..n+1`` run at the edge (``N - n`` offloaded steps), steps ``n..1`` locally.

* ``paper``: the fixed-batch model of eqs. (9)-(10): every offloaded step of every
  granted user costs ``L_e(b, G)`` with ``b`` the number of granted users.
* ``timeline``: what a batch executor really does: the batch shrinks as members reach
  their split points, so user i's edge part is ``sum_{s=1..m_i} L_e(b_s, G)`` with
  ``b_s = #{granted j : m_j >= s}``.

A user whose request can start from a cached output ``d_i`` steps deep has only
``m_i = max(0, N - n_i - d_i)`` edge steps to run (in both models; ``d_i = 0`` without a cache).

Members of earlier windows still running (``r_s`` at the window's ``s``-th edge step) are in
every step's batch too: since ``L_e`` is linear in the batch size, they add
``(k_e/G) R(m_i)``, ``R(m) = sum_{s <= m} r_s``, to a granted user's edge time in both models;
a step already in flight when the window is decided delays every granted user by ``start_delay``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from edgediff.core.link import transmission_latency
from edgediff.core.profiles import edge_step_latency
from edgediff.errors import InputError

if TYPE_CHECKING:  # annotations only: the CLI reads LATENCY_MODELS without loading pydantic and SciPy
    from edgediff.core.instance import Instance

LatencyModel = Literal["paper", "timeline"]
LATENCY_MODELS: tuple[str, ...] = ("paper", "timeline")


class DecisionError(InputError):
    """A decision violates a constraint of (P1)."""


@dataclass(frozen=True, eq=False)
class Decision:
    """Grant vector ``x`` and split points ``n`` for every user of an instance."""

    granted: np.ndarray  # bool, shape (I,)
    split: np.ndarray  # int, shape (I,); N for denied users

    def __post_init__(self):
        object.__setattr__(self, "granted", np.asarray(self.granted, dtype=bool))
        object.__setattr__(self, "split", np.asarray(self.split, dtype=np.int64))

    @property
    def granted_count(self) -> int:
        return int(self.granted.sum())

    @classmethod
    def all_local(cls, instance: Instance) -> Decision:
        return cls(np.zeros(instance.num_users, bool), np.full(instance.num_users, instance.N))

    def offloaded_steps(self, instance: Instance) -> np.ndarray:
        return instance.N - self.split


def check_decision(instance: Instance, decision: Decision) -> None:
    """Raise :class:`DecisionError` unless the decision satisfies constraints C1-C4."""
    n, g = decision.split, decision.granted
    if n.shape != (instance.num_users,) or g.shape != (instance.num_users,):
        raise DecisionError("decision does not have one entry per user")
    if decision.granted_count > instance.B_max:
        raise DecisionError(f"{decision.granted_count} users granted, B_max is {instance.B_max}")
    if np.any((n < instance.N_hat) | (n > instance.N)):
        raise DecisionError(f"split points must lie in [N_hat, N] = [{instance.N_hat}, {instance.N}]")
    if np.any(~g & (n != instance.N)):
        raise DecisionError("a denied user must have split N (all steps local)")


def edge_steps_to_run(instance: Instance, decision: Decision) -> np.ndarray:
    """``max(0, N - n_i - d_i)``: the offloaded steps the edge computes; the first ``d_i`` come
    from a cached output at no edge time (docs/offloading-model.md, "Cached steps")."""
    return np.maximum(decision.offloaded_steps(instance) - instance.cached_steps, 0)


def running_latency(instance: Instance, edge_steps) -> np.ndarray:
    """``(k_e/G) R(m)``: what the members of earlier windows add to the edge time of a granted
    user running ``m`` edge steps (docs/offloading-model.md, "The running batch")."""
    if not instance.has_running:
        return np.zeros(np.shape(edge_steps))
    return instance.edge_k / instance.G * instance.running_members(edge_steps)


def denied_latency(instance: Instance) -> np.ndarray:
    """``L_i = l_R,i + N L_i(1)``: the latency of every user if denied."""
    return instance.waiting_latency + instance.N * instance.local_step_latency


def edge_latency_timeline(offloaded: np.ndarray, gpus: int, k_e: float, h_e: float) -> np.ndarray:
    """Edge compute time of each batch member when the batch shrinks as members leave.

    ``offloaded`` holds ``m_j`` for the granted users; returns ``sum_{s<=m_j} L_e(b_s, G)``.
    """
    offloaded = np.asarray(offloaded, dtype=np.int64)
    if offloaded.size == 0:
        return np.zeros(0)
    longest = int(offloaded.max())
    # b_s = #{j : m_j >= s} for s = 1..longest, from a histogram of m.
    leaving_after = np.bincount(offloaded, minlength=longest + 1)  # members with m_j == s
    batch = offloaded.size - np.cumsum(leaving_after)[:-1]  # b_s for s = 1..longest
    elapsed = np.concatenate(([0.0], np.cumsum(edge_step_latency(batch, gpus, k_e, h_e))))
    return elapsed[offloaded]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Per-user outcome of a decision under one latency model."""

    latency: np.ndarray
    pai: np.ndarray
    utility: np.ndarray
    latency_model: str

    @property
    def objective(self) -> float:
        """(P1): ``sum_i alpha_i F(n_i) - L_i``."""
        return float(self.utility.sum())


def evaluate(instance: Instance, decision: Decision, latency_model: LatencyModel = "paper") -> Evaluation:
    """Latency, PAI and utility ``alpha F(n) - L`` of every user under ``latency_model``."""
    check_decision(instance, decision)
    if latency_model not in LATENCY_MODELS:
        raise ValueError(f"unknown latency model {latency_model!r}; choose from {', '.join(LATENCY_MODELS)}")
    g, n = decision.granted, decision.split
    b = decision.granted_count
    edge_steps = edge_steps_to_run(instance, decision)
    latency = instance.waiting_latency + n * instance.local_step_latency
    if b:
        if latency_model == "paper":
            edge = edge_steps[g] * edge_step_latency(b, instance.G, instance.edge_k, instance.edge_h)
        else:
            edge = edge_latency_timeline(edge_steps[g], instance.G, instance.edge_k, instance.edge_h)
        tx = transmission_latency(instance.payload_bits[g], b, instance.eta, instance.W_max)
        latency[g] += edge + running_latency(instance, edge_steps[g]) + tx + instance.start_delay
    pai = instance.pai(n)
    return Evaluation(latency=latency, pai=pai, utility=instance.alpha * pai - latency, latency_model=latency_model)
