"""The service's parameters: frozen dataclasses of one concern each, validated when built,
composed into :class:`ServiceConfig` (and, for the digital twin, :class:`SiteConfig`).

``edgediff serve``'s options, config files and the twin's sites files name the parameters
flat (``window_s``, ``cache_gb``, ``header_timeout_s`` ...): a composed config is built from
those flat keys (an unknown one is an error naming it, with the closest valid name) and reads
them flat too (``config.window_s`` is ``config.scheduling.window_s``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from edgediff.cache.eviction import USAGE_RULES
from edgediff.errors import InputError
from edgediff.runtime.request import DTYPES


class ServiceConfigError(InputError):
    """A service parameter is invalid; the message names it."""


def _check_numbers(part) -> None:
    """Every int/float field a finite number (not a bool)."""
    for f in fields(part):
        if f.type in ("float", "int"):
            value = getattr(part, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ServiceConfigError(f"{f.name} must be a finite number, got {value!r}")


def _check(part, positive=(), non_negative=(), unit=()) -> None:
    _check_numbers(part)
    for name in positive:
        if getattr(part, name) <= 0:
            raise ServiceConfigError(f"{name} must be > 0, got {getattr(part, name)}")
    for name in non_negative:
        if getattr(part, name) < 0:
            raise ServiceConfigError(f"{name} must be >= 0, got {getattr(part, name)}")
    for name in unit:
        if not 0 <= getattr(part, name) <= 1:
            raise ServiceConfigError(f"{name} must be in [0, 1], got {getattr(part, name)}")


@dataclass(frozen=True)
class ModelSettings:
    """The model and where its denoiser runs. ``workers`` > 1 runs the denoiser on that many
    replicas (:mod:`edgediff.runtime.workers`: one per GPU on CUDA, else CPU processes of
    ``worker_threads`` torch threads each); ``engine_process``: the engine in its own process,
    the HTTP face in this one (:mod:`edgediff.service.engine_process`)."""

    model: str = "tiny"
    device: str = "cpu"
    dtype: str = "float32"  # the edge model's (docs/runtime.md, "Generation options")
    workers: int = 1
    worker_threads: int = 1
    engine_process: bool = True

    def __post_init__(self):
        _check_numbers(self)
        if self.dtype not in DTYPES:
            raise ServiceConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name in ("workers", "worker_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ServiceConfigError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class SchedulingSettings:
    """What each window is decided with. ``n_hat_fraction`` and ``pai_a``/``pai_b`` scale the
    paper's Part A defaults (``N_hat = 80`` and the PAI sigmoid, both for ``N = 200``) to a
    request's own step count: a request of ``N`` steps gets ``N_hat = round(0.4 N)`` and
    ``F(n) = sigmoid(a 200/N (n - b N/200))``. ``edge_profile`` ``None`` calibrates the edge at
    start-up. ``b_max`` bounds the requests each window grants; ``max_batch`` (optional) the
    running batch, where members of earlier windows may still be: a window then grants at most
    ``min(b_max, max_batch - members running)``. ``gpus`` is the ``G`` of
    ``L_e(b, G) = k b / G + h``. ``profile_from_steps``: each window is decided with that
    profile times the measured pace of the edge's recent batched steps (their seconds over the
    calibrated ``L(b)``, the service's host work included), not the bare denoiser's
    calibration alone (docs/service.md, "The profile follows the steps")."""

    window_s: float = 0.5
    policy: str = "exact"
    policy_options: Mapping[str, Any] = field(default_factory=dict, hash=False)  # e.g. {"time_limit": 2} for milp
    gpus: int = 1
    b_max: int = 20
    max_batch: int | None = None
    queue_limit: int = 256
    n_hat_fraction: float = 0.4
    pai_a: float = 0.0413
    pai_b: float = 71.44
    eta: float = 10.0
    W_max: float = 1e6
    edge_profile: tuple[float, float] | None = None
    seed: int = 0
    profile_from_steps: bool = True

    def __post_init__(self):
        _check(self, positive=("window_s", "gpus", "queue_limit", "eta"), non_negative=("b_max", "seed"))
        if not isinstance(self.profile_from_steps, bool):
            raise ServiceConfigError(f"profile_from_steps must be true or false, got {self.profile_from_steps!r}")
        _check(self, unit=("n_hat_fraction",))
        if self.max_batch is not None and (
            isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1
        ):
            raise ServiceConfigError(f"max_batch must be an integer >= 1, got {self.max_batch!r}")
        if self.W_max <= 0 or self.pai_a <= 0:
            raise ServiceConfigError("W_max and pai_a must be > 0")
        if not isinstance(self.policy_options, Mapping):
            raise ServiceConfigError(f"policy_options must be a mapping, got {self.policy_options!r}")
        object.__setattr__(self, "policy_options", dict(self.policy_options))  # a copy: the caller's dict may change
        if self.policy_options:
            from edgediff.offload.policies import SHARED_OPTIONS, policy_option_names

            valid = policy_option_names(self.policy)
            for key in self.policy_options:
                if key not in valid and key not in SHARED_OPTIONS:
                    raise ServiceConfigError(
                        f"policy_options: {self.policy!r} takes no option {key!r}; "
                        f"it takes: {', '.join(valid) or 'none'}"
                    )
        if self.edge_profile is not None:
            k, h = self.edge_profile
            if not (math.isfinite(k) and math.isfinite(h)) or k < 0 or k / self.gpus + h <= 0:
                raise ServiceConfigError(f"edge_profile must have k >= 0 and k/G + h > 0, got {self.edge_profile}")

    @property
    def batch_limit(self) -> int:
        """The largest batch the edge plans for (and calibrates up to): ``max_batch`` if set, else
        ``b_max`` (windows that overlap may still exceed it then)."""
        return self.b_max if self.max_batch is None else self.max_batch

    def n_hat(self, steps: int) -> int:
        return min(steps, round(self.n_hat_fraction * steps))


@dataclass(frozen=True)
class CacheSettings:
    """The latent cache: its size, eviction rule (:mod:`edgediff.cache.eviction`), the
    similarity floor ``theta_min`` of ``θ(m)`` and ``reusable_fraction``, which sets the
    reusable bound ``S* = max(1, round(0.3 N))`` (the caching model's 6 of 20 steps,
    docs/caching-model.md)."""

    cache_gb: float = 1.0
    cache_eviction: str = "lcbfu"
    theta_min: float = 0.8
    reusable_fraction: float = 0.3

    def __post_init__(self):
        _check(self, non_negative=("cache_gb",), unit=("theta_min", "reusable_fraction"))
        if self.cache_eviction not in USAGE_RULES:
            rules = ", ".join(USAGE_RULES[:-1]) + f" or {USAGE_RULES[-1]}"
            raise ServiceConfigError(f"cache_eviction must be {rules}, got {self.cache_eviction!r}")

    @property
    def cache_bytes(self) -> int:
        return int(self.cache_gb * 1e9)

    def reusable_steps(self, steps: int) -> int:
        """``S*`` for a request of ``steps`` steps."""
        return max(1, min(steps, round(self.reusable_fraction * steps)))


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP side: body size, long-poll bound, connection deadlines and cap, and how long
    the listener waits after the drain for clients to collect their results."""

    max_body_bytes: int = 16_384
    max_wait_s: float = 60.0
    header_timeout_s: float = 10.0  # a connection sends its request headers within this, or is closed
    body_timeout_s: float = 30.0  # ... and its body within this of the headers
    keep_alive_s: float = 30.0  # an idle keep-alive connection is closed after this
    max_connections: int = 1000  # open connections; one more is answered 503 and closed
    linger_s: float = 10.0  # after the drain: the listener waits this long for clients to collect results

    def __post_init__(self):
        positive = ("max_body_bytes", "max_connections", "header_timeout_s", "body_timeout_s", "keep_alive_s")
        _check(self, positive=positive, non_negative=("max_wait_s", "linger_s"))


