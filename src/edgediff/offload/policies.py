"""One interface for every offloading policy: ``make_policy(name).decide(instance)``.

Policies are registered by module path and imported only when made, so choosing
``exact`` never imports SciPy's MILP code, and a learned policy (``dqn``, a later
issue) can bring torch without burdening the others. A policy's options are its function's
keyword parameters (``dqn``'s ``checkpoint``, ``timeline``'s ``split_grid``) and the fields of a
config dataclass parameter (ga's ``GaConfig``): adding a policy is its module and one line here.

Your own policy needs no line here (docs/your-policy.md): a name ``module:function`` (an
importable module) or ``path/to/file.py:function`` is a plugin, and an installed package adds
names through the entry-point group ``edgediff.policies`` (``name = "module:function"``). A
plugin is the same :class:`PolicyFunction`; its decisions are checked against the instance's
constraints (:func:`edgediff.core.model.check_decision`): an infeasible one is refused with one
line naming the broken constraint, never evaluated.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from edgediff.core.model import Decision
from edgediff.errors import InputError

if TYPE_CHECKING:  # annotations only: listing the registry (the CLI's help) loads no pydantic or SciPy
    from edgediff.core.instance import Instance


@dataclass(frozen=True)
class PolicySpec:
    target: str  # "module:function", the function taking (instance, **options)
    summary: str


REGISTRY: dict[str, PolicySpec] = {
    "exact": PolicySpec("edgediff.offload.exact:solve_exact", "provable optimum (paper latency model)"),
    "ga": PolicySpec("edgediff.offload.ga:solve_ga", "genetic algorithm, 100 x 200, split optimized"),
    "milp": PolicySpec(
        "edgediff.offload.milp:solve_milp", "paper's B&B: linearized GQAP, split fixed at N_hat (HiGHS)"
    ),
    "dqn": PolicySpec(
        "edgediff.offload.dqn.policy:solve_dqn", "paper's DRL-convex hybrid (PER-DQN), shipped general-scope checkpoint"
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
# Run settings any caller may give every policy; a policy that does not take one ignores it.
SHARED_OPTIONS: tuple[str, ...] = ("seed", "time_limit", "checkpoint")


ENTRY_POINTS = "edgediff.policies"  # the entry-point group through which a package adds policy names


class PolicyFunction(Protocol):
    """An offloading policy: the window's instance (docs/offloading-model.md, its arrays one
    per user) and the policy's options as keywords, to a :class:`Decision` (a grant and a
    split point per user). Keyword parameters with defaults are its ``--policy-option``s."""

    def __call__(self, instance: Instance, /, **options: Any) -> Decision: ...


class UnknownPolicy(InputError):
    """The policy name is not registered."""


class CheckpointError(InputError):
    """A learned policy's checkpoint is missing, malformed or cannot take the instance."""


class UnknownPolicyOption(InputError):
    """A policy was given an option it does not take."""


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
        if self.name not in REGISTRY:  # your own policy: its decision is checked, never taken on trust
            _check_plugin_decision(self.name, instance, decision)
        return decision


def _check_plugin_decision(name: str, instance: Instance, decision) -> None:
    from edgediff.core.model import DecisionError, check_decision

    if not isinstance(decision, Decision):
        raise DecisionError(f"policy {name!r} returned {type(decision).__name__}, not a Decision")
    try:
        check_decision(instance, decision)
    except DecisionError as err:
        raise DecisionError(f"policy {name!r} returned an infeasible decision: {err}") from None


def _installed() -> dict[str, str]:
    """Names added by installed packages (entry-point group :data:`ENTRY_POINTS`)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}


def policy_spec(name: str) -> PolicySpec:
    """The spec of ``name``: registered, installed (entry point) or a plugin
    (``module:function``, ``file.py:function``); raises :class:`UnknownPolicy` naming the
    choices."""
    if name in REGISTRY:
        return REGISTRY[name]
    installed = _installed()
    if name in installed:
        return PolicySpec(installed[name], "installed plugin")
    if ":" in name:
        return PolicySpec(name, "plugin")
    choices = ", ".join([*POLICY_NAMES, *installed])
    raise UnknownPolicy(
        f"unknown policy {name!r}; choose from {choices}, or name your own as module:function or file.py:function"
    )


def _import_target(target: str) -> tuple[Any, str]:
    """The module of ``module:function`` or ``path/to/file.py:function`` (imported now) and the
    function's name; :class:`UnknownPolicy` naming what is missing."""
    from edgediff.plugins import PluginNotFound, import_target

    try:
        return import_target(target)
    except PluginNotFound as err:
        raise UnknownPolicy(str(err)) from None


def _solver(name: str) -> tuple[Any, Callable[..., Decision]]:
    """The module of ``name`` (imported now) and its policy function."""
    target = policy_spec(name).target
    module, func = _import_target(target)
    solve = getattr(module, func, None)
    if not callable(solve):
        raise UnknownPolicy(f"policy {name!r}: {target.rpartition(':')[0]} has no function {func!r}")
    return module, solve


def _config_defaults(solve: Callable[..., Decision]) -> dict[str, Any]:
    """Keyword parameters whose default is a config dataclass (e.g. ga's ``GaConfig``)."""
    params = inspect.signature(solve).parameters.values()
    return {p.name: p.default for p in params if dataclasses.is_dataclass(p.default)}


def policy_option_names(name: str) -> tuple[str, ...]:
    """The option names policy ``name`` takes: its function's keyword parameters, and the
    fields of a config dataclass parameter, given one by one (``population`` for ga)."""
    _, solve = _solver(name)
    params = list(inspect.signature(solve).parameters)[1:]  # the first is the instance
    nested = [f.name for config in _config_defaults(solve).values() for f in dataclasses.fields(config)]
    return tuple(params + nested)


def make_policy(name_or_policy: str | Policy, options: Mapping[str, Any] | None = None, **more: Any) -> Policy:
    """Build a registered policy bound to its options (a built ``Policy`` is returned as it is,
    taking run settings only).

    Options come as a mapping, keywords or both. The run settings in ``SHARED_OPTIONS`` are
    dropped when ``None`` or not taken by the policy; any other option the policy does not take
    raises :class:`UnknownPolicyOption` naming the ones it takes.
    """
    given = {**(options or {}), **more}
    if isinstance(name_or_policy, Policy):
        extra = [k for k in given if k not in SHARED_OPTIONS]
        if extra:
            raise UnknownPolicyOption(f"option {extra[0]!r} applies to a policy name, not a built policy")
        return name_or_policy
    name = name_or_policy
    module, solve = _solver(name)
    valid = policy_option_names(name)
    unknown = [k for k in given if k not in valid and k not in SHARED_OPTIONS]
    if unknown:
        raise UnknownPolicyOption(
            f"policy {name!r} takes no option {unknown[0]!r}; it takes: {', '.join(valid) or 'none'}"
        )
    kwargs = {k: v for k, v in given.items() if k in valid and v is not None}
    for param, default in _config_defaults(solve).items():  # fields given one by one -> one config object
        fields = {f.name for f in dataclasses.fields(default)}
        nested = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        if nested:
            kwargs[param] = dataclasses.replace(kwargs.get(param, default), **nested)
    prepare = getattr(module, "prepare", None)
    if prepare is not None:  # e.g. load a checkpoint now, not in the first timed decision
        prepare(**kwargs)
    return Policy(name, solve, kwargs)
