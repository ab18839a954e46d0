"""Scenarios: the distribution instances are drawn from (docs/formats.md, "Scenario file").

A :class:`Scenario` is everything :func:`draw_instance` needs to draw a random decision window:
the edge and its GPUs, the link, the PAI curve, the device mix, the α distribution and the user
counts. The built-in distribution of docs/offloading-model.md is :data:`PAPER_SCENARIO`;
``random_instance(I, G, seed=s)`` is ``draw_instance(replace(PAPER_SCENARIO, G=G), I, s)``,
draw for draw. Scenario files (JSON, or TOML) are validated with pydantic like instance files:
a bad file is one :class:`ScenarioError` naming the field as a dotted path.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from edgediff.core.instance import (
    INTERMEDIATE_BITS,
    PROMPT_BITS,
    FiniteFloat,
    Instance,
    NonNegativeFloat,
    PositiveFloat,
    _describe,
    _EdgeSchema,
    _FieldError,
    _LinkSchema,
    _PaiSchema,
    _Strict,
)
from edgediff.core.pai import PaiCurve
from edgediff.core.profiles import DEFAULT_EDGE, PRESETS, USER_ROWS, GpuProfile, edge_step_latency, warn_implausible
from edgediff.errors import InputError

ALPHA_REFERENCE_BATCH = 20
"""Batch size whose edge latency sets the lower end of the paper's α interval (docs/offloading-model.md)."""

USER_ROW_WEIGHTS = np.linspace(1.0, 2.0, USER_ROWS.size) / np.linspace(1.0, 2.0, USER_ROWS.size).sum()
"""The paper's device mix: rows 3..10 of the published table, slower rows drawn more often."""

ALPHA_FLOOR = 1e-6
"""A user as fast as the edge at batch 20 would get α = 0; α stays > 0, as (P1) requires."""

ALPHA_DISTRIBUTIONS = ("paper", "uniform", "lognormal", "fixed")


class ScenarioError(InputError):
    """A scenario file or dictionary is invalid; the message names the field."""


def alpha_interval(local_step_latency, gpus: int, pai: PaiCurve, n_hat: int, n: int, edge=DEFAULT_EDGE):
    """``(lo, hi)`` of the paper's uniform α distribution for users of the given step latency.

    ``lo = D(20) / (a F(N_hat)(1 - F(N_hat)))``, ``hi = 0.05 D(1) / (a F(N)(1 - F(N)))``
    with ``D(b) = max(L_i(1) - L_e(b, G), 0)``; ``hi`` is raised to ``lo`` where smaller.
    """

    def saving(b):
        return np.maximum(local_step_latency - edge_step_latency(b, gpus, edge.k, edge.h), 0.0)

    lo = saving(ALPHA_REFERENCE_BATCH) / pai.derivative(n_hat)
    hi = 0.05 * saving(1) / pai.derivative(n)
    return lo, np.maximum(hi, lo)


