"""One unit end to end: the edge plans, runs and reports split points in denoiser calls (model
evaluations) of the scheduler's own schedule. Per scheduler family, the edge calls a window
predicts are the calls the edge's denoiser is measured to run, and the device runs the rest."""

import copy

import diffusers
import numpy as np
import pytest

from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.schedulers import schedule_length
from edgediff.runtime.split import finish, generate
from edgediff.service.client import EdgeClient, ServiceError, generate_remote, request_edge

SLOW_DEVICE = (0.25, 0.02)
STEPS = 5
# one per family: first order, two evaluations per step, a warm-up, a multistep solver
FAMILIES = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "kdpm2-ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", dict(skip_prk_steps=True)),
    "dpm++2m": ("DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++")),
}


def with_scheduler(tiny, name: str):
    """A copy of the tiny model whose scheduler is ``name``'s, and a counter of its denoiser calls."""
    class_name, overrides = FAMILIES[name]
    model = copy.deepcopy(tiny)
    backend = model.backend
    backend.scheduler = getattr(diffusers, class_name).from_config({**backend.scheduler.config, **overrides})
    calls = []
    predict = backend.predict

    def counted(x, t, conditioning):
        calls.append(len(x))
        return predict(x, t, conditioning)

    backend.predict = counted
    return model, calls


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.slow
def test_predicted_edge_calls_are_the_calls_the_edge_runs(start_service, tiny, family):
    model, calls = with_scheduler(tiny, family)
    backend = model.backend
    N = schedule_length(backend.scheduler_class, backend.scheduler_config, STEPS)
    assert (N != STEPS) == (family in ("heun", "kdpm2-ancestral", "pndm"))  # the families where units differ
    service, engine = start_service(model=model, cache_gb=0, policy="b2")
    request = GenerationRequest("a lighthouse at dusk", steps=STEPS, seed=3)
    with EdgeClient(service.url) as client:
        answer = request_edge(client, request, model, alpha=5.0, profile=SLOW_DEVICE)
        edge_calls = len(calls)  # measured: the denoiser calls the edge ran
        status = answer.status
        assert status["status"] == "done" and status["steps"] == STEPS and status["calls"] == N
        assert 0 < status["offloaded_steps"] == edge_calls < N  # predicted = executed
        assert status["split"] == answer.state.split == N - edge_calls and answer.state.steps == N
        image = finish(model, answer.state)
    assert len(calls) - edge_calls == status["split"]  # the device runs the rest of the schedule
    assert np.array_equal(image, generate(request, model, split=status["split"]).image)
    windows = engine.board.snapshot(engine, thumbnails=False)["windows"]
    assert windows[0]["calls"] == [N] and windows[0]["splits"] == [status["split"]]


@pytest.mark.slow
def test_the_prediction_error_is_measured_end_to_end(start_service, tiny):
    """The device reports its submit-to-image time; the edge's prediction of the edge time, the
    hand-off and the total is compared with what was measured: status, /metrics, status page."""
    import httpx

    service, engine = start_service(cache_gb=0)
    request = GenerationRequest("a lighthouse at dusk", steps=8, seed=1)
    with EdgeClient(service.url) as client:
        result = generate_remote(client, request, tiny, alpha=5.0, profile=SLOW_DEVICE)
        status = client.status(result.status["id"])
        with pytest.raises(ServiceError, match="already reported"):
            client.report_latency(status["id"], 1.0)  # once per request
    assert status["status"] == "done" and status["measured_latency_s"] == pytest.approx(result.measured_latency_s)
    assert 0 < status["predicted_edge_s"] < status["predicted_handoff_s"] < status["predicted_latency_s"]
    assert status["handoff_s"] > status["edge_s"] > 0
    with httpx.Client(base_url=service.url) as http:
        text = http.get("/metrics").text
        for part in ("edge", "handoff", "total"):
            assert f'edgediff_prediction_error_ratio_count{{part="{part}"}} 1.0' in text
        bad = http.post(f"/v1/requests/{status['id']}/measured", json={"latency_s": -1})
        assert bad.status_code == 422 and "latency_s" in bad.json()["error"]
        unknown = http.post("/v1/requests/nope/measured", json={"latency_s": 1.0})
        assert unknown.status_code == 404
        page = http.get("/v1/status").json()["prediction_error"]
    total = (result.measured_latency_s - status["predicted_latency_s"]) / status["predicted_latency_s"]
    assert page["total"]["count"] == 1 and page["total"]["mean"] == pytest.approx(total, abs=1e-4)
    edge = (status["edge_s"] - status["predicted_edge_s"]) / status["predicted_edge_s"]
    assert page["edge"]["mean"] == pytest.approx(edge, abs=1e-4)
