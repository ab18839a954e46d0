"""The window's Part A instance (a pure function) and the status snapshots the HTTP side reads."""

import dataclasses
import threading

import numpy as np
import pytest

from edgediff.core.instance import Instance
from edgediff.core.pai import PaiCurve
from edgediff.offload.policies import make_policy
from edgediff.runtime.request import GenerationRequest
from edgediff.service.client import EdgeClient
from edgediff.service.config import ServiceConfig
from edgediff.service.job import Job, JobSnapshot
from edgediff.service.schemas import SubmitRequest
from edgediff.service.window import LATEST_ARRIVAL, decide_window, window_instance

CONFIG = ServiceConfig(window_s=0.5, gpus=2, eta=12.0, W_max=2e6)
EDGE = (0.01, 0.004)


def job(name: str, arrived: float, steps: int = 20, alpha: float = 2.0, k: float = 0.2, h: float = 0.01) -> Job:
    body = SubmitRequest(prompt=name, steps=steps, alpha=alpha, profile={"k": k, "h": h})
    return Job(name, body, GenerationRequest(name, steps=steps), k, h, arrived)


def test_window_instance_is_the_part_a_instance_of_the_queued_requests():
    jobs = [job("a", 100.1, k=0.2), job("a longer prompt é", 100.4, alpha=5.0, k=0.3, h=0.02), job("c", 99.0)]
    inst = window_instance(jobs, CONFIG, start=100.0, b_max=7, edge_profile=EDGE, intermediate_bits=4096)
    assert inst.ids == ("a", "a longer prompt é", "c")
    assert inst.k.tolist() == [0.2, 0.3, 0.2] and inst.h.tolist() == [0.01, 0.02, 0.01]
    assert inst.alpha.tolist() == [2.0, 5.0, 2.0]
    # time from the window's start, clamped to [0, K): a request from before the start waits K
    assert inst.request_time == pytest.approx([0.1, 0.4, 0.0])
    assert inst.prompt_bits.tolist() == [8, 8 * 18, 8]  # UTF-8 bytes
    assert inst.intermediate_bits.tolist() == [4096] * 3
    assert (inst.N, inst.N_hat, inst.B_max, inst.G, inst.K) == (20, 8, 7, 2, 0.5)
    assert (inst.edge_k, inst.edge_h, inst.eta, inst.W_max) == (0.01, 0.004, 12.0, 2e6)
    # the paper's N = 200 curve over the fraction of local steps, exactly as the engine always had it
    assert (inst.pai.a, inst.pai.b) == (0.0413 * (200.0 / 20), 71.44 / (200.0 / 20))
    late = window_instance([job("d", 100.9)], CONFIG, start=100.0, b_max=1, edge_profile=EDGE, intermediate_bits=1)
    assert late.request_time.tolist() == [LATEST_ARRIVAL * 0.5]  # arrived after the boundary: last


def test_window_instance_matches_the_engine_s_former_inline_instance():
    rng = np.random.default_rng(3)
    for steps in (1, 6, 7, 13, 30, 200, 333):
        start = float(rng.uniform(0, 1e4))
        jobs = [
            job(
                f"p{i}" * int(rng.integers(1, 5)), start + float(rng.uniform(-0.2, 0.7)), steps, *rng.uniform(0.1, 3, 3)
            )
            for i in range(int(rng.integers(1, 6)))
        ]
        new = window_instance(jobs, CONFIG, start=start, b_max=5, edge_profile=EDGE, intermediate_bits=8192)
        scale = 200.0 / steps  # the engine's expression before window_instance existed
        old = Instance(
            ids=tuple(j.id for j in jobs),
            k=[j.k for j in jobs],
            h=[j.h for j in jobs],
            alpha=[j.body.alpha for j in jobs],
            request_time=[min(max(j.arrived - start, 0.0), 0.999 * CONFIG.window_s) for j in jobs],
            prompt_bits=[8 * len(j.request.prompt.encode()) for j in jobs],
            intermediate_bits=[8192] * len(jobs),
            N=steps,
            N_hat=CONFIG.n_hat(steps),
            B_max=5,
            G=CONFIG.gpus,
            K=CONFIG.window_s,
            edge_k=EDGE[0],
            edge_h=EDGE[1],
            eta=CONFIG.eta,
            W_max=CONFIG.W_max,
            pai=PaiCurve(a=CONFIG.pai_a * scale, b=CONFIG.pai_b / scale),
        )
        assert new.to_dict() == old.to_dict()
        assert new.pai == old.pai


def test_window_instance_takes_one_step_count():
    with pytest.raises(ValueError, match="one step count"):
        window_instance(
            [job("a", 0, 10), job("b", 0, 20)], CONFIG, start=0, b_max=1, edge_profile=EDGE, intermediate_bits=1
        )