@dataclass(frozen=True)
class TenancySettings:
    """API keys (``(SHA-256 of a key, tenant)`` pairs, :mod:`edgediff.service.tenants`),
    whether tenants share one latent cache (a membership oracle between them), the operator
    keys' digests (they see every tenant) and the tenants' quotas (``(tenant, Quota)``)."""

    api_keys: tuple[tuple[str, str], ...] | None = None
    cache_sharing: bool = False
    operator_keys: tuple[str, ...] = ()
    quotas: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        if (self.operator_keys or self.quotas) and self.api_keys is None:
            raise ServiceConfigError("operator_keys and quotas need api_keys")
        unknown = sorted({t for t, _ in self.quotas} - set(self.tenants))
        if unknown:
            raise ServiceConfigError(f"quotas: unknown tenant {unknown[0]!r}")

    @property
    def tenants(self) -> tuple[str, ...]:
        """The tenants of ``api_keys`` (empty: no keys, one anonymous tenant)."""
        return tuple(sorted({tenant for _, tenant in self.api_keys or ()}))


@dataclass(frozen=True)
class LifecycleSettings:
    """Records and restarts: finished requests kept for retrieval by id, the drain's bound,
    and the write-ahead journal (acceptances forced to disk before the 202 with
    ``journal_fsync``; docs/service.md)."""

    record_limit: int = 2_000
    drain_timeout_s: float = 120.0
    journal: Path | None = None
    journal_fsync: bool = True

    def __post_init__(self):
        _check(self, non_negative=("record_limit", "drain_timeout_s"))


