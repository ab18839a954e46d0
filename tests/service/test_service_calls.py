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
from edgediff.service.client import EdgeClient, request_edge

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
