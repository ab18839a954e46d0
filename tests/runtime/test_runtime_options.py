"""diffusers' generation options (issue 32.3): each equals diffusers' own pipeline (<= 1 grey
level) and a split run equals the unsplit one bit for bit; LCM-distilled UNets and eta."""

import diffusers
import numpy as np
import pytest
import torch

from edgediff.runtime.executor import BatchedExecutor, initial_state
from edgediff.runtime.models import load_model
from edgediff.runtime.payload import decode_latent, encode_latent
from edgediff.runtime.request import GenerationRequest, RequestError
from edgediff.runtime.split import image_requests, run_edge, run_local

STEPS = 4


@pytest.fixture(scope="module")
def pair(sd_dir):
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(sd_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if not hasattr(pipe.text_encoder, "text_model"):  # transformers 5 has none; diffusers' clip_skip reaches for it
        object.__setattr__(pipe.text_encoder, "text_model", pipe.text_encoder)  # an alias, not a submodule
    return load_model(str(sd_dir)), pipe


def with_scheduler(pipe, request):
    """diffusers' way of choosing a scheduler: ``Class.from_config(pipe.scheduler.config, **options)``."""
    if request.scheduler is None:
        return pipe
    scheduler = getattr(diffusers, request.scheduler).from_config(pipe.scheduler.config, **request.scheduler_options)
    swapped = diffusers.StableDiffusionPipeline(**pipe.components)
    swapped.scheduler = scheduler  # as a user swaps it (the constructor would rewrite clip_sample)
    return swapped


def oracle(pipe, r: GenerationRequest):
    height, width = r.image_shape(pipe.unet.config.sample_size * pipe.vae_scale_factor)
    images = with_scheduler(pipe, r)(
        r.prompt,
        height=height,
        width=width,
        num_inference_steps=r.steps,
        guidance_scale=r.guidance_scale,
        negative_prompt=r.negative_prompt or None,
        eta=r.eta,
        guidance_rescale=r.guidance_rescale,
        clip_skip=r.clip_skip,
        generator=torch.Generator("cpu").manual_seed(r.seed),
        output_type="np",
    ).images
    return (images[0] * 255).round()


def check_against_diffusers(model, pipe, request, split=2):
    unsplit = run_local(model, initial_state(model, request))
    image = model.decode(unsplit.latent)[0]
    assert image.shape == oracle(pipe, request).shape
    assert np.abs(image.astype(float) - oracle(pipe, request)).max() <= 1
    received = decode_latent(encode_latent(run_edge(model, request, split)))
    assert torch.equal(run_local(model, received).latent, unsplit.latent)
    return image


OPTIONS = {
    "non-square": dict(width=48, height=32),
    "ddim-eta-1": dict(scheduler="DDIMScheduler", scheduler_options={"timestep_spacing": "trailing"}, eta=1.0),
    "tcd": dict(scheduler="TCDScheduler"),  # diffusers passes eta=0.0, not TCD's own gamma 0.3
    "guidance-rescale": dict(guidance_rescale=0.7),
    "clip-skip": dict(clip_skip=1),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPTIONS))
