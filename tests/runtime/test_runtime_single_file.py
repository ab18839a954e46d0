"""Single-file checkpoints (original Stable Diffusion layout) loaded offline with a local config
directory, from the library and the CLI; the latent-space check of docs/serve-your-model.md."""

from __future__ import annotations

import numpy as np
import pytest
from ldm_checkpoint import write_config_dir, write_ldm_checkpoint
from PIL import Image

from edgediff.cli import main
from edgediff.runtime.backends import ModelLoadError
from edgediff.runtime.models import ModelSpec, load_model
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.single_file import latent_space, load_single_file
from edgediff.runtime.split import generate
from edgediff.runtime.tiny import TinyConfig


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """tiny-bold as one LDM-layout file, and tiny's pipeline directory without weight files."""
    root = tmp_path_factory.mktemp("single")
    bold = load_model("tiny-bold")
    checkpoint = write_ldm_checkpoint(bold, root / "bold.safetensors")
    config = write_config_dir(load_model("tiny"), root / "base-config")
    return bold, checkpoint, config


@pytest.mark.slow
def test_single_file_loads_offline_with_the_same_weights_and_images(files):
    import torch

    bold, checkpoint, config = files
    assert not list(config.rglob("*.safetensors"))  # only configs, tokenizer, scheduler
    loaded = load_single_file(str(checkpoint), config)
    for part in ("unet", "vae", "text_encoder"):
        want, got = getattr(bold.backend, part).state_dict(), getattr(loaded.backend, part).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want)
    request = GenerationRequest("a handwritten digit 3 in zwx style", steps=6, seed=3, guidance_scale=3)
    assert np.array_equal(generate(request, loaded).image, generate(request, bold).image)
    assert latent_space(loaded) == latent_space(bold)


@pytest.mark.slow
def test_latent_space_tells_models_apart(tiny):
    assert latent_space(load_model("tiny-bold"))["latent_channels"] == latent_space(tiny)["latent_channels"] == 4
    other = load_model(ModelSpec("tiny-random", tiny=TinyConfig(latent_channels=8)))
    assert latent_space(other)["latent_channels"] == 8
    assert latent_space(other)["vae_sha256"] != latent_space(tiny)["vae_sha256"]


def test_single_file_errors_name_the_problem(files, tmp_path):
    _, checkpoint, config = files
    with pytest.raises(ModelLoadError, match="--model-config"):
        load_single_file(str(checkpoint), None)
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_single_file(str(checkpoint), tmp_path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot load .*broken.safetensors"):
        load_single_file(str(broken), config)


@pytest.mark.slow
def test_cli_generate_from_a_single_file(files, tmp_path, capsys):
    bold, checkpoint, config = files
    out = tmp_path / "a.png"
    args = [
        "generate",
        "--prompt",
        "a handwritten digit 5 in zwx style",
        "--steps",
        "6",
        "--seed",
        "2",
        "--native-size",
    ]
    assert main([*args, "--model", str(checkpoint), "--model-config", str(config), "--out", str(out)]) == 0
    assert f"local on {checkpoint}" in capsys.readouterr().out
    assert main([*args, "--model", "tiny-bold", "--out", str(tmp_path / "b.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(tmp_path / "b.png")))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "{ckpt}"], "--model-config"),
        (["--model", "{ckpt}", "--model-config", "{tmp}"], "no model_index.json"),
        (["--model-config", "{config}"], "applies only to a single-file checkpoint"),
    ],
)
def test_cli_single_file_errors_exit_2(files, tmp_path, capsys, extra, message):
    _, checkpoint, config = files
    extra = [a.format(ckpt=checkpoint, config=config, tmp=tmp_path) for a in extra]
    out = tmp_path / "a.png"
    assert main(["generate", "--prompt", "x", "--steps", "2", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_cli_check_model(files, tmp_path, capsys):
    _, checkpoint, config = files
    args = ["check-model", "--model", str(checkpoint), "--model-config", str(config), "--cluster", "tiny"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "latent_channels" in text and "compatible: same latent space" in text
    other = tmp_path / "eight-channels"
    load_model(ModelSpec("tiny-random", tiny=TinyConfig(latent_channels=8))).save(other)
    with pytest.raises(SystemExit) as exit_:
        main(["check-model", "--model", str(other), "--cluster", "tiny"])
    assert exit_.value.code == 1
    text = capsys.readouterr().out
    assert "incompatible" in text and "latent_channels 8 vs 4" in text