def test_decide_window_groups_by_step_count_in_arrival_order_sharing_b_max():
    cfg = dataclasses.replace(CONFIG, b_max=3)
    # fast edge, slow devices, large alpha: everyone wants the edge, B_max binds
    jobs = [job(f"u{i}", 100.0 + 0.01 * i, steps=(20 if i % 2 else 10), alpha=50.0, k=0.5) for i in range(6)]
    groups = decide_window(jobs, cfg, make_policy("exact"), start=100.0, edge_profile=EDGE, intermediate_bits=64)
    assert [g.instance.N for g in groups] == [10, 20]  # u0 (N = 10) arrived first
    assert [[j.id for j in g.jobs] for g in groups] == [["u0", "u2", "u4"], ["u1", "u3", "u5"]]
    assert [g.instance.B_max for g in groups] == [3, 3 - groups[0].decision.granted_count]
    assert sum(g.decision.granted_count for g in groups) == 3
    for g in groups:
        assert g.error is None
        assert g.outcome.latency_model == "timeline"


def test_max_batch_leaves_a_window_only_the_running_batch_s_free_slots():
    cfg = dataclasses.replace(CONFIG, b_max=3, max_batch=5)
    jobs = [job(f"u{i}", 100.0 + 0.01 * i, alpha=50.0, k=0.5) for i in range(6)]  # all want the edge

    def granted(running):
        (group,) = decide_window(
            jobs, cfg, make_policy("exact"), start=100.0, edge_profile=EDGE, intermediate_bits=64, running=running
        )
        return group.instance.B_max, group.decision.granted_count

    assert granted(0) == (3, 3) and granted(2) == (3, 3)  # B_max binds
    assert granted(4) == (1, 1) and granted(5) == (0, 0) and granted(9) == (0, 0)  # the batch cap binds
    uncapped = dataclasses.replace(cfg, max_batch=None)
    (group,) = decide_window(
        jobs, uncapped, make_policy("exact"), start=100.0, edge_profile=EDGE, intermediate_bits=64, running=50
    )
    assert group.instance.B_max == 3  # without a cap, members running change nothing (the paper's window)
    with pytest.raises(ValueError, match="max_batch"):
        ServiceConfig(max_batch=0)
    # the start-up calibration spans the batches the edge may run: up to the cap when there is one
    assert (cfg.batch_limit, uncapped.batch_limit) == (5, 3)


class FailsOnLongRuns:
    def decide(self, instance):
        if instance.N > 10:
            raise RuntimeError("cannot take N > 10")
        return make_policy("exact").decide(instance)


def test_decide_window_fails_only_the_group_whose_policy_raised():
    jobs = [job("long", 100.0, steps=20), job("short", 100.1, steps=10)]
    failed, ok = decide_window(jobs, CONFIG, FailsOnLongRuns(), start=100.0, edge_profile=EDGE, intermediate_bits=64)
    assert (
        isinstance(failed.error, RuntimeError) and failed.decision is None and [j.id for j in failed.jobs] == ["long"]
    )
    assert ok.error is None and ok.instance.B_max == CONFIG.b_max


def test_snapshot_is_immutable_and_starts_queued():
    snap = job("a", 5.0).snapshot
    assert snap == JobSnapshot("a", 20, 5.0, calls=20) and snap.status == "queued" and not snap.terminal
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.granted = True


def assert_consistent(status: dict) -> None:
    """What a client may rely on in any one status it reads."""
    decided = status["window"] is not None
    if status["status"] == "queued":
        assert not decided and status["granted"] is None and status["split"] is None, status
        assert status["queued_s"] is None and status["predicted_latency_s"] is None, status
    if status["status"] == "running":
        assert decided and status["granted"] is True and status["split"] < status["steps"], status
    if status["status"] == "denied":
        assert decided and status["granted"] is False and status["split"] == status["steps"], status
    if status["status"] == "done":
        assert status["granted"] is True and status["payload_bytes"] > 0 and status["edge_s"] is not None, status


class HeldPolicy:
    """Holds the engine inside a window's decision: the policy has decided, nothing is published."""

    def __init__(self, policy):
        self.policy = policy
        self.entered, self.release = threading.Event(), threading.Event()

    def decide(self, instance):
        decision = self.policy.decide(instance)
        self.entered.set()
        self.release.wait(30)
        return decision


@pytest.mark.slow
def test_a_poll_during_the_decision_sees_one_consistent_state(start_service):
    """The engine used to write the decision onto the job before it ran: a poll then saw
    ``queued`` with ``granted: true``. Now each status is one published snapshot."""
    service, engine = start_service(window_s=0.2)
    held = engine.policy = HeldPolicy(engine.policy)  # the engine thread reads it at the next window
    with EdgeClient(service.url) as client:
        submitted = client.submit("a lighthouse", alpha=5.0, profile=(0.25, 0.02), steps=6)
        assert_consistent(submitted)
        try:
            assert held.entered.wait(30), "no window was decided"
            during = client.status(submitted["id"])
            assert_consistent(during)
            assert during["status"] == "queued"
        finally:
            held.release.set()
        final = client.status(submitted["id"], wait=30)
    assert_consistent(final)
    assert final["status"] == "done"


