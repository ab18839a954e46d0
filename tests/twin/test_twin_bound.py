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


def test_decide_when_idle_answers_at_arrival_and_stays_under_the_free_bound():
    """The adaptive rule: a request that finds the edge idle is decided at once; it may beat the
    windowed bound (it does not wait for the window's end) but never the free one."""
    common = dict(profile="0.02,0.005", gpus=2, b_max=4, window_s=1.0, cache_gb=0.0)
    fixed, idle = make_site(**common), make_site(**common, decide_when_idle=True)
    trace = generate(WorkloadConfig(rate=2.0, duration_s=60, users=40, steps=20), fixed, 0)
    windowed_run = simulate(TwinConfig([fixed], seed=0), trace)
    idle_run = simulate(TwinConfig([idle], seed=0), trace)
    assert idle_run.records.decided_at[0] == trace.time[0]  # the first request finds the edge idle
    assert windowed_run.records.decided_at[0] > trace.time[0]
    free, windowed = hindsight_bounds(idle, trace)
    assert np.all(idle_run.utility <= free + 1e-9)
    assert idle_run.utility.mean() > windowed_run.utility.mean()  # less waiting at this load
    assert np.any(idle_run.utility > windowed + 1e-9)  # so the windowed bound is not a bound for it
