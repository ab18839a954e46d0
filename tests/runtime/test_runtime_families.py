"""Model families against their diffusers pipelines, and bad model input refused clearly."""

import copy
import json
import shutil

import diffusers
import numpy as np
import pytest
import torch
from runtime_dirs import build_sd3_directory, build_sdxl_directory

from edgediff.cli import main
from edgediff.runtime.executor import BatchedExecutor, GenerationFailed, initial_state
from edgediff.runtime.models import DiffusionModel, ModelLoadError, load_model
from edgediff.runtime.payload import decode_latent, encode_latent
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.sd3 import SD3Backend
from edgediff.runtime.sdxl import SDXLBackend
from edgediff.runtime.split import run_edge, run_local


def close(a, b, rel=1e-5):
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) <= rel * scale


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    return build_sdxl_directory(tmp_path_factory.mktemp("sdxl") / "pipe")


@pytest.fixture(scope="module")
def sd3_dir(tmp_path_factory):
    return build_sd3_directory(tmp_path_factory.mktemp("sd3") / "pipe")


# family -> (directory fixture, backend class, what diffusers' from_pretrained needs told)
FAMILIES = {
    "sdxl": ("sdxl_dir", SDXLBackend, {}),
    "sd3": ("sd3_dir", SD3Backend, {"text_encoder_3": None, "tokenizer_3": None}),  # saved without T5
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("guidance, negative", [(5.0, ""), (1.0, ""), (5.0, "blurry")])
@pytest.mark.slow
def test_family_equals_its_pipeline_and_splits_exactly(request, family, guidance, negative):
    fixture, backend, absent = FAMILIES[family]
    directory = request.getfixturevalue(fixture)
    model = load_model(directory)
    assert isinstance(model.backend, backend) and model.image_size == 32
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(directory), local_files_only=True, **absent)
    pipe.set_progress_bar_config(disable=True)
    generation = GenerationRequest("a cat", steps=3, seed=2, guidance_scale=guidance, negative_prompt=negative)
    unsplit = run_local(model, initial_state(model, generation)).latent

    def call(output_type):
        return pipe(
            generation.prompt,
            num_inference_steps=generation.steps,
            guidance_scale=guidance,
            negative_prompt=negative or None,  # "" is the pipelines' default (SDXL: zero embeddings)
            generator=torch.Generator().manual_seed(generation.seed),
            output_type=output_type,
        ).images

    assert close(unsplit, call("latent"))
    assert np.abs(model.decode(unsplit)[0].astype(float) - (call("np")[0] * 255).round()).max() <= 1
    for split in range(generation.steps + 1):
        received = decode_latent(encode_latent(run_edge(model, generation, split)))
        assert torch.equal(run_local(model, received).latent, unsplit)


@pytest.mark.slow
def test_sdxl_generate_and_calibrate_from_the_cli(sdxl_dir, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert (
        main(
            [
                "generate",
                "--model",
                str(sdxl_dir),
                "--prompt",
                "a cat",
                "--steps",
                "2",
                "--split",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 0
    generated = capsys.readouterr()
    assert "accelerate" not in generated.err and "Loading" not in generated.err  # library chatter hidden
    assert main(["calibrate", "--model", str(sdxl_dir), "--batches", "1,2", "--repeats", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["k"] is not None and "accelerate" not in captured.err


def test_unsupported_pipeline_class_named_with_the_supported_ones(sd_dir, tmp_path, capsys):
    path = shutil.copytree(sd_dir, tmp_path / "pipe")
    index = json.loads((path / "model_index.json").read_text())
    (path / "model_index.json").write_text(json.dumps(dict(index, _class_name="KandinskyPipeline")))
    with pytest.raises(
        ModelLoadError, match="unsupported pipeline class 'KandinskyPipeline'; supported: .*StableDiffusionXLPipeline"
    ):
        load_model(path)
    assert main(["generate", "--model", str(path), "--prompt", "x", "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_non_finite_weights_refused_at_load(sd_dir, tmp_path, capsys):
    model = load_model(sd_dir)
    with torch.no_grad():
        next(model.backend.unet.parameters()).view(-1)[0] = float("nan")
    model.save(tmp_path / "nan")
    with pytest.raises(ModelLoadError, match="UNet2DConditionModel weight .* non-finite"):
        load_model(tmp_path / "nan")
    assert main(["generate", "--model", str(tmp_path / "nan"), "--prompt", "x", "--out", str(tmp_path / "x.png")]) == 2
    assert "non-finite" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda p: (p / "tokenizer/tokenizer.json").unlink(), "no tokens for ordinary words"),
        (
            lambda p: (p / "tokenizer/tokenizer_config.json").write_text(
                json.dumps(dict(json.loads((p / "tokenizer/tokenizer_config.json").read_text()), model_max_length=512))
            ),
            "pads to 512 tokens, its text encoder has 77 positions",
        ),
    ],
)
@pytest.mark.slow
def test_tokenizer_that_does_not_fit_its_text_encoder_refused(sd_dir, tmp_path, break_it, message):
    path = shutil.copytree(sd_dir, tmp_path / "pipe")
    break_it(path)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_non_finite_latent_fails_that_member_only(tiny):
    backend = copy.copy(tiny.backend)
    predict = backend.predict

    def poisoned(latents, timesteps, conditioning):  # the first row of every batch turns NaN
        out = predict(latents, timesteps, conditioning).clone()
        out[0] = float("nan")
        return out

    backend.predict = poisoned
    model = DiffusionModel("tiny-poisoned", backend)
    bad, good = GenerationRequest("a", steps=3, seed=1, guidance_scale=1.0), GenerationRequest("b", steps=3, seed=2)
    executor = BatchedExecutor(model)
    executor.add("bad", bad, 0)
    executor.add("good", good, 0)
    assert executor.step() == [] and [k for k, _ in executor.pop_failed()] == ["bad"]
    assert executor.active == ["good"]
    with pytest.raises(GenerationFailed, match="non-finite"):
        run_edge(model, bad, 0)


def test_unknown_architecture_named_with_the_known_ones():
    with pytest.raises(ModelLoadError, match="unknown architecture 'arch:sd9'; known: arch:sd15, arch:sdxl"):
        load_model("arch:sd9")


@pytest.mark.slow
def test_sdxl_at_another_size_equals_its_pipeline(sdxl_dir):
    """SDXL's size and crop time ids follow the request's width and height, as in diffusers."""
    model = load_model(sdxl_dir)
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(sdxl_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    generation = GenerationRequest("a cat", steps=3, seed=2, guidance_scale=5.0, width=48, height=24)
    unsplit = run_local(model, initial_state(model, generation)).latent
    theirs = pipe(
        generation.prompt,
        num_inference_steps=3,
        guidance_scale=5.0,
        width=48,
        height=24,
        generator=torch.Generator().manual_seed(2),
        output_type="latent",
    ).images
    assert unsplit.shape == theirs.shape and close(unsplit, theirs)
    received = decode_latent(encode_latent(run_edge(model, generation, 1)))
    assert torch.equal(run_local(model, received).latent, unsplit)
