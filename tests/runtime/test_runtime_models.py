import json

import numpy as np
import pytest
import torch
from runtime_dirs import use_scheduler

from edgediff.runtime.models import ModelLoadError, ModelSpec, load_model
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import run_edge, run_local
from edgediff.runtime.tiny import TinyConfig


@pytest.mark.slow
def test_tiny_is_deterministic_and_leaves_global_rng_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again = load_model("tiny")
    assert torch.equal(torch.rand(3), expected)
    for a, b in zip(tiny.backend.unet.parameters(), again.backend.unet.parameters()):
        assert torch.equal(a, b)
    # tiny-random: the same architecture with seeded random weights (the start of training)
    random0 = load_model("tiny-random")
    random1 = load_model(ModelSpec("tiny-random", tiny=TinyConfig(seed=1)))
    assert not torch.equal(next(random0.backend.unet.parameters()), next(random1.backend.unet.parameters()))
    assert not torch.equal(next(random0.backend.unet.parameters()), next(tiny.backend.unet.parameters()))
    assert tiny.image_size == 16 and tiny.latent_channels == 4 and tiny.vae_scale_factor == 2
    assert random0.image_size == 16 and tiny.identifier is None


@pytest.mark.slow
def test_embedded_personal_models_share_the_vae_and_carry_identifiers(tiny):
    models = {name: load_model(name) for name in ("tiny-italic", "tiny-bold", "tiny-small")}
    assert [m.identifier for m in models.values()] == ["sks", "zwx", "vkq"]
    for model in models.values():
        assert model.name in models
        for a, b in zip(model.backend.vae.parameters(), tiny.backend.vae.parameters()):
            assert torch.equal(a, b)
        assert not torch.equal(next(model.backend.unet.parameters()), next(tiny.backend.unet.parameters()))
    with pytest.raises(ValueError, match="unknown embedded model"):
        from edgediff.runtime.tiny import load_tiny

        load_tiny("tiny-nope")


@pytest.mark.slow
def test_trained_tiny_is_not_random(tiny):
    # the shipped weights denoise: a digit prompt gives ink on a dark background, not noise
    from edgediff.runtime.split import generate

    image = generate(GenerationRequest("a handwritten digit 1", steps=20, seed=0, guidance_scale=3.0), tiny).image
    gray = image.mean(axis=-1) / 255
    assert gray.shape == (16, 16) and (gray < 0.2).mean() > 0.4 and (gray > 0.6).mean() > 0.03


def test_tiny_tokenizer_is_local_and_encodes_prompts(tiny):
    ids = tiny.backend.tokenizer(["a dog"]).input_ids[0]
    assert ids[0] == 0 and ids[-1] == 1 and len(ids) == 2 + len("adog")
    embeds = tiny.backend.encode_prompt(["a dog", "a cat"])
    assert embeds.shape == (2, 64, 32) and not torch.equal(embeds[0], embeds[1])


@pytest.mark.slow
def test_saved_tiny_loads_as_a_pipeline_directory(tiny, tmp_path):
    tiny.save(tmp_path / "pipe")
    loaded = load_model(tmp_path / "pipe")
    assert loaded.name == str(tmp_path / "pipe") and loaded.scheduler_class == "DDIMScheduler"
    assert loaded.identifier is None
    bold = load_model("tiny-bold")
    bold.save(tmp_path / "bold")
    assert load_model(tmp_path / "bold").identifier == "zwx"  # personalization.json travels along
    request = GenerationRequest("a dog", steps=3, seed=1)
    assert torch.equal(run_edge(loaded, request, 0).latent, run_edge(tiny, request, 0).latent)
    # the loaded model as the device side of a split with the embedded model at the edge
    assert torch.equal(run_local(loaded, run_edge(tiny, request, 2)).latent, run_edge(tiny, request, 0).latent)


@pytest.mark.slow
def test_loads_as_diffusers_loads_sd_scheduler_configs_are_corrected(tiny, tmp_path):
    """The trained tiny weights with SD 1.5's PNDM config (no clip_sample, steps_offset 1), or
    with a DDIM config diffusers corrects (clip_sample true, steps_offset 0): edgediff gives
    diffusers' own pipeline's image, not noise."""
    from diffusers import DDIMScheduler, DiffusionPipeline, PNDMScheduler

    sd = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    request = GenerationRequest("a handwritten digit 3", steps=6, seed=1, guidance_scale=3.0)
    for i, scheduler in enumerate(
        [
            PNDMScheduler(**sd, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False),
            DDIMScheduler(**sd, clip_sample=True, steps_offset=0),
        ]
    ):
        tiny.save(tmp_path / "tiny")
        path = use_scheduler(tmp_path / "tiny", tmp_path / f"pipe{i}", scheduler)
        model = load_model(path)
        assert model.scheduler_config["steps_offset"] == 1 and not model.scheduler_config.get("clip_sample")
        pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        expected = pipe(
            request.prompt,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            generator=torch.Generator().manual_seed(request.seed),
            output_type="np",
        ).images[0]
        image = run_edge(model, request, 0).latent
        assert np.abs(model.decode(image)[0].astype(float) - (expected * 255).round()).max() <= 1


def write_index(path, index):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model_index.json").write_text(index if isinstance(index, str) else json.dumps(index))
    return path


FULL_INDEX = {
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "scheduler": ["diffusers", "DDIMScheduler"],
}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "no model_index.json"),
        (lambda p: (p / "file.txt").write_text("x") and p / "file.txt", "not a directory"),
        (lambda p: write_index(p / "m", "{not json"), "not valid JSON"),
        (lambda p: write_index(p / "m", "[1]"), "not a JSON object"),
        (lambda p: write_index(p / "m", {"unet": ["diffusers", "UNet2DModel"]}), "lacks vae, text_encoder"),
        (lambda p: write_index(p / "m", dict(FULL_INDEX, vae=["os", "system"])), "library 'os'"),
        (lambda p: write_index(p / "m", dict(FULL_INDEX, vae=["diffusers", "Nope"])), "unknown vae class"),
        (lambda p: write_index(p / "m", FULL_INDEX), "no unet/ folder"),
    ],
)
def test_not_a_pipeline_directory_gives_clear_error(tmp_path, make, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(make(tmp_path))


def test_broken_component_and_wrong_unet_named(tiny, tmp_path):
    tiny.save(tmp_path / "pipe")
    (tmp_path / "pipe/vae/config.json").write_text("{broken")
    with pytest.raises(ModelLoadError, match="vae/config.json' is not a valid JSON"):
        load_model(tmp_path / "pipe")
    with pytest.raises(ModelLoadError, match="dtype"):
        ModelSpec("tiny", dtype="int8")