def test_option_equals_diffusers_and_split_is_exact(pair, name):
    model, pipe = pair
    request = GenerationRequest("a red boat", steps=STEPS, seed=3, negative_prompt="blur", **OPTIONS[name])
    image = check_against_diffusers(model, pipe, request)
    plain = model.decode(
        run_local(
            model, initial_state(model, GenerationRequest("a red boat", steps=STEPS, seed=3, negative_prompt="blur"))
        ).latent
    )[0]
    assert image.shape != plain.shape or not np.array_equal(image, plain)  # the option changed something


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtype_equals_diffusers_loaded_in_it(sd_dir, dtype):
    from edgediff.runtime.models import ModelSpec

    model = load_model(ModelSpec(str(sd_dir), dtype=dtype))
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(
        str(sd_dir), torch_dtype=getattr(torch, dtype), local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    check_against_diffusers(model, pipe, GenerationRequest("a red boat", steps=STEPS, seed=3))


@pytest.mark.slow
def test_images_per_prompt_equal_diffusers_with_one_generator_each(pair):
    model, pipe = pair
    request = GenerationRequest("a red boat", steps=STEPS, seed=3)
    ours = [model.decode(run_local(model, initial_state(model, r)).latent)[0] for r in image_requests(request, 2)]
    images = pipe(
        "a red boat",
        num_inference_steps=STEPS,
        num_images_per_prompt=2,
        generator=[torch.Generator("cpu").manual_seed(3 + i) for i in range(2)],
        output_type="np",
    ).images
    for mine, theirs in zip(ours, images):
        assert np.abs(mine.astype(float) - (theirs * 255).round()).max() <= 1
    assert not np.array_equal(ours[0], ours[1])


@pytest.mark.slow
def test_lcm_distilled_unet_gets_the_guidance_embedding(sd_dir, tmp_path):
    """A UNet with ``time_cond_proj_dim``: no classifier-free guidance, ``timestep_cond`` instead."""
    base = diffusers.StableDiffusionPipeline.from_pretrained(str(sd_dir), local_files_only=True)
    torch.manual_seed(1)
    unet = diffusers.UNet2DConditionModel(**{**base.unet.config, "time_cond_proj_dim": 8})
    scheduler = diffusers.LCMScheduler.from_config(base.scheduler.config)
    pipe = diffusers.StableDiffusionPipeline(**{**base.components, "unet": unet, "scheduler": scheduler})
    pipe.save_pretrained(str(tmp_path / "lcm"))
    pipe.set_progress_bar_config(disable=True)
    model = load_model(str(tmp_path / "lcm"))
    request = GenerationRequest("a red boat", steps=STEPS, seed=3, guidance_scale=6.0)
    low = GenerationRequest("a red boat", steps=STEPS, seed=3, guidance_scale=2.0)
    assert not np.array_equal(check_against_diffusers(model, pipe, request), check_against_diffusers(model, pipe, low))
    executor = BatchedExecutor(model)  # batched with another scale: each member its own embedding
    executor.add("a", request, 0)
    executor.add("b", low, 0)
    done = executor.run()
    alone = run_local(model, initial_state(model, request)).latent  # batch of 1 vs 2: float rounding only
    assert torch.allclose(done["a"].latent, alone, rtol=1e-5, atol=1e-4)


def test_bad_options_name_their_field(tiny):
    for fields, message in [
        (dict(width=30), "width must be a multiple of"),
        (dict(height=13), "height must be a multiple of"),
        (dict(size=13), "size must be a multiple of"),
        (dict(scheduler="NoSuchScheduler"), "scheduler: 'NoSuchScheduler' is not a diffusers scheduler"),
        (dict(scheduler="DDIMScheduler", scheduler_options={"nope": 1}), "scheduler_options: DDIMScheduler has no"),
    ]:
        with pytest.raises(RequestError, match=message):
            initial_state(tiny, GenerationRequest("x", steps=2, **fields))
    for fields, message in [(dict(eta=1.5), "eta must be"), (dict(clip_skip=0), "clip_skip must be")]:
        with pytest.raises(RequestError, match=message):
            GenerationRequest("x", **fields)


@pytest.mark.slow
def test_members_of_different_sizes_share_a_step_in_groups(tiny):
    requests = {
        "small": GenerationRequest("1", steps=3, seed=1),
        "wide": GenerationRequest("2", steps=3, seed=2, width=32),
    }
    executor = BatchedExecutor(tiny)
    for key, request in requests.items():
        executor.add(key, request, 0)
    done = executor.run()
    assert done["wide"].latent.shape[-1] == 2 * done["small"].latent.shape[-1]
    for key, request in requests.items():  # each size group is a batch of one here: bit for bit
        assert torch.equal(done[key].latent, run_local(tiny, initial_state(tiny, request)).latent)


@pytest.mark.slow
def test_generate_cli_takes_the_options_and_loads_quietly(sd_dir, tmp_path):
    """Issue 32.3/32.4: the CLI's options; no library chatter on stderr unless -v (the scheduler
    config holds PNDM's skip_prk_steps, which diffusers' DDIM would warn about on each use)."""
    import json
    import shutil

    from PIL import Image

    from helpers import run_cli

    model = shutil.copytree(sd_dir, tmp_path / "pipe")
    config = json.loads((model / "scheduler" / "scheduler_config.json").read_text())
    config["_class_name"] = "DDIMScheduler"
    (model / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    out = tmp_path / "a.png"
    args = ["generate", "--model", str(model), "--prompt", "a boat", "--steps", "3", "--split", "1"]
    args += ["--width", "48", "--height", "32", "--eta", "0.5", "--dtype", "bfloat16", "--native-size"]
    result = run_cli(*args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no transformers/diffusers warnings
    assert Image.open(out).size == (48, 32)
    two = run_cli(*args, "--images", "2", "--out", str(tmp_path / "b.png"))
    assert two.returncode == 0 and two.stdout.count("wrote ") == 2
    first, second = (np.asarray(Image.open(tmp_path / f"b-{i}.png")) for i in (1, 2))
    assert np.array_equal(first, np.asarray(Image.open(out))) and not np.array_equal(first, second)
    bad = run_cli(*args, "--scheduler", "EulerDiscreteScheduler", "--scheduler-option", "nope=1", "--out", str(out))
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1
    assert lines[0].startswith(
        "edgediff generate: error: scheduler_options: EulerDiscreteScheduler has no option 'nope'"
    )
    assert "use_karras_sigmas" in lines[0]  # the options it does take are listed


def test_a_missing_weights_file_is_named_as_it_is(sd_dir, tmp_path):
    import shutil

    from edgediff.runtime.backends import ModelLoadError

    model = shutil.copytree(sd_dir, tmp_path / "pipe")
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"unet/diffusion_pytorch_model\.safetensors is missing"):
        load_model(str(model))


@pytest.mark.slow
def test_t5_keeps_its_float32_layers_as_transformers_loads_it(tmp_path):
    import torch
    from transformers import T5Config, T5EncoderModel

    from edgediff.runtime.backends import cast_module

    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)).save_pretrained(
        tmp_path
    )
    for dtype in (torch.float16, torch.bfloat16):
        ours = T5EncoderModel.from_pretrained(tmp_path)
        cast_module(ours, dtype)
        theirs = T5EncoderModel.from_pretrained(tmp_path, dtype=dtype)  # what diffusers' pipelines get
        dtypes = {name: p.dtype for name, p in ours.named_parameters()}
        assert dtypes == {name: p.dtype for name, p in theirs.named_parameters()}
        assert (torch.float32 in dtypes.values()) == (dtype == torch.float16)  # T5's wo in float16
        tokens = torch.tensor([[1, 2, 3]])
        assert torch.equal(ours(tokens).last_hidden_state, theirs(tokens).last_hidden_state)
