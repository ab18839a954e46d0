"""The twin's parameters: sites (each a :class:`ServiceConfig` with its calibrated edge), the
workload, and the run. Frozen dataclasses, validated when built; bad input raises
:class:`TwinError` naming the parameter.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgediff.core.instance import INTERMEDIATE_BITS
from edgediff.core.pai import PAPER_STEPS
from edgediff.core.profiles import PRESETS, USER_ROWS
from edgediff.core.scenario import USER_ROW_WEIGHTS, AlphaDistribution, Scenario
from edgediff.errors import InputError
from edgediff.service.config import ServiceConfig, ServiceConfigError, SiteConfig


class TwinError(InputError):
    """A twin parameter, site or workload file is invalid; the message names it."""


def parse_profile(spec) -> tuple[float, float]:
    """``(k, h)`` seconds per step from a preset name (``edge-h100``, ``row0``..``row10``), a
    ``"k,h"`` string, a ``{"k": .., "h": ..}`` mapping, or the path of a ``calibrate`` JSON."""
    if isinstance(spec, dict):
        try:
            return float(spec["k"]), float(spec["h"])
        except (KeyError, TypeError, ValueError):
            raise TwinError(f"profile {spec!r}: needs numbers k and h") from None
    spec = str(spec).strip()
    if spec in PRESETS:
        return PRESETS[spec].k, PRESETS[spec].h
    if "," in spec:
        try:
            k, h = (float(x) for x in spec.split(","))
        except ValueError:
            raise TwinError(f"profile {spec!r}: expected 'k,h' (seconds per step)") from None
        return k, h
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        try:
            return parse_profile(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise TwinError(f"profile {spec}: not JSON ({err})") from None
    raise TwinError(f"profile {spec!r}: not a preset ({', '.join(PRESETS)}), 'k,h', or a calibration JSON file")


@dataclass(frozen=True)
class Site:
    """One edge site: ``service`` is what ``edgediff serve`` would run there (window, policy,
    ``G``, ``B_max``, cache, link) and must carry the site's calibrated ``edge_profile``;
    ``intermediate_bits`` is the size of its model's latent payload; ``phase_s`` when its
    window clock started (windows end at ``phase_s + j K``). ``step_profile`` is what a
    batched step really takes, when it differs from the calibration the site decides with
    (default: the same). ``decide_when_idle``: a request that finds the edge idle and no
    decision pending is decided at once instead of at its window's end (the adaptive window
    rule of docs/results-twin.md; windows keep their length while the edge is busy)."""

    service: SiteConfig
    name: str = "site0"
    intermediate_bits: int = INTERMEDIATE_BITS
    phase_s: float = 0.0
    step_profile: tuple[float, float] | None = None
    decide_when_idle: bool = False

    def __post_init__(self):
        if self.service.edge_profile is None:
            raise TwinError(f"site {self.name}: needs an edge profile (a calibration, a preset or k,h)")
        if self.intermediate_bits <= 0 or not math.isfinite(self.phase_s):
            raise TwinError(f"site {self.name}: intermediate_bits must be > 0 and phase_s finite")
        if self.step_profile is not None:
            k, h = self.step_profile
            if not (math.isfinite(k) and math.isfinite(h)) or k < 0 or k / self.service.gpus + h <= 0:
                raise TwinError(f"site {self.name}: step_profile must have k >= 0 and k/G + h > 0")

    @property
    def executed_profile(self) -> tuple[float, float]:
        """``(k, h)`` of the site's batched steps as they run."""
        return self.service.edge_profile if self.step_profile is None else self.step_profile


