"""The digital twin: its executor is the timeline model, its windows are the engine's, its
decisions are the service's, and its runs are seeded."""

import dataclasses
import math

import numpy as np
import pytest

from edgediff.core.model import edge_latency_timeline
from edgediff.offload.policies import make_policy
from edgediff.service.window import decide_window
from edgediff.twin import (
    TwinConfig,
    TwinError,
    WorkloadConfig,
    generate,
    load_sites,
    load_trace,
    make_site,
    simulate,
    uniform_sites,
    write_trace,
)
from edgediff.twin.records import GRANTED
from edgediff.twin.report import binned_integral
from edgediff.twin.sim import SimExecutor, SimJob
from edgediff.twin.workload import Arrivals, zipf_catalog


def arrivals(times, k=0.3, h=0.01, alpha=20.0, steps=20, cls=None) -> Arrivals:
    n = len(times)
    cfg = WorkloadConfig(classes=4, topics=4)
    return Arrivals(
        time=np.asarray(times, float),
        user=np.arange(n),
        cls=np.zeros(n, np.int64) if cls is None else np.asarray(cls),
        alpha=np.full(n, alpha),
        k=np.full(n, k),
        h=np.full(n, h),
        steps=np.full(n, steps),
        prompts=None,
        users=tuple(f"u{i}" for i in range(n)),
        catalog=zipf_catalog(cfg, np.random.default_rng(0)),
    )


def test_the_executor_is_the_timeline_model():
    offloaded = np.array([3, 7, 7, 12, 1])
    ex = SimExecutor(0.02, 0.005, gpus=2)
    for i, m in enumerate(offloaded):
        ex.add(i, int(m))
    ex.run_until(math.inf)
    left = dict(zip(ex.left_index, ex.left_time))
    expected = edge_latency_timeline(offloaded, 2, 0.02, 0.005)
    assert [left[i] for i in range(5)] == pytest.approx(expected)
    assert ex.steps == 12 and ex.member_steps == offloaded.sum()


def test_run_until_stops_at_the_first_step_end_at_or_after_the_target():
    ex = SimExecutor(0.1, 0.0, gpus=1)
    ex.add(0, 10)  # steps of 0.1 s
    assert ex.run_until(0.25) == pytest.approx(0.3)  # the step running at 0.25 ends at 0.3
    assert ex.run_until(0.3) == pytest.approx(0.3)
    assert ex.run_until(5.0) == 5.0 and ex.last_start is None  # left at 1.0, then idle: time passes
    assert len(ex) == 0 and list(ex.left_time) == pytest.approx([1.0])


def test_an_isolated_window_gets_exactly_the_latency_the_service_predicts():
    site = make_site(profile="0.02,0.004", window_s=1.0, gpus=1, b_max=4, cache_gb=0)
    arr = arrivals([0.1, 0.35, 0.6, 0.8, 0.95], k=0.3)
    result = simulate(TwinConfig([site]), arr)
    rec = result.records
    assert (rec.decided_at == 1.0).all()  # the window's end; the edge was idle
    assert 0 < (rec.outcome == GRANTED).sum() <= 4
    assert result.latency == pytest.approx(rec.predicted_latency, rel=1e-9)
    # the decision is decide_window's on the same requests
    jobs = [SimJob(i, 20, 0.3, 0.01, 20.0, " " * 27, float(t), 0) for i, t in enumerate(arr.time)]
    (group,) = decide_window(
        jobs,
        site.service,
        make_policy("exact"),
        start=0.0,
        edge_profile=(0.02, 0.004),
        intermediate_bits=site.intermediate_bits,
    )
    assert rec.split.tolist() == group.decision.split.tolist()


def test_a_step_across_the_window_end_delays_the_decision_to_its_end():
    # one 0.7 s step per member: the first request's step runs across the 2 s window end
    site = make_site(profile="0.7,0.0", window_s=1.0, b_max=1, cache_gb=0)
    arr = arrivals([0.5, 1.5, 2.05], k=5.0, alpha=1e-3, steps=5)
    rec = simulate(TwinConfig([site]), arr).records
    assert rec.decided_at[0] == pytest.approx(1.0)
    # granted at 1.0: steps end at 1.7, 2.4: the 1.5 and 2.05 arrivals are decided together at 2.4
    assert rec.outcome[0] == GRANTED
    assert rec.decided_at[1] == pytest.approx(2.4) and rec.decided_at[2] == pytest.approx(2.4)


def test_max_batch_caps_the_running_batch_across_windows():
    # steps of 0.1 s per member over a 0.25 s window: each window's members outlast it
    arr = arrivals(np.linspace(0.01, 6.0, 60), k=5.0, alpha=50.0, steps=10)
    batches = {}
    for cap in (None, 3):
        site = make_site(profile="0.1,0.0", window_s=0.25, gpus=1, b_max=2, max_batch=cap, cache_gb=0)
        result = simulate(TwinConfig([site]), arr)
        batches[cap] = result.sites[0].busy_b
    assert batches[None].max() > 3  # windows overlap: without a cap the batch grows past B_max
    assert batches[3].max() == 3


