"""The window scheduler alone: fake executor, fake cache, time as an argument (no HTTP, no
threads, no sleeps, no model). Each test takes milliseconds."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from edgediff.core.model import Decision, evaluate
from edgediff.service.config import ServiceConfig
from edgediff.service.scheduler import Hit, WindowScheduler

EDGE = (0.01, 0.004)


class FakeExecutor:
    """Members by id; ``fail_on`` ids refuse to start."""

    def __init__(self, running: int = 0, fail_on=()):
        self.members = {f"old{i}": None for i in range(running)}
        self.started = {}
        self.steps = 0
        self.fail_on = set(fail_on)

    def __len__(self):
        return len(self.members)

    def add(self, job, split, start):
        if job.id in self.fail_on:
            raise RuntimeError("no memory for this member")
        self.members[job.id] = (split, start)
        self.started[job.id] = (split, start)


class FakeCache:
    """Depths by prompt; records uses and stores."""

    def __init__(self, depth=None):
        self.depth = dict(depth or {})
        self.peeks, self.lookups, self.stored = [], [], []

    def peek(self, jobs, reusable):
        self.peeks.append([j.id for j in jobs])
        return [min(self.depth.get(j.prompt, 0), r) for j, r in zip(jobs, reusable)]

    def lookup(self, job, reach, reusable):
        self.lookups.append((job.id, reach, reusable))
        step = min(self.depth.get(job.prompt, 0), reach)
        return Hit(step, f"latent of {job.prompt} at {step}" if step else None)

    def store(self, job, step, state):
        self.stored.append((job.id, step, state))

    def order(self, job):
        return 0


class GrantFirst:
    """Grants the first ``B_max`` requests with split ``N_hat``; records the instances."""

    def __init__(self):
        self.instances = []

    def decide(self, instance):
        self.instances.append(instance)
        granted = np.arange(instance.num_users) < instance.B_max
        return Decision(granted, np.where(granted, instance.N_hat, instance.N))


class RaisesOn:
    def __init__(self, steps):
        self.steps, self.inner = steps, GrantFirst()

    def decide(self, instance):
        if instance.N == self.steps:
            raise RuntimeError(f"cannot take N = {instance.N}")
        return self.inner.decide(instance)


def job(name, arrived=0.0, steps=20, prompt=None):
    return SimpleNamespace(
        id=name, steps=steps, k=0.2, h=0.01, alpha=5.0, prompt=prompt or name, arrived=arrived, cached_steps=0
    )


def scheduler(policy=None, executor=None, cache=None, phase=10.0, **config):
    cfg = ServiceConfig(**{"window_s": 0.5, "edge_profile": EDGE, **config})
    return WindowScheduler(
        cfg,
        policy or GrantFirst(),
        executor if executor is not None else FakeExecutor(),
        cache,
        edge_profile=EDGE,
        intermediate_bits=8192,
        phase=phase,
    )


def test_window_boundaries_and_the_window_a_look_decides():
    s = scheduler(phase=10.0)  # windows end at 10.5, 11.0, 11.5, ...
    assert not s.due(10.49, since=10.0) and s.due(10.5, since=10.0)
    assert s.window_end_after(10.5) == 11.0  # strictly after: a look at the end belongs to the next
    assert s.take(10.7, since=10.2) is None  # nothing queued: no window, no number used
    s.submit(job("a", 10.3))
    # a step ran from 10.2 to 10.7 across the end at 10.5: the look at its end decides [10.0, 10.5)
    window = s.take(10.7, since=10.2)
    assert (window.index, window.start, [j.id for j in window.jobs]) == (0, 10.0, ["a"])
    assert not s.due(10.9, since=10.7) and s.due(11.0, since=10.7)
    s.submit(job("b", 11.2))
    idle = s.take(11.2, since=None)  # the edge idle: the last window end at or before the look
    assert (idle.index, idle.start) == (1, 10.5)
    assert s.queue == []


def test_the_queue_limit_refuses_without_queueing():
    s = scheduler(queue_limit=2)
    assert s.submit(job("a")) and not s.submit(job("b1"), job("b2"))  # a request's images: all or none
    assert s.submit(job("b")) and not s.submit(job("c"))
    assert [j.id for j in s.queue] == ["a", "b"]


def test_grants_under_max_batch_count_the_members_still_running():
    policy = GrantFirst()
    s = scheduler(policy, FakeExecutor(running=3), b_max=4, max_batch=5)
    for name in "abcd":
        s.submit(job(name, 10.1))
    decided = s.decide(s.take(10.5, since=10.0))
    assert policy.instances[0].B_max == 2  # min(B_max 4, max_batch 5 - 3 running)
    assert [a.status for a in decided.answers] == ["running", "running", "denied", "denied"]
    assert decided.answers[2].reason.startswith("no batch slot left")
    assert set(s.running) == {"a", "b"} and len(s.executor) == 5
    assert [a.window_granted for a in decided.answers] == [2, 2, 0, 0]


def test_without_max_batch_each_window_grants_b_max_whatever_runs():
    policy = GrantFirst()
    s = scheduler(policy, FakeExecutor(running=30), b_max=4)
    s.submit(job("a", 10.1))
    s.decide(s.take(10.5, since=10.0))
    assert policy.instances[0].B_max == 4


def test_the_decision_sees_the_cache_and_a_hit_covering_the_edge_part_stores_nothing():
    cache = FakeCache({"kite": 12})
    policy = GrantFirst()
    s = scheduler(policy, cache=cache, reusable_fraction=0.3)  # S* = 6 of 20 steps
    s.submit(job("a", 10.1, prompt="kite"))
    s.submit(job("b", 10.2, prompt="boat"))
    decided = s.decide(s.take(10.5, since=10.0))
    assert policy.instances[0].cached_steps.tolist() == [6, 0]  # the peek, capped at S*
    a, b = decided.answers
    assert (a.split, a.cache_hit_step, b.cache_hit_step) == (8, 6, 0)  # N_hat = 8: 12 edge steps
    assert s.executor.started["a"] == (8, "latent of kite at 6")
    assert s.executor.started["b"] == (8, None)
    # a starts at its S*: nothing of it is due; b stores its steps 1..6 as it runs them
    due = s.step_done(3)
    assert [(j.id, m) for j, m in due] == [("b", 1), ("b", 2), ("b", 3)]
    assert [(j.id, m) for j, m in s.step_done(10)] == [("b", 4), ("b", 5), ("b", 6)]


def test_a_hit_as_deep_as_the_member_s_edge_part_runs_no_edge_step():
    cache = FakeCache({"kite": 20})
    s = scheduler(cache=cache, reusable_fraction=1.0, n_hat_fraction=0.9)  # N_hat = 18: 2 edge steps
    s.submit(job("a", 10.1, prompt="kite"))
    (answer,) = s.decide(s.take(10.5, since=10.0)).answers
    assert (answer.split, answer.cache_hit_step) == (18, 2)
    assert cache.lookups == [("a", 2, 20)]  # the reach: its own edge steps
    assert s.step_done(100) == []


def test_outputs_are_due_at_the_executor_s_step_count_after_the_step_in_flight():
    executor = FakeExecutor()
    executor.steps = 7  # seven steps launched, the seventh in flight while the window is decided
    s = scheduler(executor=executor, cache=FakeCache(), reusable_fraction=0.1)  # S* = 2
    s.submit(job("a", 10.1))
    s.decide(s.take(10.5, since=10.0))
    assert s.step_done(7) == []  # the step in flight is not a's
    assert [(j.id, m) for j, m in s.step_done(8)] == [("a", 1)]  # step 8 is a's first
    assert [(j.id, m) for j, m in s.step_done(9)] == [("a", 2)]


def test_a_policy_that_raises_fails_only_the_requests_it_was_deciding():
    policy = RaisesOn(steps=12)
    s = scheduler(policy, b_max=3)
    s.submit(job("long1", 10.1, steps=12))
    s.submit(job("short1", 10.2, steps=6))
    s.submit(job("long2", 10.3, steps=12))
    s.submit(job("short2", 10.4, steps=6))
    decided = s.decide(s.take(10.5, since=10.0))
    by_id = {a.job.id: a for a in decided.answers}
    for name in ("long1", "long2"):  # its requests: the window's requests of that step count
        assert by_id[name].status == "failed"
        assert by_id[name].reason == "decision failed: RuntimeError: cannot take N = 12"
        assert by_id[name].decision() == {}
    assert by_id["short1"].status == by_id["short2"].status == "running"
    # the failed group granted nothing: the other group got all three slots
    assert policy.inner.instances[0].B_max == 3
    assert [str(e) for e in decided.policy_errors] == ["cannot take N = 12"]
    assert set(s.running) == {"short1", "short2"}


def test_a_member_that_cannot_start_fails_alone_with_its_decision():
    s = scheduler(executor=FakeExecutor(fail_on={"b"}), cache=FakeCache())
    s.submit(job("a", 10.1))
    s.submit(job("b", 10.2))
    a, b = s.decide(s.take(10.5, since=10.0)).answers
    assert a.status == "running"
    assert b.status == "failed" and b.reason == "edge could not start: no memory for this member"
    assert b.decision()["granted"] is True  # the decision is kept on the failed request
    assert set(s.running) == {"a"}
    assert all(j.id == "a" for j, _ in s.step_done(100))  # nothing of b is ever due


def test_a_member_whose_step_fails_stores_nothing_more_and_leaves_the_running_set():
    s = scheduler(cache=FakeCache(), reusable_fraction=0.3)  # S* = 6
    for name in "ab":
        s.submit(job(name, 10.1))
    s.decide(s.take(10.5, since=10.0))
    assert [(j.id, m) for j, m in s.step_done(1)] == [("a", 1), ("b", 1)]
    due = s.step_done(2, failed=["b"])  # b's second step raised
    assert [(j.id, m) for j, m in due] == [("a", 2)]
    assert set(s.running) == {"a"}
    assert [(j.id, m) for j, m in s.step_done(3, left=["a"])] == [("a", 3)]  # a leaving stores its last step
    assert s.running == {} and s.step_done(10) == []


def test_drop_takes_members_out_of_the_running_set():
    s = scheduler()
    for name in "abc":
        s.submit(job(name, 10.1))
    s.decide(s.take(10.5, since=10.0))
    assert [j.id for j in s.drop(["c", "zz", "a"])] == ["c", "a"]
    assert set(s.running) == {"b"}


def test_groups_are_decided_in_order_of_first_arrival_sharing_the_slots():
    policy = GrantFirst()
    s = scheduler(policy, b_max=3)
    for name, steps in (("x", 30), ("y", 20), ("z", 30), ("w", 20)):
        s.submit(job(name, 10.1, steps=steps))
    decided = s.decide(s.take(10.5, since=10.0))
    assert [inst.N for inst in policy.instances] == [30, 20]
    assert [inst.B_max for inst in policy.instances] == [3, 1]
    assert [a.job.id for a in decided.answers] == ["x", "z", "y", "w"]
    assert [a.status for a in decided.answers] == ["running", "running", "running", "denied"]


@pytest.mark.parametrize("since", [10.0, 10.49])
def test_a_look_before_the_end_is_not_due(since):
    assert not scheduler().due(since, since=since)


def test_a_window_sees_the_members_still_running_step_by_step():
    """``r_s``: earlier members in each of the window's edge steps, the step in flight done;
    a later group of the same window also sees what an earlier group granted."""
    policy = GrantFirst()
    ex = FakeExecutor()
    s = scheduler(policy, ex, b_max=4)
    s.submit(job("a", 10.1, steps=20))  # split N_hat = 8: 12 edge steps
    s.submit(job("b", 10.2, steps=10))  # N_hat = 4: 6 edge steps
    s.decide(s.take(10.5, since=10.0))
    assert policy.instances[0].running.size == 0  # nothing ran before
    assert policy.instances[1].running.tolist() == [1] * 12  # "a", granted first in this window
    ex.steps = 3  # three steps launched since, the third in flight
    s.submit(job("c", 10.6, steps=20))
    (answer,) = s.decide(s.take(11.0, since=10.5)).answers
    instance = policy.instances[2]
    assert instance.running.tolist() == [2, 2, 2, 1, 1, 1, 1, 1, 1]  # b: 3 left, a: 9 left
    decision = Decision(np.array([True]), np.array([answer.split]))
    alone = evaluate(replace(instance, running=None), decision, "timeline").latency[0]
    k_g = EDGE[0] / instance.G
    assert answer.predicted_latency_s == pytest.approx(alone + k_g * 12)  # R(12) = 2+2+2+6*1
    s.drop(["a"])
    assert sorted(s.edge_steps_left()) == [3, 12]  # b, and c admitted now


def test_later_windows_members_are_expected_from_the_recent_ones():
    """f_s: each later window adds the recent windows' members per window, every K / L_e(b)
    steps, each staying for edge steps drawn like theirs."""
    from edgediff.service.window import joiners_profile

    f = joiners_profile(2.0, [4, 4], steps_per_window=3.0, horizon=10)
    # window 1 joins after step 3 (steps 4..7), window 2 after step 6 (7..10), window 3 after 9
    assert f.tolist() == [0, 0, 0, 2, 2, 2, 4, 2, 2, 4]
    assert joiners_profile(0.0, [4], 3.0, 10).size == 0
    policy = GrantFirst()
    s = scheduler(policy, FakeExecutor(), b_max=4, phase=10.0)
    for w in range(3):  # three windows of two requests, each granted 12 edge steps (N 20, N_hat 8)
        s.submit(job(f"a{w}", 10.1 + 0.5 * w))
        s.submit(job(f"b{w}", 10.2 + 0.5 * w))
        s.decide(s.take(10.5 + 0.5 * w, since=10.0 + 0.5 * w))
    assert policy.instances[1].running.tolist() == [2] * 12  # one window of history: nothing expected yet
    s.submit(job("c", 11.6))
    s.decide(s.take(12.0, since=11.5))
    per_window, step_s = 6 / 3, EDGE[0] * (6 + 2) / 1 + EDGE[1]  # 2 members a window; batch 6 + 2
    later = joiners_profile(per_window, [12] * 6, 0.5 / step_s, 20)
    assert later.sum() > 0
    assert policy.instances[-1].running == pytest.approx(np.pad([6.0] * 12, (0, 8)) + later)
    s.expect_joiners = False
    s.submit(job("d", 12.1))
    s.decide(s.take(12.5, since=12.0))
    assert policy.instances[-1].running.tolist() == [7] * 12  # the members running, nothing more


def test_a_step_in_flight_delays_the_members_admitted_now():
    policy = GrantFirst()
    ex = FakeExecutor(running=3)
    ex.in_flight = 3  # the engine decides while a step of 3 members runs
    s = scheduler(policy, ex)
    s.submit(job("a", 10.1))
    (answer,) = s.decide(s.take(10.5, since=10.0)).answers
    instance = policy.instances[0]
    assert instance.start_delay == pytest.approx(EDGE[0] * 3 / instance.G + EDGE[1])
    alone = evaluate(replace(instance, start_delay=0.0), Decision(np.array([True]), np.array([answer.split])))
    assert answer.predicted_latency_s == pytest.approx(alone.latency[0] + instance.start_delay)


# ---------------------------------------------------------------------- the profile follows the steps
def decided_latency(s, name="a"):
    """One request's predicted latency and its window's instance, decided by ``s``."""
    s.submit(job(name, 10.1))
    (answer,) = s.decide(s.take(10.5, since=10.0)).answers
    return answer, s.policy.instances[-1]


def test_steps_twice_the_calibration_move_the_predicted_latency_to_the_measured():
    k, h = EDGE
    fresh, paced, off = scheduler(), scheduler(), scheduler(profile_from_steps=False)
    for s in (paced, off):
        for members in (1, 2, 4, 8) * 16:  # 64 batched steps, each twice its calibrated L(b)
            s.observe_step(members, 2 * (k * members + h))
    assert paced.step_scale == pytest.approx(2.0) and off.step_scale == pytest.approx(2.0)
    before, calibrated = decided_latency(fresh)
    after, scaled = decided_latency(paced)
    assert (scaled.edge_k, scaled.edge_h) == pytest.approx((2 * k, 2 * h))
    assert (calibrated.edge_k, calibrated.edge_h) == pytest.approx((k, h))
    # what the same decision takes when every edge step takes twice its calibration
    decision = Decision(np.array([True]), np.array([before.split]))
    measured = evaluate(replace(calibrated, edge_k=2 * k, edge_h=2 * h), decision, "timeline").latency[0]
    assert before.split == after.split and before.predicted_latency_s < measured
    assert after.predicted_latency_s == pytest.approx(measured)
    # without profile_from_steps the scale is measured but the window decides with the calibration
    unchanged, _ = decided_latency(off)
    assert unchanged.predicted_latency_s == pytest.approx(before.predicted_latency_s)


def test_the_pace_is_clipped_waits_for_enough_steps_and_forgets_old_ones():
    from edgediff.service.scheduler import PACE_CLIP, PACE_MIN_STEPS, PACE_STEPS, StepPace

    k, h = EDGE
    pace = StepPace(EDGE)
    for _ in range(PACE_MIN_STEPS - 1):
        pace.observe(1, 10 * (k + h))  # ten times slower: a stalled host
    assert pace.scale == 1.0  # too few steps to move the profile
    pace.observe(1, 10 * (k + h))
    assert pace.scale == PACE_CLIP[1]
    for _ in range(PACE_STEPS):
        pace.observe(1, 0.01 * (k + h))
    assert pace.scale == PACE_CLIP[0]
    for _ in range(PACE_STEPS):
        pace.observe(3, 1.5 * (3 * k + h))
    assert pace.scale == pytest.approx(1.5)  # the older steps are out of the window
    pace.observe(0, 1.0)  # an empty step and a bad time change nothing
    pace.observe(2, float("nan"))
    assert pace.scale == pytest.approx(1.5)


def test_a_segment_of_steps_counts_as_its_steps():
    from edgediff.service.scheduler import StepPace

    k, h = EDGE
    pace = StepPace(EDGE, steps=10, min_steps=4)
    pace.observe(2, 3 * 3 * (2 * k + h), steps=3)  # three steps at 3x: below min_steps
    assert pace.scale == 1.0
    pace.observe(2, 2 * 2 * (2 * k + h), steps=2, gpus=1)
    assert pace.scale == pytest.approx((9 + 4) / 5)
    pace.observe(4, 8 * (4 * k / 2 + h), steps=8, gpus=2)  # G = 2: L(b) = k b / G + h
    assert pace.scale == pytest.approx((4 + 8) / 10)  # the first segment left whole


def test_profile_from_steps_must_be_a_boolean_and_the_error_names_the_field():
    from edgediff.service.config import ServiceConfigError

    with pytest.raises(ServiceConfigError, match=r"^scheduling\.profile_from_steps must be true or false, got 'yes'"):
        ServiceConfig(profile_from_steps="yes")
    assert ServiceConfig().profile_from_steps is True
