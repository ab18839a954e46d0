"""Part B parameters (docs/caching-model.md) as one frozen dataclass, validated when it is built."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from edgediff.errors import InputError

# the units the paper's bandwidth "[80, 100]" may be read in (docs/caching-model.md, "The link")
BANDWIDTH_UNITS: dict[str, float] = {"MHz": 1e6, "kHz": 1e3}


class CacheConfigError(InputError):
    """A Part B parameter is invalid; the message names it."""


@dataclass(frozen=True)
class CacheConfig:
    # load and catalog
    users: int = 10  # U
    slots: int = 10_000  # T
    p_req: float = 0.5  # request probability per user and slot
    classes: int = 200_000  # C (revision 2: large enough that 1-5 GB binds, docs/caching-model.md)
    topics: int = 8_000  # 25 classes per topic
    zipf_s: float = 0.9
    # diffusion
    steps: int = 20  # S
    reusable_steps: int = 6  # S*
    sigma_topic: float = 0.85
    theta_min: float = 0.8
    # compute (cycles, Hz)
    cycles_per_step: float = 1.5e9  # w
    f_es: float = 20e9
    f_min: float = 0.5e9
    f_max: float = 1.5e9
    # channel
    tx_power_w: float = 50.0
    noise_w: float = 1e-13
    # (r3) the paper's "[80, 100]" in its 5G setting carries no unit: read as MHz (5G NR carriers) by
    # default; bandwidth_unit_hz=1e3 is the kHz reading of revision 2, a sensitivity case
    bandwidth_min: float = 80.0
    bandwidth_max: float = 100.0
    bandwidth_unit_hz: float = 1e6
    g0: float = 1e-3
    pathloss_exp: float = 3.0
    distance_min_m: float = 50.0
    distance_max_m: float = 200.0
    # cache
    output_bytes: float = 500e3  # D
    capacity_bytes: float = 3e9  # D_e
    write_cost_s: float = 0.05  # c * D / f_e, eq. (13)
    # Lyapunov
    V: float = 1800.0
    L_bar: float = 28.0  # long-term latency target (s); see docs/caching-model.md
    # (r3) what a second of new edge work costs the jobs of later slots: it delays about
    # later_delay_factor x (the unfinished edge jobs) of them by that second (docs/caching-model.md,
    # "What the per-slot objective missed"); 0 is revision 2's objective
    later_delay_factor: float = 4.0
    # H, the future-value horizon of a cached entry, and M, the memory of the online request-rate
    # estimates (decayed counts). (r3, issue 29) M = 10,000 (was 2,000): demand is stationary and an
    # entry stays thousands of slots, so a short memory forgot an entry's hits and evicted it before
    # never-hit ones; H moves with M (H / M = 0.05 as before) so that one request still clears the
    # write cost (docs/caching-model.md, "What the value estimate missed")
    value_horizon_slots: float = 500.0
    rate_memory_slots: float = 10_000.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CacheConfigError(f"{f.name} must be a finite number, got {value!r}")
            if f.type == "int" and not isinstance(value, int):
                raise CacheConfigError(f"{f.name} must be an integer, got {value!r}")
        positive = [
            f.name
            for f in fields(self)
            if f.name not in ("V", "L_bar", "write_cost_s", "capacity_bytes", "later_delay_factor")
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise CacheConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("V", "L_bar", "write_cost_s", "capacity_bytes", "later_delay_factor"):
            if getattr(self, name) < 0:
                raise CacheConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if 0 < self.capacity_bytes < self.output_bytes:
            raise CacheConfigError(
                f"capacity_bytes must be 0 (no cache) or hold at least one output of {self.output_bytes:g} bytes "
                f"({self.output_bytes / 1e9:g} GB), got {self.capacity_bytes:g} bytes"
            )
        if self.p_req > 1:
            raise CacheConfigError(f"p_req must be <= 1, got {self.p_req}")
        if not 1 <= self.reusable_steps <= self.steps:
            raise CacheConfigError(f"reusable_steps must be in [1, steps={self.steps}], got {self.reusable_steps}")
        if self.topics > self.classes:
            raise CacheConfigError(f"topics must be <= classes ({self.classes}), got {self.topics}")
        for name in ("sigma_topic", "theta_min"):
            if getattr(self, name) > 1:
                raise CacheConfigError(f"{name} must be <= 1, got {getattr(self, name)}")
        for lo, hi in (
            ("f_min", "f_max"),
            ("bandwidth_min", "bandwidth_max"),
            ("distance_min_m", "distance_max_m"),
        ):
            if getattr(self, lo) > getattr(self, hi):
                raise CacheConfigError(f"{lo} must be <= {hi}")

    @property
    def bandwidth_min_hz(self) -> float:
        return self.bandwidth_min * self.bandwidth_unit_hz

    @property
    def bandwidth_max_hz(self) -> float:
        return self.bandwidth_max * self.bandwidth_unit_hz

    @property
    def capacity_entries(self) -> int:
        """How many intermediate outputs fit in the byte capacity."""
        return int(self.capacity_bytes // self.output_bytes)

    @property
    def request_rate(self) -> float:
        """Expected requests per slot, U * p_req."""
        return self.users * self.p_req

    def with_(self, **changes) -> CacheConfig:
        """A validated copy with some fields changed (unknown names are an error)."""
        names = {f.name for f in fields(self)}
        for key in changes:
            if key not in names:
                raise CacheConfigError(f"unknown parameter {key!r}")
        return replace(self, **changes)