@dataclass(frozen=True)
class AlphaDistribution:
    """How α (seconds of latency one unit of PAI is worth) is drawn per user.

    ``paper``: uniform on :func:`alpha_interval` (depends on each user's device); ``uniform``:
    on ``[low, high]``; ``lognormal``: median ``median``, log-space standard deviation
    ``sigma``; ``fixed``: ``value`` for everyone. Every draw is floored at :data:`ALPHA_FLOOR`.
    """

    kind: str = "paper"
    low: float = 0.0
    high: float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    value: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A distribution of instances: the fixed system and how users are drawn (docs/formats.md)."""

    devices: tuple[GpuProfile, ...] = tuple(PRESETS[f"row{r}"] for r in USER_ROWS)
    weights: tuple[float, ...] = tuple(np.linspace(1.0, 2.0, USER_ROWS.size))  # normalized when drawn
    alpha: AlphaDistribution = AlphaDistribution()
    users: tuple[int, ...] = (4, 8, 12, 16, 20)
    N: int = 200
    N_hat: int = 80
    B_max: int = 20
    G: int = 8
    K: float = 1.0
    edge: GpuProfile = DEFAULT_EDGE
    eta: float = 10.0
    W_max: float = 1e6
    pai: PaiCurve = field(default_factory=PaiCurve)
    prompt_bits: float = float(PROMPT_BITS)
    intermediate_bits: float = float(INTERMEDIATE_BITS)
    name: str = ""


PAPER_SCENARIO = Scenario(name="paper-default")
"""The built-in random distribution of docs/offloading-model.md (``edgediff instance`` without ``--scenario``)."""


def draw_instance(scenario: Scenario, users: int, seed: int | np.random.SeedSequence | np.random.Generator) -> Instance:
    """One random instance of ``users`` users; the same seed gives the same instance.

    Draws, in this order: each user's device (weighted), request times uniform on ``[0, K)``,
    then α. :data:`PAPER_SCENARIO` reproduces ``random_instance`` bit for bit.
    """
    if users < 1:
        raise ValueError("users must be >= 1")
    if scenario.G < 1:
        raise ValueError("G must be >= 1")
    if scenario.B_max < 0:
        raise ValueError("B_max must be >= 0")
    rng = np.random.default_rng(seed)
    table = np.array([(d.k, d.h) for d in scenario.devices])
    weights = np.asarray(scenario.weights, dtype=float)
    rows = rng.choice(len(table), size=users, p=weights / weights.sum())
    k, h = table[rows, 0], table[rows, 1]
    request_time = rng.uniform(0.0, scenario.K, size=users)
    paper = alpha_interval(k + h, scenario.G, scenario.pai, scenario.N_hat, scenario.N, scenario.edge)
    alpha = draw_alpha(scenario.alpha, rng, users, paper)
    return Instance(
        ids=tuple(f"u{i}" for i in range(users)),
        k=k,
        h=h,
        alpha=alpha,
        request_time=request_time,
        prompt_bits=np.full(users, scenario.prompt_bits),
        intermediate_bits=np.full(users, scenario.intermediate_bits),
        N=scenario.N,
        N_hat=scenario.N_hat,
        B_max=scenario.B_max,
        G=scenario.G,
        K=scenario.K,
        edge_k=scenario.edge.k,
        edge_h=scenario.edge.h,
        eta=scenario.eta,
        W_max=scenario.W_max,
        pai=scenario.pai,
    )


def draw_alpha(dist: AlphaDistribution, rng: np.random.Generator, users: int, paper_interval=None) -> np.ndarray:
    """``users`` draws of α from ``dist``, floored at :data:`ALPHA_FLOOR`; ``paper_interval``
    is the users' ``(lo, hi)`` of :func:`alpha_interval`, needed by the ``paper`` kind only."""
    if dist.kind == "paper":
        if paper_interval is None:
            raise ValueError("the paper's alpha distribution needs each user's interval")
        alpha = rng.uniform(*paper_interval)
    elif dist.kind == "uniform":
        alpha = rng.uniform(dist.low, dist.high, size=users)
    elif dist.kind == "lognormal":
        alpha = rng.lognormal(np.log(dist.median), dist.sigma, size=users)
    elif dist.kind == "fixed":
        alpha = np.full(users, dist.value)
    else:
        raise ValueError(f"unknown alpha distribution {dist.kind!r}; choose from {', '.join(ALPHA_DISTRIBUTIONS)}")
    return np.maximum(alpha, ALPHA_FLOOR)


# --- the file format ------------------------------------------------------------------------------


class _DeviceSchema(_Strict):
    profile: str | None = None
    k: NonNegativeFloat | None = None
    h: FiniteFloat | None = None
    weight: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _one_source(self):
        if self.profile is not None:
            if self.k is not None or self.h is not None:
                raise ValueError("give a profile name or k and h, not both")
            if self.profile not in PRESETS:
                raise ValueError(f"unknown profile {self.profile!r}; choose from {', '.join(PRESETS)}")
        elif self.k is None or self.h is None:
            raise ValueError("give a profile name (e.g. row3) or both k and h")
        elif self.k + self.h <= 0:
            raise ValueError("local step latency k + h must be positive")
        return self

    def gpu(self) -> GpuProfile:
        if self.profile is not None:
            return PRESETS[self.profile]
        assert self.k is not None and self.h is not None  # the validator saw to it
        return GpuProfile(self.k, self.h)


class _PaperAlpha(_Strict):
    distribution: Literal["paper"]


class _UniformAlpha(_Strict):
    distribution: Literal["uniform"]
    low: PositiveFloat
    high: PositiveFloat

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class _LognormalAlpha(_Strict):
    distribution: Literal["lognormal"]
    median: PositiveFloat
    sigma: NonNegativeFloat


class _FixedAlpha(_Strict):
    distribution: Literal["fixed"]
    value: PositiveFloat


_AlphaSchema = Annotated[
    Union[_PaperAlpha, _UniformAlpha, _LognormalAlpha, _FixedAlpha], Field(discriminator="distribution")
]