def test_runs_are_seeded():
    sites = uniform_sites(3, profile="edge-h100", gpus=8, window_s=0.5, cache_gb=0.5)
    wl = WorkloadConfig(rate=30, duration_s=20, steps=30, users=50)
    a, b = (simulate(TwinConfig(sites, seed=4), generate(wl, sites[0], seed=4)) for _ in range(2))
    assert np.array_equal(a.latency, b.latency) and np.array_equal(a.records.site, b.records.site)
    c = simulate(TwinConfig(sites, seed=5), generate(wl, sites[0], seed=5))
    assert len(c.arrivals) != len(a.arrivals) or not np.array_equal(c.latency, a.latency)
    assert set(np.unique(a.records.site)) == {0, 1, 2}  # the router spreads the load


def test_the_router_prefers_the_faster_site():
    fast = make_site("fast", profile="edge-h100", gpus=8, window_s=0.5, cache_gb=0)
    slow = make_site("slow", profile="row10", gpus=1, window_s=0.5, cache_gb=0)
    wl = WorkloadConfig(rate=20, duration_s=20, steps=30, users=50)
    result = simulate(TwinConfig([slow, fast]), generate(wl, fast, seed=1))
    share = np.bincount(result.records.site, minlength=2) / len(result.arrivals)
    assert share[1] > 0.8
    rows = result.site_rows()
    assert [r["site"] for r in rows] == ["slow", "fast", "all"]
    assert rows[-1]["requests"] == len(result.arrivals) == rows[0]["requests"] + rows[1]["requests"]


def test_the_cache_serves_repeated_classes_and_is_off_at_zero_bytes():
    times = np.arange(40) * 0.25 + 0.05
    arr = arrivals(times, k=0.3, alpha=1e-3, steps=20, cls=np.arange(40) % 2)
    on = simulate(TwinConfig([make_site(profile="0.02,0.004", window_s=1.0, cache_gb=0.01)]), arr)
    off = simulate(TwinConfig([make_site(profile="0.02,0.004", window_s=1.0, cache_gb=0)]), arr)
    assert on.site_rows()[0]["cache_hit_rate"] > 0.5
    assert (off.records.hit == 0).all() and math.isnan(off.site_rows()[0]["cache_hit_rate"])
    granted = on.records.outcome == GRANTED
    assert (on.records.hit[granted] <= 20 - on.records.split[granted]).all()  # never past the split


def test_a_full_queue_rejects_and_the_device_runs_everything():
    site = make_site(profile="0.02,0.004", window_s=1.0, queue_limit=2, cache_gb=0)
    result = simulate(TwinConfig([site]), arrivals([0.1, 0.2, 0.3, 0.4]))
    assert result.site_rows()[0]["rejected"] == 2
    assert (result.records.split[2:] == 20).all()


def test_trace_round_trip_and_bad_traces(tmp_path):
    site = make_site(profile="edge-h100", gpus=8)
    arr = generate(WorkloadConfig(rate=5, duration_s=10, users=7), site, seed=2)
    back = load_trace(write_trace(tmp_path / "t.csv", arr), steps=50)
    for name in ("time", "alpha", "k", "h"):
        assert getattr(back, name).tolist() == getattr(arr, name).tolist()
    assert [back.users[u] for u in back.user] == [arr.users[u] for u in arr.user]
    bad = tmp_path / "bad.csv"
    for text, message in [
        ("t,user\n", "first line"),
        ("time,user,prompt_or_class,alpha,device\n1,u,cat,-1,row5\n", "line 2: alpha"),
        ("time,user,prompt_or_class,alpha,device\n1,u,cat,1,row99\n", "line 2: device"),
        ("time,user,prompt_or_class,alpha,device\nx,u,cat,1,row5\n", "line 2: time"),
        ("time,user,prompt_or_class,alpha,device\n", "no requests"),
    ]:
        bad.write_text(text)
        with pytest.raises(TwinError, match=message):
            load_trace(bad)
    with pytest.raises(TwinError, match="line 2"):
        bad.write_text("time,user,prompt_or_class,alpha,device\n1,u,cat,1\n")
        load_trace(bad)


def test_bad_parameters_name_the_problem(tmp_path):
    with pytest.raises(TwinError, match="window_s"):
        make_site(profile="edge-h100", window_s=0)
    with pytest.raises(TwinError, match="profile 'fast'"):
        make_site(profile="fast")
    with pytest.raises(TwinError, match="diurnal"):
        WorkloadConfig(diurnal=(1.0,) * 23)
    with pytest.raises(TwinError, match="rate"):
        WorkloadConfig(rate=-1)
    path = tmp_path / "sites.json"
    path.write_text(
        '[{"name": "a", "profile": "edge-h100", "count": 2, "gpus": 4}, {"name": "b", "profile": "0.1,0.01"}]'
    )
    sites = load_sites(path)
    assert [s.name for s in sites] == ["a-0", "a-1", "b"] and sites[0].service.gpus == 4
    path.write_text('[{"profile": "edge-h100", "window": 1}]')
    with pytest.raises(TwinError, match="window"):
        load_sites(path)


