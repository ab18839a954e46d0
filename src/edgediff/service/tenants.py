"""Tenants: optional API keys (``edgediff serve --api-keys FILE``; docs/service.md, "Tenants").

The keys file has one key a line, ``TENANT KEY [rps=R] [concurrent=N]`` (whitespace between;
``#`` starts a comment): a tenant name of letters, digits, ``_ . -``, a key of at least 16
characters without spaces, and the tenant's optional quotas: ``rps`` requests accepted per
second (a token bucket holding one second's worth, at least one request), ``concurrent``
requests accepted and not yet finished. A tenant may have several keys (quotas given on more
than one of its lines must agree); a key belongs to one tenant. ``@operator KEY`` is an
operator key: it submits nothing and sees every tenant (``/metrics``, the whole edge in
``/v1/info`` and ``/v1/status``). The service keeps only the SHA-256 digests of the keys, so
a lookup's timing tells nothing about them.

:class:`TenantLedger` keeps what each tenant may see of itself (its counts) and enforces the
quotas (:class:`OverQuota`, answered 429).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgediff.errors import InputError
from edgediff.service.schemas import TERMINAL

MIN_KEY_CHARS = 16
OPERATOR = "@operator"  # the keys file's name for an operator key, and the caller it makes (no tenant has it)
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
QUOTA_REASONS = ("over_rate", "over_concurrent")


class ApiKeyError(InputError):
    """The keys file is unusable; the message names the file (and line) and says why."""


class OverQuota(Exception):
    """A tenant's request over its quota (``reason``: one of :data:`QUOTA_REASONS`)."""

    def __init__(self, message: str, reason: str, retry_after: int):
        super().__init__(message)
        self.reason, self.retry_after = reason, retry_after


@dataclass(frozen=True)
class Quota:
    """A tenant's limits; ``None``: none."""

    rps: float | None = None
    concurrent: int | None = None


@dataclass(frozen=True)
class KeysFile:
    """A keys file: tenant keys (``(digest, tenant)``), operator key digests, quotas by tenant."""

    api_keys: tuple[tuple[str, str], ...]
    operator_keys: tuple[str, ...] = ()
    quotas: tuple[tuple[str, Quota], ...] = ()

    def options(self) -> dict:
        """The service parameters it sets (``ServiceConfig(**keys.options())``)."""
        return {"api_keys": self.api_keys, "operator_keys": self.operator_keys, "quotas": self.quotas}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _quota(where: str, options: list[str]) -> Quota:
    values: dict[str, float | int] = {}
    for option in options:
        name, _, text = option.partition("=")
        if name not in ("rps", "concurrent"):
            raise ApiKeyError(f"{where}: unknown option {option!r} (rps=R, concurrent=N)")
        try:
            if name == "rps":
                value: float | int = float(text)
                ok = math.isfinite(value) and value > 0
            else:
                value = int(text)
                ok = value >= 1
        except ValueError:
            ok = False
        if not ok:
            want = "a number > 0" if name == "rps" else "an integer >= 1"
            raise ApiKeyError(f"{where}: {name} must be {want}, got {text!r}")
        if name in values:
            raise ApiKeyError(f"{where}: {name} given twice")
        values[name] = value
    return Quota(**values)  # type: ignore[arg-type]


def load_keys_file(path: str | Path) -> KeysFile:
    """The keys file at ``path`` (module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ApiKeyError(f"cannot read API keys {str(path)!r}: {getattr(err, 'strerror', None) or err}") from None
    keys: dict[str, str] = {}
    quotas: dict[str, tuple[Quota, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{path}:{number}"
        options = parts[2:]
        if len(parts) < 2 or any("=" not in option for option in options):
            raise ApiKeyError(f"{where}: expected 'TENANT KEY' (then rps=R, concurrent=N), got {len(parts)} field(s)")
        tenant, key = parts[:2]
        if tenant != OPERATOR and not _TENANT.fullmatch(tenant):
            raise ApiKeyError(f"{where}: tenant must be 1-64 of letters, digits, '_', '.', '-', got {tenant!r}")
        if len(key) < MIN_KEY_CHARS:
            raise ApiKeyError(f"{where}: key must have at least {MIN_KEY_CHARS} characters")
        hashed = digest(key)
        if keys.get(hashed, tenant) != tenant:
            raise ApiKeyError(f"{where}: this key already belongs to tenant {keys[hashed]!r}")
        keys[hashed] = tenant
        if options:
            if tenant == OPERATOR:
                raise ApiKeyError(f"{where}: an operator key takes no quota")
            quota = _quota(where, options)
            earlier = quotas.setdefault(tenant, (quota, where))
            if earlier[0] != quota:
                raise ApiKeyError(f"{where}: quotas of tenant {tenant!r} differ from those at {earlier[1]}")
    tenant_keys = tuple((h, t) for h, t in keys.items() if t != OPERATOR)
    if not tenant_keys:
        what = "only operator keys" if keys else "no keys"
        raise ApiKeyError(f"{path}: {what} (one 'TENANT KEY' per line)")
    operators = tuple(h for h, t in keys.items() if t == OPERATOR)
    return KeysFile(tenant_keys, operators, tuple((t, q) for t, (q, _) in sorted(quotas.items())))


def load_api_keys(path: str | Path) -> tuple[tuple[str, str], ...]:
    """``((key digest, tenant), ...)`` from the keys file at ``path`` (its tenant keys)."""
    return load_keys_file(path).api_keys


def presented_key(headers) -> str | None:
    """The key a request presents: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key") or None


