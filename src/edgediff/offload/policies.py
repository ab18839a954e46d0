"""One interface for every offloading policy: ``make_policy(name).decide(instance)``.

Policies are registered by module path and imported only when made, so choosing
``exact`` never imports SciPy's MILP code, and a learned policy (``dqn``, a later
issue) can bring torch without burdening the others: ``dqn`` is registered by module path
and takes a ``checkpoint`` option (default: the checkpoint shipped in the package).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from edgediff.core.instance import Instance
from edgediff.core.model import Decision
from edgediff.errors import InputError


@dataclass(frozen=True)
class PolicySpec:
    target: str  # "module:function", the function taking (instance, **options)
    summary: str
    options: tuple[str, ...] = ()  # option names the function accepts


REGISTRY: dict[str, PolicySpec] = {
    "exact": PolicySpec("edgediff.offload.exact:solve_exact", "provable optimum (paper latency model)"),
    "ga": PolicySpec("edgediff.offload.ga:solve_ga", "genetic algorithm, 100 x 200, split optimized", ("seed",)),
    "milp": PolicySpec(
        "edgediff.offload.milp:solve_milp",
        "paper's B&B: linearized GQAP, split fixed at N_hat (HiGHS)",
        ("time_limit",),
    ),
    "dqn": PolicySpec(
        "edgediff.offload.dqn.policy:solve_dqn",
        "paper's DRL-convex hybrid (PER-DQN), shipped general-scope checkpoint",
        ("checkpoint",),
    ),
    "timeline": PolicySpec(
        "edgediff.offload.timeline:solve_timeline",
        "optimum under the timeline latency model (shrinking batch; beyond the paper)",
    ),
    "b1": PolicySpec("edgediff.offload.baselines:solve_b1", "first come up to B_max, split optimized"),
    "b2": PolicySpec("edgediff.offload.baselines:solve_b2", "first come up to B_max, split N_hat"),
    "b3": PolicySpec("edgediff.offload.baselines:solve_b3", "all local"),
}
POLICY_NAMES: tuple[str, ...] = tuple(REGISTRY)


class UnknownPolicy(InputError):
    """The policy name is not registered."""


class CheckpointError(InputError):
    """A learned policy's checkpoint is missing, malformed or cannot take the instance."""


class SolverError(RuntimeError):
    """A policy could not produce a decision (e.g. a solver's time limit ran out)."""


@dataclass
class Policy:
    """A named policy bound to its options; ``decide`` maps an instance to a decision."""

    name: str
    solve: Callable[..., Decision]
    options: dict[str, Any] = field(default_factory=dict)
    last_decision_time_s: float = 0.0

    def decide(self, instance: Instance) -> Decision:
        start = time.perf_counter()
        decision = self.solve(instance, **self.options)
        self.last_decision_time_s = time.perf_counter() - start
        return decision


def policy_spec(name: str) -> PolicySpec:
    """The registered spec of ``name``; raises :class:`UnknownPolicy` naming the choices."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownPolicy(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}") from None


def make_policy(
    name: str, *, seed: int | None = None, time_limit: float | None = None, checkpoint: str | None = None
) -> Policy:
    """Build a registered policy; options it does not take are ignored."""
    spec = policy_spec(name)
    module_name, func = spec.target.split(":")
    module = importlib.import_module(module_name)
    given = {"seed": seed, "time_limit": time_limit, "checkpoint": checkpoint}
    options = {k: given[k] for k in spec.options if given[k] is not None}
    prepare = getattr(module, "prepare", None)  # e.g. load a checkpoint now, not in the first timed decision
    if prepare is not None:
        prepare(**options)
    return Policy(name, getattr(module, func), options)
