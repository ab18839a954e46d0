import numpy as np
import pytest
import torch

from edgediff.runtime.executor import BatchedExecutor, initial_state
from edgediff.runtime.payload import decode_latent, encode_latent
from edgediff.runtime.request import GenerationRequest, LatentState, RequestError
from edgediff.runtime.split import finish, generate, run_edge, run_local

STEPS = 8


def close(a, b, rel=1e-5):
    """Float32 agreement: max abs difference within ``rel`` of the latents' scale (>= 1)."""
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) <= rel * scale


@pytest.mark.parametrize("guidance", [7.5, 1.0])
@pytest.mark.slow
def test_split_equals_unsplit_bit_for_bit(tiny, guidance):
    request = GenerationRequest("a photo of a dog", steps=STEPS, seed=11, guidance_scale=guidance)
    unsplit = run_local(tiny, initial_state(tiny, request))
    assert unsplit.finished and unsplit.steps_done == STEPS
    for split in (0, 1, 3, STEPS - 1, STEPS):
        edge = run_edge(tiny, request, split)
        assert edge.split == split and edge.steps_done == STEPS - split
        received = decode_latent(encode_latent(edge))  # the bytes a server would send
        assert torch.equal(run_local(tiny, received).latent, unsplit.latent), split
    image = finish(tiny, run_edge(tiny, request, 3))
    assert np.array_equal(image, tiny.decode(unsplit.latent)[0])


@pytest.mark.slow
def test_generate_split_and_local_give_the_same_image(tiny):
    request = GenerationRequest("a red car", steps=STEPS, seed=2)
    local = generate(request, tiny)
    split = generate(request, tiny, split=5)
    latent_values = 4 * 8 * 8  # tiny's latent: 4 x 8 x 8
    assert local.payload_bits == 0 and split.payload_bits > 8 * 4 * latent_values
    assert split.offloaded_steps == STEPS - 5
    assert local.image.shape == (16, 16, 3) and local.image.dtype == np.uint8
    assert np.array_equal(local.image, split.image)
    half = generate(request, tiny, split=5, payload_dtype="float16")
    assert half.payload_bits < split.payload_bits - 8 * 2 * latent_values + 64
    assert np.abs(half.image.astype(int) - split.image.astype(int)).max() <= 8


def test_same_seed_same_result_other_seed_differs(tiny):
    a = run_edge(tiny, GenerationRequest("x", steps=3, seed=1), 0).latent
    b = run_edge(tiny, GenerationRequest("x", steps=3, seed=1), 0).latent
    c = run_edge(tiny, GenerationRequest("x", steps=3, seed=2), 0).latent
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.slow
def test_guidance_matters(tiny):
    base = dict(prompt="a cat", steps=4, seed=5)
    guided = run_edge(tiny, GenerationRequest(**base, guidance_scale=7.5), 0).latent
    other_scale = run_edge(tiny, GenerationRequest(**base, guidance_scale=3.0), 0).latent
    off = run_edge(tiny, GenerationRequest(**base, guidance_scale=1.0), 0).latent
    off_zero = run_edge(tiny, GenerationRequest(**base, guidance_scale=0.0), 0).latent
    assert not torch.equal(guided, off) and not torch.equal(guided, other_scale)
    assert torch.equal(off, off_zero)  # scale <= 1 means no guidance, as in diffusers


@pytest.mark.slow
def test_batched_heterogeneous_members_equal_running_alone(tiny):
    requests = [
        GenerationRequest(f"prompt number {i}", steps=10, seed=i, guidance_scale=(7.5, 1.0, 4.0)[i % 3])
        for i in range(6)
    ]
    stops = [0, 4, 7, 2, 9, 5]
    executor = BatchedExecutor(tiny)
    for i in range(4):
        executor.add(i, requests[i], stops[i])
    # a member joining from an intermediate state (a cached latent of another prompt)
    cached = run_edge(tiny, requests[5], 6)
    executor.add("cached", requests[4], 1, start=cached)
    first = executor.step() + executor.step()
    assert first == [] and len(executor) == 5
    executor.add(5, requests[5], stops[5])  # joins later, at its own first timestep
    results = dict(executor.run())
    assert len(executor) == 0
    for i in (0, 1, 2, 3, 5):
        alone = run_edge(tiny, requests[i], stops[i])
        assert results[i].split == stops[i] and results[i].request is requests[i]
        assert close(results[i].latent, alone.latent), i
    alone = run_edge(tiny, requests[4], 1, start=cached)
    assert close(results["cached"].latent, alone.latent)


def test_executor_batch_shrinks_and_reports_leavers(tiny):
    executor = BatchedExecutor(tiny)
    executor.add("a", GenerationRequest("a", steps=4), 3)
    executor.add("b", GenerationRequest("b", steps=4), 0)
    executor.add("c", GenerationRequest("c", steps=4), 4)  # already at its stop: leaves at once
    assert [k for k, _ in executor.step()] == ["c", "a"]
    assert executor.active == ["b"]
    assert list(executor.run()) == ["b"]


@pytest.mark.slow
def test_executor_matches_diffusers_stable_diffusion_pipeline(tiny):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=tiny.backend.vae,
        text_encoder=tiny.backend.text_encoder,
        tokenizer=tiny.backend.tokenizer,
        unet=tiny.backend.unet,
        scheduler=tiny.new_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    request = GenerationRequest("a dog on the beach", steps=6, seed=4, guidance_scale=5.0)
    start = initial_state(tiny, request)
    reference = pipe(
        request.prompt, num_inference_steps=6, guidance_scale=5.0, latents=start.latent.clone(), output_type="latent"
    ).images
    assert close(run_local(tiny, start).latent, reference)


def test_bad_splits_and_requests(tiny):
    request = GenerationRequest("x", steps=4)
    for split in (-1, 5, 1.5, True):
        with pytest.raises(RequestError, match="split"):
            run_edge(tiny, request, split)
    state = run_edge(tiny, request, 2)
    with pytest.raises(RequestError, match="stop split"):
        BatchedExecutor(tiny).add("k", request, 3, start=state)  # cannot go backwards
    with pytest.raises(RequestError, match="steps"):
        BatchedExecutor(tiny).add("k", GenerationRequest("x", steps=5), 0, start=state)
    with pytest.raises(RequestError, match="channels"):
        bad = LatentState(torch.zeros(1, 3, 8, 8), request, 2, state.scheduler_class, state.scheduler_config)
        BatchedExecutor(tiny).add("k", request, 0, start=bad)
    with pytest.raises(RequestError, match="size"):
        initial_state(tiny, GenerationRequest("x", size=18))
    for kwargs, field in [
        ({"steps": 0}, "steps"),
        ({"seed": -1}, "seed"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"size": 0}, "size"),
    ]:
        with pytest.raises(RequestError, match=field):
            GenerationRequest("x", **kwargs)
