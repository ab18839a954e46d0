"""LoRA on the device: diffusers' own loader, images equal diffusers' pipeline with the same
LoRA, split = unsplit, an edge without the adapter, kohya files, and clear refusals."""

import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from edgediff.cli import main
from edgediff.personalize.lora import add_lora, save_lora
from edgediff.runtime.executor import initial_state
from edgediff.runtime.lora import LoraWeights, ModelLoadError, adapted_layers, read_lora, shipped_loras
from edgediff.runtime.models import ModelSpec, load_model
from edgediff.runtime.payload import decode_latent, encode_latent
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import generate, run_edge, run_local

pytest.importorskip("peft")  # the peft extra (in the test extras)

REQUEST = GenerationRequest("a handwritten digit 3 in sks style", steps=5, seed=3, guidance_scale=3.0)


@pytest.fixture(scope="module")
def lora_path(tmp_path_factory, tiny):
    """A rank-4 LoRA of the tiny model whose B matrices are seeded random (not the zero start),
    so the adapted model differs from the base, written as train-tiny --lora writes it."""
    unet, text_encoder = add_lora(tiny.backend.unet, tiny.backend.text_encoder, rank=4, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in (unet, text_encoder):
            for name, param in module.named_parameters():
                if "lora_B" in name:
                    param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    path = tmp_path_factory.mktemp("lora") / "style.safetensors"
    save_lora(path, unet, text_encoder, "sks")
    return path


def kohya(path, out):
    """The same LoRA in kohya's layout (``lora_unet_…lora_down.weight`` plus ``alpha``)."""
    state = {}
    for key, tensor in load_file(str(path)).items():  # part.layer.lora_A|B.weight
        part, layer, kind = re.fullmatch(r"(\w+)\.(.+)\.lora_(A|B)\.weight", key).groups()
        layer = layer if part == "unet" else f"text_model.{layer}"  # kohya names CLIP's full module path
        name = f"lora_{'unet' if part == 'unet' else 'te'}_{layer.replace('.', '_')}"
        state[f"{name}.lora_{'down' if kind == 'A' else 'up'}.weight"] = tensor
        state[f"{name}.alpha"] = torch.tensor(4.0)
    save_file(state, str(out))
    return out


def diffusers_image(path, scale, request=REQUEST):
    """diffusers' StableDiffusionPipeline on a fresh tiny model with the LoRA loaded."""
    from diffusers import StableDiffusionPipeline

    base = load_model("tiny").backend
    pipe = StableDiffusionPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        scheduler=base.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(path), adapter_name="user")
    pipe.set_adapters(["user"], adapter_weights=[scale])
    image = pipe(
        request.prompt,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance_scale,
        generator=torch.Generator().manual_seed(request.seed),
        height=16,
        width=16,
        output_type="np",
    ).images[0]
    return (image * 255).round()


@pytest.mark.slow
def test_lora_equals_diffusers_pipeline_and_splits_exactly(lora_path, tiny):
    model = load_model(ModelSpec("tiny", loras=(LoraWeights(str(lora_path), 0.8),)))
    assert model.identifier == "sks" and model.name == "tiny+style"
    assert adapted_layers(model.backend, "lora0") == 48 and adapted_layers(tiny.backend, "lora0") == 0
    unsplit = run_local(model, initial_state(model, REQUEST)).latent
    image = model.decode(unsplit)[0].astype(float)
    assert np.abs(image - diffusers_image(lora_path, 0.8)).max() <= 1
    assert np.abs(image - tiny.decode(run_local(tiny, initial_state(tiny, REQUEST)).latent)[0]).max() > 10
    for split in range(REQUEST.steps + 1):
        received = decode_latent(encode_latent(run_edge(model, REQUEST, split)))
        assert torch.equal(run_local(model, received).latent, unsplit)


@pytest.mark.slow
def test_device_with_lora_finishes_the_plain_edge_latent(lora_path, tiny):
    model = load_model(ModelSpec("tiny", loras=(LoraWeights(str(lora_path)),)))
    plain = generate(REQUEST, tiny).image.astype(float)
    personal = generate(REQUEST, model).image.astype(float)
    # the edge (no adapter) runs all steps: the plain image; none: the personal one; between: neither
    assert np.array_equal(generate(REQUEST, model, 0, edge_model=tiny).image, plain)
    assert np.array_equal(generate(REQUEST, model, REQUEST.steps, edge_model=tiny).image, personal)
    hybrid = generate(REQUEST, model, 2, edge_model=tiny).image.astype(float)
    assert np.abs(hybrid - plain).max() > 0 and np.abs(hybrid - personal).max() > 0