class _Composed:
    """A frozen config composed of parts (dataclass fields), built from flat keys, from parts,
    or both (the flat keys then change the given parts), and read by flat keys."""

    PARTS: ClassVar[dict[str, type]] = {}

    def __init__(self, **options):
        owner = {f.name: part for part, cls in self.PARTS.items() for f in fields(cls)}
        for key in options:
            if key not in owner and key not in self.PARTS:
                close = difflib.get_close_matches(key, owner, n=1)
                hint = f"; did you mean {close[0]!r} ({owner[close[0]]}.{close[0]})?" if close else ""
                raise ServiceConfigError(f"unknown parameter {key!r}{hint}")
        for part, cls in self.PARTS.items():
            mine = {key: value for key, value in options.items() if owner.get(key) == part}
            base = options.get(part)
            if base is not None and not isinstance(base, cls):
                raise ServiceConfigError(f"{part} must be a {cls.__name__}, got {type(base).__name__}")
            try:
                value = cls(**mine) if base is None else replace(base, **mine)
            except ServiceConfigError as err:  # name the field by its dotted path: scheduling.window_s
                message = str(err)
                first = message.replace(":", " ").split(" ", 1)[0]
                named = first in {f.name for f in fields(cls)}
                raise ServiceConfigError(f"{part}.{message}" if named else message) from None
            object.__setattr__(self, part, value)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        for part in type(self).PARTS:
            value = self.__dict__.get(part)
            if value is not None and hasattr(value, name):
                return getattr(value, name)
        raise AttributeError(f"{type(self).__name__} has no parameter {name!r}")

    def options(self) -> dict[str, Any]:
        """The flat keys and values (what builds an equal config)."""
        return {f.name: getattr(getattr(self, p), f.name) for p in self.PARTS for f in fields(getattr(self, p))}

    def replace(self, **changes):
        """A copy with the flat ``changes``."""
        return replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every flat key."""
        return tuple(f.name for part in cls.PARTS.values() for f in fields(part))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The flat keys' defaults (those with one)."""
        return {f.name: f.default for part in cls.PARTS.values() for f in fields(part) if f.default is not MISSING}


@dataclass(frozen=True, init=False)
class SiteConfig(_Composed):
    """What an edge site decides with, and all the digital twin reads of a site's service:
    ``scheduling`` and ``caching``."""

    PARTS = {"scheduling": SchedulingSettings, "caching": CacheSettings}
    scheduling: SchedulingSettings
    caching: CacheSettings