def make_site(
    name: str = "site0",
    profile="edge-h100",
    *,
    intermediate_bits: int = INTERMEDIATE_BITS,
    phase_s=0.0,
    decide_when_idle: bool = False,
    **service,
) -> Site:
    """A site from a profile spec (see :func:`parse_profile`) and :class:`ServiceConfig` fields."""
    site_keys = ("name", "profile", "count", "intermediate_bits", "phase_s", "decide_when_idle")
    for key in service:  # a misspelt site key is named with the site's own keys in view
        if key not in ServiceConfig.names():
            close = difflib.get_close_matches(key, [*site_keys, *ServiceConfig.names()], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TwinError(f"site {name}: unknown key {key!r}{hint}")
    try:
        config = ServiceConfig(edge_profile=parse_profile(profile), **service).site
    except ServiceConfigError as err:
        raise TwinError(f"site {name}: {err}") from None
    return Site(config, name, intermediate_bits, phase_s, decide_when_idle=bool(decide_when_idle))


def load_sites(path: str | Path) -> list[Site]:
    """Sites from a JSON file: a list of objects with ``name``, ``profile`` (as
    :func:`parse_profile`), ``count`` (copies, named ``name-0`` ...; default 1) and any
    :class:`ServiceConfig` field (``window_s``, ``policy``, ``gpus``, ``b_max``, ``cache_gb``, ...)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TwinError(f"sites file {path}: {err}") from None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise TwinError(f"sites file {path}: expected a non-empty JSON list of objects")
    sites = []
    for i, spec in enumerate(data):
        spec = dict(spec)
        name = str(spec.pop("name", f"site{i}"))
        count = spec.pop("count", 1)
        if not isinstance(count, int) or count < 1:
            raise TwinError(f"sites file {path}: site {name}: count must be a positive integer")
        for j in range(count):
            sites.append(make_site(name if count == 1 else f"{name}-{j}", **spec))
    if len({s.name for s in sites}) != len(sites):
        raise TwinError(f"sites file {path}: site names must be unique")
    return sites


def uniform_sites(count: int, **site) -> list[Site]:
    """``count`` identical sites ``site0`` .. (each :func:`make_site` with ``site``)."""
    if count < 1:
        raise TwinError(f"sites must be >= 1, got {count}")
    first = make_site("site0", **site)
    return [first] + [replace(first, name=f"site{i}") for i in range(1, count)]


# the paper's device mix: rows 3..10 with weights rising linearly 1..2 (docs/offloading-model.md)
PAPER_DEVICE_MIX = {f"row{r}": float(w) for r, w in zip(USER_ROWS, USER_ROW_WEIGHTS)}


@dataclass(frozen=True)
class WorkloadConfig:
    """Generated arrivals: Poisson at ``rate`` requests per second (all sites together) for
    ``duration_s``; with ``diurnal`` (24 hourly multipliers of ``rate``, hour 0 at time 0) a
    non-homogeneous Poisson process. ``users`` users, each with a device drawn from
    ``device_mix`` (preset name -> weight; default the paper's rows 3..10) and an α drawn as the
    paper's generator does for that device (or uniform in ``alpha`` = ``(lo, hi)``); each request
    asks ``steps`` steps for a content class drawn from a Zipf(``zipf_s``) catalog of
    ``classes`` classes in ``topics`` topics (the Part B catalog of docs/caching-model.md)."""

    rate: float = 10.0
    duration_s: float = 600.0
    diurnal: tuple[float, ...] | None = None
    users: int = 1000
    device_mix: dict = field(default_factory=lambda: dict(PAPER_DEVICE_MIX))
    alpha: AlphaDistribution | tuple[float, float] | None = None
    steps: int = 50
    classes: int = 20_000
    topics: int = 500
    zipf_s: float = 0.9

    def __post_init__(self):
        for name in ("rate", "duration_s", "zipf_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise TwinError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("users", "steps", "classes", "topics"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TwinError(f"{name} must be an integer >= 1, got {value!r}")
        if self.topics > self.classes:
            raise TwinError(f"topics must be <= classes ({self.classes}), got {self.topics}")
        if self.diurnal is not None:
            curve = tuple(float(x) for x in self.diurnal)
            if len(curve) != 24 or min(curve) < 0 or not all(map(math.isfinite, curve)) or max(curve) == 0:
                raise TwinError("diurnal must be 24 finite hourly multipliers >= 0, not all 0")
            object.__setattr__(self, "diurnal", curve)
        if not self.device_mix:
            raise TwinError("device_mix must name at least one device")
        for name, weight in self.device_mix.items():
            parse_profile(name)
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                raise TwinError(f"device_mix weight of {name} must be >= 0, got {weight!r}")
        if sum(self.device_mix.values()) <= 0:
            raise TwinError("device_mix weights must not all be 0")
        if self.alpha is None:
            object.__setattr__(self, "alpha", AlphaDistribution("paper"))
        elif not isinstance(self.alpha, AlphaDistribution):
            lo, hi = self.alpha
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise TwinError(f"alpha must be (lo, hi) with 0 < lo <= hi, got {self.alpha}")
            object.__setattr__(self, "alpha", AlphaDistribution("uniform", low=float(lo), high=float(hi)))


def scenario_site(scenario: Scenario) -> dict:
    """:func:`make_site` keyword arguments for a scenario's edge: its profile, ``G``, ``B_max``,
    window ``K``, link, ``N_hat`` and PAI curve (docs/results-twin.md, "Scenario files")."""
    N = scenario.N
    pai = scenario.pai.for_steps(PAPER_STEPS, over=N)  # the service keeps PAI in 200-step units
    return dict(
        profile={"k": scenario.edge.k, "h": scenario.edge.h},
        intermediate_bits=max(1, round(scenario.intermediate_bits)),
        gpus=scenario.G,
        b_max=scenario.B_max,
        window_s=scenario.K,
        n_hat_fraction=scenario.N_hat / N,
        pai_a=pai.a,
        pai_b=pai.b,
        eta=scenario.eta,
        W_max=scenario.W_max,
    )


def scenario_workload(scenario: Scenario) -> dict:
    """:class:`WorkloadConfig` keyword arguments for a scenario's users: the device mix (as
    ``"k,h"`` keys), the α distribution and ``N``. The scenario's per-window user counts do not
    apply: in the twin, a window holds whoever arrived in it."""
    mix: dict[str, float] = {}
    for device, weight in zip(scenario.devices, scenario.weights):
        key = f"{float(device.k)!r},{float(device.h)!r}"
        mix[key] = mix.get(key, 0.0) + float(weight)
    return dict(device_mix=mix, alpha=scenario.alpha, steps=scenario.N)


# a diurnal curve shaped like a city's day: a night trough at 4:00, peaks at 12:00 and 19:00
CITY_DAY = (
    0.35, 0.25, 0.2, 0.15, 0.15, 0.2, 0.35, 0.6, 0.85, 0.95, 1.0, 1.0,
    1.0, 0.95, 0.9, 0.9, 0.9, 0.95, 1.0, 1.0, 0.9, 0.75, 0.6, 0.45,
)  # fmt: skip
"""Hourly multipliers for ``WorkloadConfig.diurnal`` (``--diurnal city``)."""


def diurnal_curve(spec: str) -> tuple[float, ...]:
    """``"city"`` (:data:`CITY_DAY`) or the path of a file of 24 hourly rate multipliers
    (separated by spaces, commas or newlines); validated by :class:`WorkloadConfig`."""
    if spec == "city":
        return CITY_DAY
    try:
        return tuple(float(v) for v in Path(spec).read_text().replace(",", " ").split())
    except OSError as err:
        raise TwinError(f"--diurnal {spec}: {err.strerror}") from None
    except ValueError:
        raise TwinError(f"--diurnal {spec}: expected 24 numbers") from None


@dataclass(frozen=True)
class TwinConfig:
    """One run: ``sites`` (routing among them: docs/results-twin.md), ``seed`` for every
    random draw, and ``bin_s`` the width of the time bins of the per-hour outputs."""

    sites: tuple[Site, ...]
    seed: int = 0
    bin_s: float = 3600.0

    def __post_init__(self):
        object.__setattr__(self, "sites", tuple(self.sites))
        if not self.sites:
            raise TwinError("at least one site is needed")
        if not (math.isfinite(self.bin_s) and self.bin_s > 0):
            raise TwinError(f"bin_s must be > 0, got {self.bin_s}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise TwinError(f"seed must be an integer >= 0, got {self.seed!r}")