@pytest.mark.slow
def test_kohya_file_converted_by_diffusers_gives_the_same_images(lora_path, tmp_path):
    path = kohya(lora_path, tmp_path / "kohya.safetensors")
    info = read_lora(path)
    assert info.layout == "kohya" and info.layers == {"text_encoder": 8, "unet": 40} and info.ranks == (4,)
    model = load_model(ModelSpec("tiny", loras=(LoraWeights(str(path)),)))
    reference = load_model(ModelSpec("tiny", loras=(LoraWeights(str(lora_path)),)))
    image = generate(REQUEST, model).image.astype(float)
    assert np.abs(image - generate(REQUEST, reference).image).max() <= 1
    assert np.abs(image - diffusers_image(path, 1.0)).max() <= 1


@pytest.mark.slow  # the module's LoRA fixture loads and adapts tiny
def test_lora_file_described_and_parsed(lora_path, tmp_path):
    info = read_lora(lora_path)
    assert (info.layout, info.layers, info.ranks, info.identifier) == (
        "diffusers",
        {"text_encoder": 8, "unet": 40},
        (4,),
        "sks",
    )
    assert "adapts text_encoder (8 layers), unet (40 layers)" in info.describe()
    not_lora = tmp_path / "model.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(not_lora))
    assert read_lora(not_lora) is None
    assert LoraWeights.parse(f"{lora_path}:0.5") == LoraWeights(str(lora_path), 0.5)
    assert LoraWeights.parse("C:/styles/x.safetensors") == LoraWeights("C:/styles/x.safetensors", 1.0)
    with pytest.raises(ModelLoadError, match="scale"):
        LoraWeights.parse("x.safetensors:nan")


def test_shipped_loras_are_small_personalizations_of_tiny():
    assert shipped_loras() == ("tiny-bold-lora", "tiny-italic-lora", "tiny-small-lora")
    identifiers = {}
    for name in shipped_loras():
        lora = LoraWeights.parse(f"{name}:0.5")
        info = read_lora(lora.path)
        assert lora.scale == 0.5 and info.layers == {"text_encoder": 8, "unet": 40}
        identifiers[name] = info.identifier
    assert identifiers == {"tiny-bold-lora": "zwx", "tiny-italic-lora": "sks", "tiny-small-lora": "vkq"}


@pytest.mark.slow
def test_lora_for_another_architecture_refused_in_one_line(lora_path, tmp_path):
    state = {k.replace("down_blocks.1", "down_blocks.7"): v for k, v in load_file(str(lora_path)).items()}
    foreign = tmp_path / "foreign.safetensors"
    save_file(state, str(foreign))
    with pytest.raises(ModelLoadError, match="does not fit model 'tiny'"):
        load_model(ModelSpec("tiny", loras=(LoraWeights(str(foreign)),)))


@pytest.mark.slow
def test_cli_check_model_describes_a_lora_and_generate_refuses_it_as_a_model(lora_path, tmp_path, capsys):
    assert main(["check-model", "--model", str(lora_path), "--cluster", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "LoRA file (diffusers layout), rank 4, adapts text_encoder (8 layers), unet (40 layers)" in out
    assert "compatible: same latent space" in out
    png = tmp_path / "x.png"
    assert main(["generate", "--model", str(lora_path), "--prompt", "a", "--out", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a LoRA file" in err and "--lora" in err
    missing = ["--lora", str(tmp_path / "none.safetensors")]
    assert main(["generate", "--model", "tiny", *missing, "--prompt", "a", "--out", str(png)]) == 2
    assert "does not exist" in capsys.readouterr().err
    args = ["generate", "--model", "tiny", "--lora", f"{lora_path}:0.8", "--split", "2", "--steps", "5", "--seed", "3"]
    assert main([*args, "--guidance-scale", "3", "--prompt", REQUEST.prompt, "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "3 at the edge on tiny, payload" in out and "2 local on tiny+style" in out
