"""Hindsight bounds: no policy's request beats them on any trace; alone on an idle edge, the
per-window optimum reaches the windowed one exactly."""

import dataclasses

import numpy as np
import pytest

from edgediff.twin import TwinConfig, WorkloadConfig, generate, make_site, simulate
from edgediff.twin.bound import hindsight_bounds


@pytest.mark.parametrize("policy", ["exact", "timeline", "b1", "b3"])
@pytest.mark.parametrize("cache_gb", [0.0, 0.05])
def test_no_request_beats_its_bounds(policy, cache_gb):
    site = make_site(profile="0.02,0.005", gpus=2, b_max=4, window_s=0.5, policy=policy, cache_gb=cache_gb)
    for seed in range(3):
        trace = generate(WorkloadConfig(rate=6.0, duration_s=30, users=40, steps=20, classes=30, topics=5), site, seed)
        result = simulate(TwinConfig([site], seed=seed), trace)
        free, windowed = hindsight_bounds(site, trace)
        assert np.all(windowed <= free)
        done = np.isfinite(result.utility)
        assert done.sum() > 100
        assert np.all(result.utility[done] <= windowed[done] + 1e-9)


@pytest.mark.parametrize("alpha", [0.5, 20.0, 400.0])
def test_alone_on_an_idle_edge_exact_reaches_the_windowed_bound(alpha):
    site = make_site(profile="0.02,0.005", gpus=2, b_max=4, window_s=0.5, cache_gb=0.0)
    base = generate(WorkloadConfig(rate=1.0, duration_s=10, users=5, steps=20), site, 1)
    n = 4
    # far apart: each request is alone in its window and the edge is idle when it is decided
    trace = dataclasses.replace(
        base, time=np.array([1.1, 11.3, 21.45, 31.2]), user=base.user[:n], cls=base.cls[:n],
        alpha=np.full(n, alpha), k=base.k[:n], h=base.h[:n], steps=base.steps[:n],
    )  # fmt: skip
    result = simulate(TwinConfig([site], seed=1), trace)
    _, windowed = hindsight_bounds(site, trace)
    assert result.utility == pytest.approx(windowed, rel=1e-9, abs=1e-9)