class _UserRange(_Strict):
    start: Annotated[int, Field(ge=1)]
    stop: Annotated[int, Field(ge=1)]
    step: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _ordered(self):
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop}) must be >= start ({self.start})")
        return self


_DEFAULT = Scenario()


class _ScenarioSchema(_Strict):
    name: str = ""
    description: str = ""
    N: Annotated[int, Field(ge=1)] = _DEFAULT.N
    N_hat: Annotated[int, Field(ge=0)] = _DEFAULT.N_hat
    B_max: Annotated[int, Field(ge=0)] = _DEFAULT.B_max
    G: Annotated[int, Field(ge=1)] = _DEFAULT.G
    K: PositiveFloat = _DEFAULT.K
    edge: _EdgeSchema = _EdgeSchema(k=DEFAULT_EDGE.k, h=DEFAULT_EDGE.h)
    link: _LinkSchema = _LinkSchema()
    pai: _PaiSchema = _PaiSchema()
    devices: Annotated[list[_DeviceSchema], Field(min_length=1)] | None = None
    alpha: _AlphaSchema = _PaperAlpha(distribution="paper")
    users: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = list(_DEFAULT.users)
    prompt_bits: NonNegativeFloat = PROMPT_BITS
    intermediate_bits: NonNegativeFloat = INTERMEDIATE_BITS

    @field_validator("edge", mode="before")
    @classmethod
    def _preset_edge(cls, value):
        if isinstance(value, str):  # a preset name stands for its k, h
            if value not in PRESETS:
                raise ValueError(f"unknown profile {value!r}; choose from {', '.join(PRESETS)}")
            return {"k": PRESETS[value].k, "h": PRESETS[value].h}
        return value

    @field_validator("users", mode="before")
    @classmethod
    def _user_counts(cls, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        if isinstance(value, dict):  # {"start", "stop", "step"}: stop included
            r = _UserRange.model_validate(value)
            return list(range(r.start, r.stop + 1, r.step))
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.N_hat > self.N:
            raise _FieldError("N_hat", f"must be <= N ({self.N}), got {self.N_hat}")
        if self.edge.k / self.G + self.edge.h <= 0:
            raise _FieldError("edge.h", "edge step latency k/G + h must be positive at batch size 1")
        return self

    def to_scenario(self) -> Scenario:
        a = self.alpha
        alpha = AlphaDistribution(
            kind=a.distribution,
            low=getattr(a, "low", 0.0),
            high=getattr(a, "high", 0.0),
            median=getattr(a, "median", 0.0),
            sigma=getattr(a, "sigma", 0.0),
            value=getattr(a, "value", 0.0),
        )
        devices: dict[str, Any] = {}
        if self.devices is not None:
            devices = {
                "devices": tuple(d.gpu() for d in self.devices),
                "weights": tuple(d.weight for d in self.devices),
            }
        return Scenario(
            **devices,
            alpha=alpha,
            users=tuple(self.users),
            N=self.N,
            N_hat=self.N_hat,
            B_max=self.B_max,
            G=self.G,
            K=self.K,
            edge=GpuProfile(self.edge.k, self.edge.h),
            eta=self.link.eta,
            W_max=self.link.W_max,
            pai=PaiCurve(a=self.pai.a, b=self.pai.b),
            prompt_bits=float(self.prompt_bits),
            intermediate_bits=float(self.intermediate_bits),
            name=self.name,
        )


def scenario_from_dict(data: object) -> Scenario:
    """Validate a scenario dictionary (docs/formats.md); raises :class:`ScenarioError` naming the field."""
    try:
        s = _ScenarioSchema.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_describe(err, "scenario")) from None
    scenario = s.to_scenario()
    warn_implausible("edge", scenario.edge.k, scenario.edge.h)
    for i, device in enumerate(scenario.devices):
        warn_implausible(f"devices.{i}", device.k, device.h)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file: JSON, or TOML when the name ends in ``.toml``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ScenarioError(f"cannot read scenario file {str(path)!r}: {err.strerror}") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ScenarioError(f"not valid TOML: {err}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ScenarioError(f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    return scenario_from_dict(data)


__all__ = [
    "ALPHA_DISTRIBUTIONS",
    "PAPER_SCENARIO",
    "AlphaDistribution",
    "Scenario",
    "ScenarioError",
    "alpha_interval",
    "draw_alpha",
    "draw_instance",
    "load_scenario",
    "scenario_from_dict",
]
