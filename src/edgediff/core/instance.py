"""Offloading instances: one decision window of docs/offloading-model.md, the instance
file of docs/formats.md.

The JSON schema is validated with pydantic at the edge of the program; inside, an
:class:`Instance` is a frozen dataclass holding one NumPy array per user attribute, so
every model function is vectorized over users.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgediff.core.pai import PaiCurve
from edgediff.core.profiles import DEFAULT_EDGE, local_step_latency, warn_implausible
from edgediff.errors import InputError

PROMPT_BITS = 216
INTERMEDIATE_BITS = 4_400_000

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class InstanceError(InputError):
    """An instance file or dictionary is invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _GpuSchema(_Strict):
    k: NonNegativeFloat
    h: FiniteFloat


class _EdgeSchema(_GpuSchema):
    """The edge's ``k``, ``h``; also takes a whole ``edgediff calibrate`` profile, whose other
    keys (docs/formats.md, "Calibration profile") are accepted and not used."""

    r2: FiniteFloat | None = None
    model: str | None = None
    device: str | None = None
    batches: list[int] | None = None
    step_latency_s: list[FiniteFloat] | None = None
    repeats: int | None = None
    guidance: bool | None = None
    threads: int | None = None


class _LinkSchema(_Strict):
    eta: PositiveFloat = 10.0
    W_max: PositiveFloat = 1e6


class _PaiSchema(_Strict):
    a: PositiveFloat = 0.0413
    b: FiniteFloat = 71.44


class _UserSchema(_Strict):
    id: Annotated[str, Field(min_length=1)]
    k: NonNegativeFloat
    h: FiniteFloat
    alpha: PositiveFloat
    request_time: NonNegativeFloat
    prompt_bits: NonNegativeFloat = PROMPT_BITS
    intermediate_bits: NonNegativeFloat = INTERMEDIATE_BITS
    cached_steps: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _positive_step_latency(self):
        if self.k + self.h <= 0:
            raise ValueError("local step latency k + h must be positive")
        return self


class _InstanceSchema(_Strict):
    N: Annotated[int, Field(ge=1)] = 200
    N_hat: Annotated[int, Field(ge=0)] = 80
    B_max: Annotated[int, Field(ge=0)] = 20
    G: Annotated[int, Field(ge=1)] = 8
    K: PositiveFloat = 1.0
    edge: _EdgeSchema = _EdgeSchema(k=DEFAULT_EDGE.k, h=DEFAULT_EDGE.h)
    link: _LinkSchema = _LinkSchema()
    pai: _PaiSchema = _PaiSchema()
    running: list[NonNegativeFloat] = []
    start_delay: NonNegativeFloat = 0.0
    users: Annotated[list[_UserSchema], Field(min_length=1)]

    @model_validator(mode="after")
    def _consistent(self):
        if self.N_hat > self.N:
            raise _FieldError("N_hat", f"must be <= N ({self.N}), got {self.N_hat}")
        if self.edge.k / self.G + self.edge.h <= 0:
            raise _FieldError("edge.h", "edge step latency k/G + h must be positive at batch size 1")
        seen: set[str] = set()
        for i, user in enumerate(self.users):
            if user.id in seen:
                raise _FieldError(f"users.{i}.id", f"duplicate id {user.id!r}")
            seen.add(user.id)
            if user.request_time >= self.K:
                raise _FieldError(f"users.{i}.request_time", f"must be < K ({self.K}), got {user.request_time}")
            if user.cached_steps > self.N:
                raise _FieldError(f"users.{i}.cached_steps", f"must be <= N ({self.N}), got {user.cached_steps}")
        return self


class _FieldError(ValueError):
    def __init__(self, field_path: str, message: str):
        super().__init__(f"{field_path}: {message}")


def _known_fields() -> set[str]:
    """Every field name of the instance schemas (what a misspelt key is compared against)."""
    names: set[str] = set()
    todo: list[type[BaseModel]] = [_Strict]
    while todo:
        cls = todo.pop()
        names.update(cls.model_fields)
        todo.extend(cls.__subclasses__())
    return names


