"""Sweeps of twin runs over sites, rates, window lengths and policies, serially, on local
processes or on a Ray cluster (:func:`edgediff.parallel.run_tasks`). Each case's seed
comes from the base seed and the case's *workload* (sites, rate, duration, steps), never from
its position or the worker that runs it: results do not depend on the worker count, and cases that differ
only in the edge's choices (policy, window, ``B_max``) see the same arrivals."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from edgediff.twin.bound import mean_bounds
from edgediff.twin.config import TwinConfig, WorkloadConfig, uniform_sites
from edgediff.twin.sim import simulate
from edgediff.twin.workload import generate


@dataclass(frozen=True)
class SweepCase:
    """One run: ``sites`` identical sites (``profile``, ``gpus``, ``b_max``, ``window_s``,
    ``policy``, ``cache_gb``, ``decide_when_idle``) under Poisson arrivals at ``rate`` (all
    sites) for ``duration_s``."""

    sites: int = 1
    rate: float = 10.0
    duration_s: float = 600.0
    steps: int = 50
    window_s: float = 1.0
    policy: str = "exact"
    profile: str = "edge-h100"
    gpus: int = 8
    b_max: int = 20
    cache_gb: float = 0.0
    decide_when_idle: bool = False

    def workload_key(self) -> tuple:
        return (self.sites, self.rate, self.duration_s, self.steps)

    def site_list(self) -> list:
        """The case's sites (raises :class:`TwinError` naming a bad parameter)."""
        return uniform_sites(
            self.sites,
            profile=self.profile,
            gpus=self.gpus,
            b_max=self.b_max,
            window_s=self.window_s,
            policy=self.policy,
            cache_gb=self.cache_gb,
            decide_when_idle=self.decide_when_idle,
        )


def case_seeds(cases: list[SweepCase], seed: int) -> list[int]:
    """One seed per case, from ``seed`` and the case's workload alone (not its position)."""

    def entropy(case: SweepCase) -> list[int]:
        sites, rate, duration, steps = case.workload_key()
        return [seed, sites, round(rate * 1e6), round(duration * 1e3), steps]

    return [int(np.random.SeedSequence(entropy(c)).generate_state(1)[0] % 2**31) for c in cases]


def run_case(case: SweepCase, seed: int) -> dict:
    """Simulate one case; its summary over all sites (the ``all`` row) with the case's fields and
    the trace's hindsight bounds (:mod:`edgediff.twin.bound`)."""
    sites = case.site_list()
    arrivals = generate(WorkloadConfig(rate=case.rate, duration_s=case.duration_s, steps=case.steps), sites[0], seed)
    start = time.perf_counter()
    result = simulate(TwinConfig(tuple(sites), seed=seed), arrivals)
    elapsed = time.perf_counter() - start
    summary = result.site_rows()[-1]
    summary.pop("site")
    bounds = mean_bounds(sites[0], arrivals)  # identical sites: one site's bounds hold for any routing
    return {**asdict(case), "seed": seed, **summary, **bounds, "simulate_s": elapsed}


def run_sweep(
    cases: list[SweepCase], *, seed: int = 0, workers: int | None = 1, ray_address: str | None = None, progress=None
) -> list[dict]:
    """Every case's :func:`run_case` row, in case order."""
    from edgediff.parallel import run_tasks

    tasks = [(run_case, (case, s)) for case, s in zip(cases, case_seeds(cases, seed))]
    return run_tasks(tasks, workers=workers, ray_address=ray_address, progress=progress)
