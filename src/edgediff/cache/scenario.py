"""Cache scenario files (docs/formats.md, "Cache scenario file"): the Part B parameters of
:class:`~edgediff.cache.config.CacheConfig` grouped in sections, JSON or TOML.

Every key is a ``CacheConfig`` field in the section :data:`SECTIONS` puts it in, in that
field's units; a key left out keeps its default. A bad file is one :class:`CacheScenarioError`
naming the field as a dotted path (``link.bandwidth_min``), with the closest valid name for a
misspelt one, as instance and scenario files do.
"""

from __future__ import annotations

import json
import tomllib
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from edgediff.cache.config import CacheConfig, CacheConfigError
from edgediff.errors import InputError

SECTIONS: dict[str, tuple[str, ...]] = {
    "load": ("users", "p_req", "slots"),
    "catalog": ("classes", "topics", "zipf_s", "sigma_topic", "theta_min"),
    "diffusion": ("steps", "reusable_steps", "cycles_per_step"),
    "device": ("f_min", "f_max"),
    "edge": ("f_es", "capacity_bytes", "output_bytes", "write_cost_s"),
    "link": (
        "bandwidth_min",
        "bandwidth_max",
        "bandwidth_unit_hz",
        "distance_min_m",
        "distance_max_m",
        "tx_power_w",
        "noise_w",
        "g0",
        "pathloss_exp",
    ),
    "control": ("V", "L_bar", "later_delay_factor", "value_horizon_slots", "rate_memory_slots"),
}
TOP_LEVEL = ("name", "description")
SECTION_OF = {key: section for section, keys in SECTIONS.items() for key in keys}


class CacheScenarioError(InputError):
    """A cache scenario file is invalid; the message names the field as a dotted path."""


def _unknown(path: str, key: str, choices) -> CacheScenarioError:
    close = get_close_matches(key, list(choices), n=1)
    if not close and key in SECTION_OF:  # a right key in the wrong place
        return CacheScenarioError(f"{path}{key}: unknown field; it belongs in [{SECTION_OF[key]}]")
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return CacheScenarioError(f"{path}{key}: unknown field{hint}")


def cache_config_from_dict(data: Any, base: CacheConfig | None = None) -> CacheConfig:
    """A validated :class:`CacheConfig` from a scenario dictionary (``base``'s values, default
    ``CacheConfig()``'s, where the file says nothing)."""
    if not isinstance(data, dict):
        raise CacheScenarioError(f"expected an object of sections ({', '.join(SECTIONS)}), got {type(data).__name__}")
    values: dict[str, Any] = {}
    for section, body in data.items():
        if section in TOP_LEVEL:
            if not isinstance(body, str):
                raise CacheScenarioError(f"{section}: expected text, got {body!r}")
            continue
        if section not in SECTIONS:
            raise _unknown("", section, [*SECTIONS, *TOP_LEVEL])
        if not isinstance(body, dict):
            raise CacheScenarioError(f"{section}: expected a table of {', '.join(SECTIONS[section])}, got {body!r}")
        for key, value in body.items():
            if key not in SECTIONS[section]:
                raise _unknown(f"{section}.", key, SECTIONS[section])
            values[key] = value
    config = base or CacheConfig()
    try:
        return config.with_(**values)
    except CacheConfigError as err:  # its message starts with the flat field: give its dotted path
        message = str(err)
        field = message.split(" ", 1)[0]
        raise CacheScenarioError(f"{SECTION_OF[field]}.{message}" if field in SECTION_OF else message) from None


def load_cache_scenario(path: str | Path, base: CacheConfig | None = None) -> CacheConfig:
    """Read and validate a cache scenario file: JSON, or TOML when the name ends in ``.toml``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise CacheScenarioError(f"cannot read cache scenario file {str(path)!r}: {err.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CacheScenarioError(f"{path.name}: not valid TOML: {err}") from None
    except json.JSONDecodeError as err:
        raise CacheScenarioError(
            f"{path.name}: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from None
    return cache_config_from_dict(data, base)