def test_diurnal_arrivals_follow_the_curve():
    curve = (0.0,) * 12 + (1.0,) * 12
    wl = WorkloadConfig(rate=0.05, duration_s=86400, diurnal=curve, users=10)
    arr = generate(wl, make_site(), seed=0)
    assert (arr.time >= 12 * 3600).all() and abs(len(arr) - 0.05 * 43200) < 5 * math.sqrt(0.05 * 43200)


def test_binned_integral_is_the_overlap():
    rng = np.random.default_rng(0)
    t0 = rng.uniform(0, 10, 50)
    t1 = t0 + rng.uniform(0, 3, 50)
    w = rng.uniform(0, 4, 50)
    edges = np.array([0.0, 2.5, 5.0, 7.5, 14.0])
    got = binned_integral(t0, t1, w, edges)
    brute = [
        sum(wj * max(0.0, min(b, e) - max(a, s)) for a, b, wj in zip(t0, t1, w)) for s, e in zip(edges[:-1], edges[1:])
    ]
    assert got == pytest.approx(brute)


@pytest.mark.slow
def test_outputs_are_written(tmp_path):
    site = dataclasses.replace(make_site(profile="edge-h100", gpus=8, window_s=0.5))
    result = simulate(
        TwinConfig([site], bin_s=5.0), generate(WorkloadConfig(rate=10, duration_s=20, steps=30), site, 0)
    )
    paths = {p.name for p in result.write(tmp_path / "out", requests=True)}
    assert paths == {"twin-sites.csv", "twin-bins.csv", "twin-requests.csv", "twin.png", "twin.json", "twin.md"}
    bins = [r for r in result.bin_rows() if r["site"] == "all"]
    assert sum(r["requests"] for r in bins) == len(result.arrivals)


def test_sweep_seeds_come_from_the_workload_not_the_position():
    from edgediff.twin.sweep import SweepCase, case_seeds, run_sweep

    a = SweepCase(sites=2, rate=6.0, duration_s=10.0, steps=20, policy="exact")
    b = dataclasses.replace(a, policy="b1")  # same workload: same arrivals
    c = dataclasses.replace(a, rate=9.0)
    seeds = case_seeds([a, b, c], seed=3)
    assert seeds[0] == seeds[1] != seeds[2]
    assert case_seeds([c, a], seed=3) == [seeds[2], seeds[0]] and case_seeds([a], seed=4) != seeds[:1]
    rows = run_sweep([a, b], seed=3)
    alone = run_sweep([b], seed=3)
    assert rows[0]["requests"] == rows[1]["requests"] == alone[0]["requests"]
    assert repr({k: v for k, v in rows[1].items() if k != "simulate_s"}) == repr(
        {k: v for k, v in alone[0].items() if k != "simulate_s"}
    )


def test_a_slower_edge_than_calibrated_changes_time_not_decisions():
    base = make_site(profile="0.02,0.004", window_s=1.0, cache_gb=0, profile_from_steps=False)
    slow = dataclasses.replace(base, step_profile=(0.04, 0.008))
    arr = arrivals([0.1, 0.35, 0.6, 0.8, 0.95, 1.2, 1.3], k=0.3, alpha=1e-3)
    a, b = simulate(TwinConfig([base]), arr), simulate(TwinConfig([slow]), arr)
    assert a.records.split.tolist() == b.records.split.tolist()
    granted = a.records.outcome == GRANTED
    assert granted.any() and (b.answer_s[granted] > a.answer_s[granted]).all()


def test_with_profile_from_steps_the_predictions_follow_an_edge_slower_than_calibrated():
    arr = arrivals([0.1 + w for w in range(6)], k=0.3)  # one request a window, each alone on the edge
    errors = {}
    for on in (True, False):
        base = make_site(profile="0.02,0.004", window_s=1.0, cache_gb=0, profile_from_steps=on)
        result = simulate(TwinConfig([dataclasses.replace(base, step_profile=(0.04, 0.008))]), arr)
        assert (result.records.outcome == GRANTED).all()
        errors[on] = result.latency - result.records.predicted_latency  # seconds later than predicted
    assert (errors[False] > 0.1).all()  # the calibration alone: every request later than predicted
    # each runs 5 edge steps: the first two windows are decided before PACE_MIN_STEPS (8) steps ran
    assert errors[True][:2] == pytest.approx(errors[False][:2])
    assert errors[True][2:] == pytest.approx(0.0, abs=1e-9)  # then at the measured pace: exactly as predicted


@pytest.mark.parametrize(("key", "hint"), [("profil", "profile"), ("window", "window_s"), ("bmax", "b_max")])
def test_a_misspelt_site_key_is_one_error_naming_the_closest_key(key, hint):
    from edgediff.twin.config import TwinError, make_site

    with pytest.raises(TwinError, match=f"site s1: unknown key '{key}'; did you mean '{hint}'"):
        make_site("s1", **{key: 1})
