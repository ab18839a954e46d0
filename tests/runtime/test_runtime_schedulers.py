"""Every common diffusers scheduler: unsplit equals diffusers' own pipeline ``__call__``, and a
split (through the payload bytes) equals the unsplit run bit for bit at every split point."""

import diffusers
import numpy as np
import pytest
import torch
from runtime_dirs import use_scheduler

from edgediff.runtime.executor import BatchedExecutor, initial_state
from edgediff.runtime.models import load_model
from edgediff.runtime.payload import decode_latent, encode_latent
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import run_edge, run_local

STEPS = 4
SD_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
SCHEDULERS = {
    "ddim": ("DDIMScheduler", dict(clip_sample=False, set_alpha_to_one=False)),
    "pndm": ("PNDMScheduler", dict(skip_prk_steps=True, set_alpha_to_one=False)),
    "pndm-prk": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++")),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", use_karras_sigmas=True)),
    "dpm++sde": ("DPMSolverMultistepScheduler", dict(algorithm_type="sde-dpmsolver++")),
    "unipc": ("UniPCMultistepScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "v-dpm++2m": ("DPMSolverMultistepScheduler", dict(prediction_type="v_prediction")),
    "v-euler-ancestral": ("EulerAncestralDiscreteScheduler", dict(prediction_type="v_prediction")),
}


def close(a, b, rel=1e-5):
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) <= rel * scale


@pytest.fixture(scope="module", params=list(SCHEDULERS))
def pair(request, sd_dir, tmp_path_factory):
    """(our model, diffusers' pipeline) on one directory with the parametrized scheduler."""
    name, overrides = SCHEDULERS[request.param]
    scheduler = getattr(diffusers, name).from_config({**SD_SCHEDULE, **overrides})
    path = use_scheduler(sd_dir, tmp_path_factory.mktemp(request.param) / "pipe", scheduler)
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return load_model(path), pipe


def oracle(pipe, request, output_type):
    return pipe(
        request.prompt,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        negative_prompt=request.negative_prompt or None,
        generator=torch.Generator("cpu").manual_seed(request.seed),
        output_type=output_type,
    ).images


@pytest.mark.parametrize("guidance", [7.5, 1.0])
@pytest.mark.slow
def test_unsplit_equals_diffusers_and_every_split_is_exact(pair, guidance):
    model, pipe = pair
    request = GenerationRequest("a photo of a cat", steps=STEPS, seed=5, guidance_scale=guidance)
    unsplit = run_local(model, initial_state(model, request))
    assert close(unsplit.latent, oracle(pipe, request, "latent"))
    expected = (oracle(pipe, request, "np")[0] * 255).round()
    assert np.abs(model.decode(unsplit.latent)[0].astype(float) - expected).max() <= 1
    for split in range(unsplit.steps + 1):  # every split point of the schedule
        received = decode_latent(encode_latent(run_edge(model, request, split)))
        assert received.split == split
        assert torch.equal(run_local(model, received).latent, unsplit.latent), split


@pytest.mark.slow
def test_each_member_keeps_its_own_scheduler_state(pair):
    model, _ = pair  # every scheduler: the stateful ones (history, half steps, noise) are the ones at risk
    requests = [
        GenerationRequest(f"prompt {i}", steps=STEPS, seed=i, guidance_scale=(7.5, 1.0)[i % 2]) for i in range(3)
    ]
    alone = [run_local(model, initial_state(model, r)).latent for r in requests]
    executor = BatchedExecutor(model)
    executor.add(0, requests[0], 0)
    executor.step()
    executor.add(1, requests[1], 0)  # joins a step later, so the members sit at different steps
    executor.add(2, requests[2], 0, start=run_edge(model, requests[2], initial_state(model, requests[2]).steps - 1))
    results = executor.run()
    for i, latent in enumerate(alone):
        assert close(results[i].latent, latent), i