@dataclass(frozen=True, init=False)
class ServiceConfig(_Composed):
    """Everything ``edgediff serve`` can set, in parts: ``runtime`` (:class:`ModelSettings`),
    ``scheduling``, ``caching``, ``http``, ``tenancy``, ``lifecycle``. Sizes in bytes, times in
    seconds. With ``workers`` > 1, ``gpus`` is the worker count (another ``gpus`` is refused)
    and each window is planned with the workers still alive."""

    PARTS = {
        "runtime": ModelSettings,
        "scheduling": SchedulingSettings,
        "caching": CacheSettings,
        "http": HttpSettings,
        "tenancy": TenancySettings,
        "lifecycle": LifecycleSettings,
    }
    runtime: ModelSettings
    scheduling: SchedulingSettings
    caching: CacheSettings
    http: HttpSettings
    tenancy: TenancySettings
    lifecycle: LifecycleSettings

    def __init__(self, **options):
        super().__init__(**options)
        workers = self.runtime.workers
        if workers > 1:
            if self.scheduling.gpus not in (1, workers):
                gpus = self.scheduling.gpus
                why = "with workers, G is the worker count"
                raise ServiceConfigError(f"gpus ({gpus}) and workers ({workers}) disagree: {why}")
            object.__setattr__(self, "scheduling", replace(self.scheduling, gpus=workers))

    @property
    def site(self) -> SiteConfig:
        """The parts a site's windows are decided with (what the digital twin takes)."""
        return SiteConfig(scheduling=self.scheduling, caching=self.caching)


def load_service_config(path: str | Path) -> dict[str, Any]:
    """The flat options of a service config file (``serve --config``; JSON, or TOML when the
    name ends in ``.toml``): flat keys (``window_s = 1``) and/or part sections
    (``[scheduling] window_s = 1``), validated by building a :class:`ServiceConfig`. A bad file
    is one :class:`ServiceConfigError` naming the field as a dotted path, with the closest
    valid name for a misspelt one."""
    import json
    import tomllib

    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as err:
        raise ServiceConfigError(f"cannot read config file {str(path)!r}: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ServiceConfigError(
            f"{path.name}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {err}"
        ) from None
    if not isinstance(data, dict):
        raise ServiceConfigError(f"{path.name}: expected an object of parameters, got {type(data).__name__}")
    parts = {part: {f.name for f in fields(cls)} for part, cls in ServiceConfig.PARTS.items()}
    owner = {name: part for part, names in parts.items() for name in names}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in parts and isinstance(value, dict):
            for name, inner in value.items():
                if name not in parts[key]:
                    close = difflib.get_close_matches(name, parts[key], n=1)
                    where = f"; it belongs in [{owner[name]}]" if name in owner else ""
                    hint = f"; did you mean {close[0]!r}?" if close else where
                    raise ServiceConfigError(f"{path.name}: {key}.{name}: unknown field{hint}")
                flat[name] = inner
        elif key in owner:
            flat[key] = value
        else:
            close = difflib.get_close_matches(key, [*owner, *parts], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ServiceConfigError(f"{path.name}: {key}: unknown field{hint}")
    if isinstance(flat.get("edge_profile"), list):
        flat["edge_profile"] = tuple(flat["edge_profile"])
    try:
        ServiceConfig(**flat)
    except (ServiceConfigError, TypeError, ValueError) as err:
        raise ServiceConfigError(f"{path.name}: {err}") from None
    return flat


def service_options(path: str | Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """``serve``'s options over a config file: a flag given with a value other than its default
    overrides the file; the file overrides the defaults."""
    if path is None:
        return flags
    given = load_service_config(path)
    default = ServiceConfig.defaults()
    return {**given, **{k: v for k, v in flags.items() if k not in given or k not in default or v != default[k]}}


def service_pai_curve(path=None, model: str = "tiny"):
    """The service's PAI curve in 200-step units: the fit at ``path`` (``measure-pai``'s
    ``pai.json`` or ``{a, b, N}``), else the tiny models' measured one for a built-in trained
    tiny model, else the paper's fit."""
    from edgediff.core.pai import PaiCurve, load_pai_fit

    if path is not None:
        return load_pai_fit(path)
    if model.startswith("tiny") and model != "tiny-random":  # measured on the trained tiny models
        from edgediff.runtime.tiny import WEIGHTS_DIR

        return load_pai_fit(WEIGHTS_DIR / "pai.json")
    return PaiCurve()