@pytest.mark.slow
def test_a_policy_that_raises_fails_its_window_s_requests_and_the_service_goes_on(start_service):
    service, engine = start_service(window_s=0.2)
    exact = engine.policy
    engine.policy = FailsOnLongRuns()  # the engine thread reads it at the next window
    with EdgeClient(service.url) as client:
        long = client.submit("a long run", alpha=5.0, profile=(0.25, 0.02), steps=12)
        short = client.submit("a short run", alpha=5.0, profile=(0.25, 0.02), steps=6)
        failed, served = client.status(long["id"], wait=30), client.status(short["id"], wait=30, until="finished")
        engine.policy = exact
    assert failed["status"] == "failed" and failed["reason"].startswith("decision failed: RuntimeError: cannot take")
    assert served["status"] in ("done", "denied")


def test_the_window_instance_carries_each_request_s_cached_steps():
    jobs = [job("a", 100.1), job("b", 100.2)]
    jobs[1].cached_steps = 5
    inst = window_instance(jobs, CONFIG, start=100.0, b_max=2, edge_profile=EDGE, intermediate_bits=8)
    assert inst.cached_steps.tolist() == [0, 5]


@pytest.mark.slow
def test_a_cached_prompt_is_decided_with_its_cached_steps(start_service):
    """The second request of a prompt sees, before its window is decided, the latent the first
    one left in the cache, and the decision and prediction account for it."""
    seen = []

    class Recording:
        def __init__(self, policy):
            self.policy = policy

        def decide(self, instance):
            seen.append(instance.cached_steps.tolist())
            return self.policy.decide(instance)

    service, engine = start_service(window_s=0.2, cache_gb=0.01)
    engine.policy = Recording(engine.policy)
    with EdgeClient(service.url) as client:
        first = client.submit("a red kite", alpha=0.01, profile=(0.25, 0.02), steps=20)
        first = client.status(first["id"], wait=30, until="finished")
        assert first["granted"] and first["cache_hit_step"] == 0
        second = client.submit("a red kite", alpha=0.01, profile=(0.25, 0.02), steps=20)
        second = client.status(second["id"], wait=30, until="finished")
    depth = engine.config.reusable_steps(20)
    assert seen[0] == [0] and seen[-1] == [depth]  # the first left entries up to S*; the second saw them
    assert second["granted"] and second["cache_hit_step"] == min(depth, 20 - second["split"])


@pytest.mark.slow
def test_prompts_are_embedded_and_encoded_off_the_engine_thread(start_service, monkeypatch):
    from edgediff.runtime import executor
    from edgediff.service.embedding import HashEmbedder

    threads, encoders = [], []

    class Recording(HashEmbedder):
        def encode(self, prompts):
            threads.append(threading.current_thread().name)
            return super().encode(prompts)

    encode = executor.request_conditioning

    def recording(backend, request):
        encoders.append(threading.current_thread().name)
        return encode(backend, request)

    monkeypatch.setattr(executor, "request_conditioning", recording)
    service, engine = start_service(embedder=Recording(), window_s=0.2, cache_gb=0.01)
    with EdgeClient(service.url) as client:
        done = client.status(client.submit("a tern", alpha=5.0, profile=(0.25, 0.02), steps=6)["id"], wait=30)
        done = client.status(done["id"], wait=30, until="finished")
    assert done["status"] in ("done", "denied")
    assert threads and all(name.startswith("edgediff-prep") for name in threads)
    # the text encoding ran once, ahead on the prep thread; the executor took it from there
    assert encoders == ["edgediff-prep_0"]
    (job,) = engine.jobs()
    assert job.conditioning is None and job.embedding is None  # a finished record keeps no prompt work


def test_a_larger_image_costs_in_proportion_to_its_latent_area():
    """Issue 32.3: a member of 4x the native latent area is decided with 4x the per-member
    costs (edge k_e, the device's k and h, the payload), in its own group; h_e stays."""
    native, large = job("a", 100.1), dataclasses.replace(job("b", 100.2), area=4.0)
    inst = window_instance([large], CONFIG, start=100.0, b_max=7, edge_profile=EDGE, intermediate_bits=4096)
    assert (inst.edge_k, inst.edge_h) == (pytest.approx(0.04), 0.004)
    assert inst.k.tolist() == [pytest.approx(0.8)] and inst.h.tolist() == [pytest.approx(0.04)]
    assert inst.intermediate_bits.tolist() == [4 * 4096]
    with pytest.raises(ValueError, match="one image size"):
        window_instance([native, large], CONFIG, start=100.0, b_max=7, edge_profile=EDGE, intermediate_bits=1)
    groups = decide_window(
        [native, large], CONFIG, make_policy("exact"), start=100.0, edge_profile=EDGE, intermediate_bits=4096
    )
    assert [[j.id for j in g.jobs] for g in groups] == [["a"], ["b"]]
    assert groups[0].instance.edge_k == pytest.approx(0.01) and groups[1].instance.edge_k == pytest.approx(0.04)