@dataclass
class TenantCounts:
    """What one tenant may see of itself: its requests and its share of the edge's work
    (``windows`` with its requests, batched ``steps`` with its members and their wall time
    ``busy_s``, its ``member_steps``), its refusals and its latent cache lookups."""

    accepted: int = 0
    terminal: dict = field(default_factory=lambda: {s: 0 for s in TERMINAL})
    open: int = 0  # accepted, not yet terminal (the ``concurrent`` quota's count)
    windows: int = 0
    steps: int = 0
    member_steps: int = 0
    busy_s: float = 0.0
    rejected: dict = field(default_factory=lambda: {r: 0 for r in ("queue_full", "shutting_down", *QUOTA_REASONS)})
    cache_hits: int = 0
    cache_misses: int = 0


class TenantLedger:
    """Each tenant's :class:`TenantCounts` and quota state. Not thread-safe: the engine
    holds its lock (the engine thread's own counts are written from that thread only)."""

    def __init__(self, tenants, quotas=()):
        self.counts = {t: TenantCounts() for t in tenants}
        self.quotas: dict[str, Quota] = dict(quotas)
        self._bucket: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)

    def of(self, tenant: str | None) -> TenantCounts | None:
        return None if tenant is None else self.counts.get(tenant)

    def check(self, tenant: str | None, now: float, retry_concurrent: int, count: int = 1) -> None:
        """Raise :class:`OverQuota` if ``count`` requests of ``tenant`` now (one request's
        images, taken together or not at all) are over its quota (``RequestError`` naming
        ``images`` if they would be at any time: more than ``concurrent``). The rate bucket must hold
        ``count`` tokens, or be full when ``count`` exceeds it (:meth:`accepted` then leaves
        it in debt, so the long-run rate stays ``rps``)."""
        quota, counts = self.quotas.get(tenant or ""), self.of(tenant)
        if quota is None or counts is None:
            return
        if quota.concurrent is not None and count > quota.concurrent:  # never fits: the request is wrong
            from edgediff.runtime.request import RequestError

            raise RequestError(
                f"images: {count} images exceed tenant {tenant!r}'s quota of concurrent={quota.concurrent}"
            )
        if quota.concurrent is not None and counts.open + count > quota.concurrent:
            asked = "" if count == 1 else f" and asks for {count} more"
            raise OverQuota(
                f"tenant {tenant!r} has {counts.open} requests open{asked}, its quota is "
                f"concurrent={quota.concurrent}; retry after {retry_concurrent} s",
                "over_concurrent",
                retry_concurrent,
            )
        if quota.rps is not None:
            tokens, need = self._tokens(tenant, quota.rps, now), min(count, max(1.0, quota.rps))
            if tokens < need:
                wait = max(1, math.ceil((need - tokens) / quota.rps))
                asked = "" if count == 1 else f" for {count} images"
                raise OverQuota(
                    f"tenant {tenant!r} is over its quota of rps={quota.rps:g}{asked}; retry after {wait} s",
                    "over_rate",
                    wait,
                )

    def _tokens(self, tenant, rps: float, now: float) -> float:
        burst = max(1.0, rps)
        tokens, at = self._bucket.get(tenant, (burst, now))
        return min(burst, tokens + (now - at) * rps)

    def accepted(self, tenant: str | None, now: float, count: int = 1) -> None:
        counts = self.of(tenant)
        if counts is None:
            return
        counts.accepted += count
        counts.open += count
        quota = self.quotas.get(tenant or "")
        if quota is not None and quota.rps is not None:
            self._bucket[tenant] = (self._tokens(tenant, quota.rps, now) - count, now)  # type: ignore[index]

    def rejected(self, tenant: str | None, reason: str, count: int = 1) -> None:
        counts = self.of(tenant)
        if counts is not None:
            counts.rejected[reason] = counts.rejected.get(reason, 0) + count

    def finished(self, tenant: str | None, status: str) -> None:
        counts = self.of(tenant)
        if counts is not None:
            counts.terminal[status] += 1
            counts.open -= 1

    def view(self, tenant: str) -> dict:
        """The tenant's counts as ``/v1/info`` shows them (its quota included)."""
        counts = asdict(self.counts[tenant])
        counts["quota"] = asdict(self.quotas.get(tenant, Quota()))
        return counts
