"""The service's parameters, one frozen dataclass validated when built."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgediff.cache.eviction import USAGE_RULES
from edgediff.errors import InputError


class ServiceConfigError(InputError):
    """A service parameter is invalid; the message names it."""


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``edgediff serve`` can set. Sizes in bytes, times in seconds.

    ``n_hat_fraction`` and ``pai_a``/``pai_b`` scale the paper's Part A defaults (``N_hat = 80``
    and the PAI sigmoid, both for ``N = 200``) to a request's own step count: a request of
    ``N`` steps gets ``N_hat = round(0.4 N)`` and ``F(n) = sigmoid(a 200/N (n - b N/200))``.
    ``reusable_fraction`` sets the cache's reusable bound ``S* = max(1, round(0.3 N))`` (the
    caching model's 6 of 20 steps, docs/caching-model.md). ``edge_profile`` ``None`` calibrates the
    edge model at start-up.

    ``b_max`` bounds the requests each window grants; ``max_batch`` (optional) bounds the
    running batch, where members of earlier windows may still be: a window then grants at most
    ``min(b_max, max_batch - members running)``.

    ``workers`` > 1 runs the denoiser on that many replicas (:mod:`edgediff.runtime.workers`:
    one per GPU on CUDA, else CPU processes of ``worker_threads`` torch threads each); then
    ``gpus``, the ``G`` of ``L_e(b, G) = k b / G + h``, is the worker count (another ``gpus``
    is refused) and each window is planned with the workers still alive.
    """

    model: str = "tiny"
    device: str = "cpu"
    window_s: float = 0.5
    policy: str = "exact"
    policy_options: Mapping[str, Any] = field(default_factory=dict, hash=False)  # e.g. {"time_limit": 2} for milp
    gpus: int = 1
    workers: int = 1  # denoiser replicas (runtime.workers); 1: the model runs in the service's process
    worker_threads: int = 1  # torch threads of each CPU worker
    # edgediff serve: the engine in its own process, the HTTP face in this one (service.engine_process)
    engine_process: bool = True
    b_max: int = 20
    # the most members the running batch holds (e.g. what GPU memory allows); None: B_max per window only
    max_batch: int | None = None
    cache_gb: float = 1.0
    cache_eviction: str = "lcbfu"
    theta_min: float = 0.8
    reusable_fraction: float = 0.3
    n_hat_fraction: float = 0.4
    pai_a: float = 0.0413
    pai_b: float = 71.44
    eta: float = 10.0
    W_max: float = 1e6
    queue_limit: int = 256
    max_body_bytes: int = 16_384
    max_wait_s: float = 60.0
    record_limit: int = 2_000  # finished requests kept (with their latent) for retrieval by id
    drain_timeout_s: float = 120.0
    linger_s: float = 10.0  # after the drain: the listener waits this long for clients to collect results
    header_timeout_s: float = 10.0  # a connection sends its request headers within this, or is closed
    body_timeout_s: float = 30.0  # ... and its body within this of the headers
    keep_alive_s: float = 30.0  # an idle keep-alive connection is closed after this
    max_connections: int = 1000  # open connections; one more is answered 503 and closed
    edge_profile: tuple[float, float] | None = None
    journal: Path | None = None
    journal_fsync: bool = True  # acceptance records forced to disk before the 202 (docs/service.md)
    api_keys: tuple[tuple[str, str], ...] | None = None  # (SHA-256 of a key, tenant); see service.tenants
    cache_sharing: bool = False  # with api_keys: one latent cache for all tenants (a membership oracle)
    seed: int = 0

    @property
    def batch_limit(self) -> int:
        """The largest batch the edge plans for (and calibrates up to): ``max_batch`` if set, else
        ``b_max`` (windows that overlap may still exceed it then)."""
        return self.b_max if self.max_batch is None else self.max_batch

    def __post_init__(self):
        numbers = [f.name for f in fields(self) if f.type in ("float", "int")]
        for name in numbers:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ServiceConfigError(f"{name} must be a finite number, got {value!r}")
        for name in ("workers", "worker_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ServiceConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.workers > 1:
            if self.gpus not in (1, self.workers):
                raise ServiceConfigError(
                    f"gpus ({self.gpus}) and workers ({self.workers}) disagree: with workers, G is the worker count"
                )
            object.__setattr__(self, "gpus", self.workers)
        positive = ("window_s", "gpus", "queue_limit", "max_body_bytes", "eta", "max_connections")
        for name in (*positive, "header_timeout_s", "body_timeout_s", "keep_alive_s"):
            if getattr(self, name) <= 0:
                raise ServiceConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("b_max", "cache_gb", "max_wait_s", "drain_timeout_s", "linger_s", "record_limit", "seed"):
            if getattr(self, name) < 0:
                raise ServiceConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_batch is not None and (
            isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1
        ):
            raise ServiceConfigError(f"max_batch must be an integer >= 1, got {self.max_batch!r}")
        for name in ("theta_min", "reusable_fraction", "n_hat_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ServiceConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.W_max <= 0 or self.pai_a <= 0:
            raise ServiceConfigError("W_max and pai_a must be > 0")
        if self.cache_eviction not in USAGE_RULES:
            rules = ", ".join(USAGE_RULES[:-1]) + f" or {USAGE_RULES[-1]}"
            raise ServiceConfigError(f"cache_eviction must be {rules}, got {self.cache_eviction!r}")
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
    def tenants(self) -> tuple[str, ...]:
        """The tenants of ``api_keys`` (empty: no keys, one anonymous tenant)."""
        return tuple(sorted({tenant for _, tenant in self.api_keys or ()}))

    @property
    def cache_bytes(self) -> int:
        return int(self.cache_gb * 1e9)

    def n_hat(self, steps: int) -> int:
        return min(steps, round(self.n_hat_fraction * steps))

    def reusable_steps(self, steps: int) -> int:
        """``S*`` for a request of ``steps`` steps."""
        return max(1, min(steps, round(self.reusable_fraction * steps)))


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