def _describe(err: ValidationError, what: str = "instance") -> str:
    errors = err.errors()
    # an unknown key is the cause of a "missing" one beside it (a misspelling): name it first
    unknown = next((e for e in errors if e["type"] == "extra_forbidden"), None)
    if unknown is not None:
        *parent, key = unknown["loc"]
        missing = [e["loc"][-1] for e in errors if e["type"] == "missing" and list(e["loc"][:-1]) == parent]
        close = get_close_matches(str(key), [str(m) for m in missing] or sorted(_known_fields()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{'.'.join(str(p) for p in unknown['loc'])}: unknown field{hint}"
    first = errors[0]
    path = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    ctx_error = first.get("ctx", {}).get("error")
    if isinstance(ctx_error, _FieldError):
        return str(ctx_error)  # already names its own field
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{path or what}: {msg}"


@dataclass(frozen=True, eq=False)
class Instance:
    """One decision window: the edge, the link, the PAI curve and the requesting users."""

    ids: tuple[str, ...]
    k: np.ndarray  # user GPU slope, s per step per batch member
    h: np.ndarray  # user GPU intercept, s
    alpha: np.ndarray  # emphasis on quality, > 0
    request_time: np.ndarray  # k_i in [0, K), s
    prompt_bits: np.ndarray
    intermediate_bits: np.ndarray
    N: int = 200
    N_hat: int = 80
    B_max: int = 20
    G: int = 8
    K: float = 1.0
    edge_k: float = DEFAULT_EDGE.k
    edge_h: float = DEFAULT_EDGE.h
    eta: float = 10.0
    W_max: float = 1e6
    pai: PaiCurve = field(default_factory=PaiCurve)
    # d_i: steps of a usable cached output; None (no cache) becomes zeros when built
    cached_steps: np.ndarray = None  # type: ignore[assignment]
    # r_s, s = 1..len: members of other windows in the batch at this window's s-th edge step
    # (0 beyond; an expectation, so not always whole); None (nothing running): an empty array
    running: np.ndarray = None  # type: ignore[assignment]
    _running_work: np.ndarray = field(init=False, repr=False)  # R(m) for m = 0..len(running)
    # seconds from the decision to this window's first edge step (a step already in flight)
    start_delay: float = 0.0

    def __post_init__(self):
        for name in ("k", "h", "alpha", "request_time", "prompt_bits", "intermediate_bits"):
            arr = np.asarray(getattr(self, name), dtype=float)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        cached = np.zeros(len(self.ids), np.int64) if self.cached_steps is None else self.cached_steps
        cached = np.asarray(cached, dtype=np.int64)
        if cached.shape != (len(self.ids),) or np.any(cached < 0):  # e.g. replace() with other users
            raise InstanceError(
                f"cached_steps must hold one integer >= 0 per user ({len(self.ids)}), got {cached.shape}"
            )
        cached.setflags(write=False)
        object.__setattr__(self, "cached_steps", cached)
        running = np.zeros(0) if self.running is None else np.asarray(self.running, dtype=float)
        if running.ndim != 1 or not np.all(np.isfinite(running) & (running >= 0)):
            raise InstanceError(f"running must be a list of member counts >= 0, got shape {running.shape}")
        running = np.trim_zeros(running, "b")  # r_s = 0 beyond the array: the same instance
        running.setflags(write=False)
        object.__setattr__(self, "running", running)
        cumulative = np.concatenate(([0.0], np.cumsum(running)))
        cumulative.setflags(write=False)
        object.__setattr__(self, "_running_work", cumulative)

    @property
    def has_running(self) -> bool:
        """Whether members of earlier windows share this window's edge steps (docs/offloading-model.md,
        "The running batch")."""
        return bool(self.running.size)

    def running_members(self, m) -> np.ndarray:
        """``R(m) = sum_{s <= m} r_s``: member-steps of earlier windows' members that run beside a
        granted user's ``m`` edge steps (``m`` any integer array, ``>= 0``)."""
        work = self._running_work
        return work[np.minimum(np.asarray(m, dtype=np.int64), len(work) - 1)]

    @property
    def has_cached_steps(self) -> bool:
        """Whether any user's request can start from a cached output (docs/offloading-model.md, "Cached steps")."""
        return bool(self.cached_steps.any())

    @property
    def num_users(self) -> int:
        return len(self.ids)

    @property
    def local_step_latency(self) -> np.ndarray:
        """``L_i(1) = k_i + h_i`` for every user."""
        return local_step_latency(self.k, self.h)

    @property
    def waiting_latency(self) -> np.ndarray:
        """``l_R,i = K - k_i``: a request waits for the end of its window."""
        return self.K - self.request_time

    @property
    def payload_bits(self) -> np.ndarray:
        """``s_p,i + s_m,i``: the prompt up and the intermediate latent down."""
        return self.prompt_bits + self.intermediate_bits

    @property
    def max_granted(self) -> int:
        return min(self.B_max, self.num_users)

    # --- conversion -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: object) -> Instance:
        """Validate an instance dictionary (docs/formats.md); raises :class:`InstanceError` naming the field."""
        try:
            s = _InstanceSchema.model_validate(data)
        except ValidationError as err:
            raise InstanceError(_describe(err)) from None
        users = s.users
        warn_implausible("edge", s.edge.k, s.edge.h)
        warn_implausible("users.{i}", [u.k for u in users], [u.h for u in users])
        return cls(
            ids=tuple(u.id for u in users),
            k=np.array([u.k for u in users]),
            h=np.array([u.h for u in users]),
            alpha=np.array([u.alpha for u in users]),
            request_time=np.array([u.request_time for u in users]),
            prompt_bits=np.array([u.prompt_bits for u in users]),
            intermediate_bits=np.array([u.intermediate_bits for u in users]),
            cached_steps=np.array([u.cached_steps for u in users]),
            running=np.array(s.running, dtype=float),
            start_delay=s.start_delay,
            N=s.N,
            N_hat=s.N_hat,
            B_max=s.B_max,
            G=s.G,
            K=s.K,
            edge_k=s.edge.k,
            edge_h=s.edge.h,
            eta=s.link.eta,
            W_max=s.link.W_max,
            pai=PaiCurve(a=s.pai.a, b=s.pai.b),
        )

    def to_dict(self) -> dict:
        return {
            "N": self.N,
            "N_hat": self.N_hat,
            "B_max": self.B_max,
            "G": self.G,
            "K": self.K,
            "edge": {"k": self.edge_k, "h": self.edge_h},
            "link": {"eta": self.eta, "W_max": self.W_max},
            "pai": {"a": self.pai.a, "b": self.pai.b},
            **({"running": self.running.tolist()} if self.has_running else {}),
            **({"start_delay": self.start_delay} if self.start_delay else {}),
            "users": [
                {
                    "id": self.ids[i],
                    "k": float(self.k[i]),
                    "h": float(self.h[i]),
                    "alpha": float(self.alpha[i]),
                    "request_time": float(self.request_time[i]),
                    "prompt_bits": float(self.prompt_bits[i]),
                    "intermediate_bits": float(self.intermediate_bits[i]),
                    **({"cached_steps": int(self.cached_steps[i])} if self.cached_steps[i] else {}),
                }
                for i in range(self.num_users)
            ],
        }


def load_instance(path: str | Path) -> Instance:
    """Read and validate an instance JSON file (docs/formats.md)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise InstanceError(f"cannot read instance file {str(path)!r}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InstanceError(f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    return Instance.from_dict(data)


def dumps_instance(instance: Instance) -> str:
    return json.dumps(instance.to_dict(), indent=2) + "\n"


def save_instance(instance: Instance, path: str | Path) -> None:
    Path(path).write_text(dumps_instance(instance))


__all__ = ["Instance", "InstanceError", "load_instance", "save_instance", "dumps_instance"]
