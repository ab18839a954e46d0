"""Tenants: optional API keys (``edgediff serve --api-keys FILE``; docs/service.md).

The keys file has one tenant per line, ``TENANT KEY`` (whitespace between; ``#`` starts a
comment): a tenant name of letters, digits, ``_ . -``, and a key of at least 16 characters
without spaces. A tenant may have several keys; a key belongs to one tenant. The service
keeps only the SHA-256 digests of the keys, so a lookup's timing tells nothing about them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from edgediff.errors import InputError

MIN_KEY_CHARS = 16
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ApiKeyError(InputError):
    """The keys file is unusable; the message names the file (and line) and says why."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_api_keys(path: str | Path) -> tuple[tuple[str, str], ...]:
    """``((key digest, tenant), ...)`` from the keys file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ApiKeyError(f"cannot read API keys {str(path)!r}: {getattr(err, 'strerror', None) or err}") from None
    keys: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 2:
            raise ApiKeyError(f"{where}: expected 'TENANT KEY', got {len(parts)} field(s)")
        tenant, key = parts
        if not _TENANT.fullmatch(tenant):
            raise ApiKeyError(f"{where}: tenant must be 1-64 of letters, digits, '_', '.', '-', got {tenant!r}")
        if len(key) < MIN_KEY_CHARS:
            raise ApiKeyError(f"{where}: key must have at least {MIN_KEY_CHARS} characters")
        hashed = digest(key)
        if keys.get(hashed, tenant) != tenant:
            raise ApiKeyError(f"{where}: this key already belongs to tenant {keys[hashed]!r}")
        keys[hashed] = tenant
    if not keys:
        raise ApiKeyError(f"{path}: no keys (one 'TENANT KEY' per line)")
    return tuple(keys.items())


def presented_key(headers) -> str | None:
    """The key a request presents: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key") or None
