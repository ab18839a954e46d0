"""The digital twin of the edge service (``edgediff simulate``, docs/results-twin.md).

A discrete-event simulation of one or many edge sites that runs the service's own decision
code (:func:`edgediff.service.window.decide_window`, the policy registry, Part B's cache store
and eviction rules) with time and the model replaced: batched steps take ``L(b) = k b + h``
(a calibration or the published profiles), devices are the published device profiles.
"""

from edgediff.twin.config import (
    CITY_DAY,
    Site,
    TwinConfig,
    TwinError,
    WorkloadConfig,
    load_sites,
    make_site,
    uniform_sites,
)
from edgediff.twin.report import TwinResult
from edgediff.twin.sim import simulate
from edgediff.twin.workload import Arrivals, generate, load_trace, write_trace

__all__ = [
    "CITY_DAY",
    "Arrivals",
    "Site",
    "TwinConfig",
    "TwinError",
    "TwinResult",
    "WorkloadConfig",
    "generate",
    "load_sites",
    "load_trace",
    "make_site",
    "simulate",
    "uniform_sites",
    "write_trace",
]
