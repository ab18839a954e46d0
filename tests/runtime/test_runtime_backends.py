import json
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import torch

from edgediff.runtime.backends import Conditioning, DenoiserBackend, UNetBackend
from edgediff.runtime.executor import BatchedExecutor
from edgediff.runtime.models import BACKENDS, DEFAULT_FAMILY, ModelLoadError, backend_class, family_of, load_model
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import generate


def close(a, b, rel=1e-5):
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) <= rel * scale


@pytest.mark.slow
def test_unet_backend_batched_call_equals_per_member_calls(tiny):
    backend = tiny.backend
    assert isinstance(backend, UNetBackend)
    prompts = ["a handwritten digit 1", "a handwritten digit 7", "x"]
    conditioning = backend.condition(prompts)
    members = [backend.condition([p]) for p in prompts]
    assert len(conditioning) == 3 and len(Conditioning.cat(members)) == 3
    assert close(Conditioning.cat(members)["encoder_hidden_states"], conditioning["encoder_hidden_states"])
    latents = torch.randn((3, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    timesteps = torch.tensor([901, 501, 21])  # members at different steps
    batched = backend.predict(latents, timesteps, conditioning)
    alone = [backend.predict(latents[i : i + 1], timesteps[i : i + 1], members[i]) for i in range(3)]
    assert batched.shape == latents.shape and close(batched, torch.cat(alone))


def test_unet_backend_puts_negative_prompts_first_and_guides(tiny):
    backend = tiny.backend
    guided = backend.condition(["a dog"], ["blurry"])["encoder_hidden_states"]
    assert torch.equal(guided, backend.encode_prompt(["blurry", "a dog"]))
    uncond, cond = torch.zeros(1, 4, 8, 8), torch.ones(1, 4, 8, 8)
    assert torch.equal(backend.guide(uncond, cond, 1.0), cond)
    assert torch.equal(backend.guide(uncond, cond, 7.5), 7.5 * cond)


@pytest.mark.slow
def test_a_denoiser_worker_places_only_the_denoiser():
    backend = load_model("tiny").backend  # its own copy: this test casts it
    backend.place("cpu", "float64", only_denoiser=True)
    assert backend.unet.dtype == torch.float64 and backend.dtype == "float64"
    assert backend.vae.dtype == backend.text_encoder.dtype == torch.float32  # left as they were
    backend.place("cpu", "float64")
    assert backend.vae.dtype == backend.text_encoder.dtype == torch.float64


def test_registry_picks_the_family_and_refuses_an_unknown_one():
    assert backend_class("stable-diffusion") is UNetBackend
    assert family_of({"_class_name": "StableDiffusionPipeline"}) == "stable-diffusion"
    assert family_of({"unet": ["diffusers", "UNet2DConditionModel"]}) == DEFAULT_FAMILY
    with pytest.raises(ModelLoadError, match="unknown model family 'flux'; known families: stable-diffusion"):
        backend_class("flux")


@dataclass(eq=False)
class CountingBackend(DenoiserBackend):
    """A model family with no UNet, no text encoder and no VAE: the output pulls the latent
    towards a per-prompt constant. Shows that the executor needs nothing but the interface."""

    components: ClassVar[tuple[str, ...]] = ("scheduler",)
    pipelines: ClassVar[tuple[str, ...]] = ("CountingPipeline",)

    scheduler: object
    device: str = "cpu"
    dtype: str = "float32"
    calls: list = field(default_factory=list)  # rows of every predict call

    @classmethod
    def from_components(cls, path, parts):
        return cls(parts["scheduler"])

    modules = ()
    latent_channels = 3
    vae_scale_factor = 1
    image_size = 4
    size_multiple = 2

    def condition(self, prompts, negative_prompts=()):
        return Conditioning({"length": torch.tensor([float(len(p)) for p in [*negative_prompts, *prompts]])})

    def predict(self, latents, timesteps, conditioning):
        self.calls.append(len(latents))
        return latents - conditioning["length"].view(-1, 1, 1, 1) / 10 + timesteps.view(-1, 1, 1, 1) / 1e4

    def decode(self, latents):
        images = (latents.clamp(-1, 1) + 1) * 127.5
        return images.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def save(self, directory):
        self.scheduler.save_pretrained(f"{directory}/scheduler")
        index = {"_class_name": "CountingPipeline", "scheduler": ["diffusers", self.scheduler_class]}
        (directory / "model_index.json").write_text(json.dumps(index))


def test_a_new_family_is_one_backend_class_and_one_registry_line(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "counting", CountingBackend)
    CountingBackend(tiny.backend.new_scheduler()).save(tmp_path)
    model = load_model(tmp_path)
    assert isinstance(model.backend, CountingBackend) and model.latent_channels == 3
    request = GenerationRequest("a dog", steps=4, seed=3, guidance_scale=2.0)
    unsplit = generate(request, model).image
    assert unsplit.shape == (4, 4, 3)
    assert (generate(request, model, split=2).image == unsplit).all()
    # one denoiser call per step for the whole batch; a guided member contributes two rows
    model.backend.calls.clear()
    executor = BatchedExecutor(model)
    executor.add("guided", request, 0)
    executor.add("plain", GenerationRequest("a cat", steps=4, seed=3, guidance_scale=1.0), 2)
    executor.run()
    assert model.backend.calls == [3, 3, 2, 2]
