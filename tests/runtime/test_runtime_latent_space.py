"""Models that must match: the latent-space fingerprint in payloads and the device's check."""

import json
import struct

import pytest

from edgediff.runtime.latent_space import LatentSpaceMismatch, check, mismatches, validate
from edgediff.runtime.models import load_model
from edgediff.runtime.payload import PayloadError, decode_latent, encode_latent
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import finish, run_edge
from edgediff.service.client import load_edge_model


@pytest.fixture(scope="module")
def sd(sd_dir):
    return load_model(str(sd_dir))


@pytest.fixture(scope="module")
def foreign_payload(sd):
    """A payload of the Stable-Diffusion-shaped test model (another latent space than tiny's)."""
    return encode_latent(run_edge(sd, GenerationRequest("a cat", steps=4, seed=1, guidance_scale=1.0), 2))


def metadata_of(data: bytes) -> dict:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])["__metadata__"]


@pytest.mark.slow
def test_every_payload_carries_the_fingerprint_and_the_device_refuses_a_foreign_one(sd, tiny, foreign_payload):
    space = json.loads(metadata_of(foreign_payload)["latent_space"])
    assert space == sd.latent_space and space["model"] == str(sd.name)
    assert space["family"] == "stable-diffusion" and space["latent_channels"] == 4 and space["latent_size"] == 16
    state = decode_latent(foreign_payload)
    with pytest.raises(LatentSpaceMismatch) as err:
        finish(tiny, state)
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert repr(str(sd.name)) in message and "'tiny'" in message  # both sides named
    assert "vae_scaling_factor 0.18215 vs 0.654" in message and "latent_size 16 vs 8" in message
    assert finish(sd, state).shape == (32, 32, 3)  # the edge's own model finishes it


@pytest.mark.slow
def test_a_fine_tune_shares_its_base_latent_space(tiny):
    italic = load_model("tiny-italic")
    assert mismatches(tiny.latent_space, italic.latent_space) == []
    check(tiny.latent_space, italic)  # no error: a personalized model finishes the base's latents


def test_a_malformed_payload_fingerprint_is_refused(foreign_payload):
    from safetensors.torch import save

    meta = metadata_of(foreign_payload)
    meta["latent_space"] = json.dumps({"family": "stable-diffusion"})
    tensors = {"latent": decode_latent(foreign_payload).latent}
    with pytest.raises(PayloadError, match="payload latent_space must be a JSON object with keys"):
        decode_latent(save(tensors, metadata=meta))
    with pytest.raises(ValueError, match="latent_size must be an integer"):
        validate({**json.loads(metadata_of(foreign_payload)["latent_space"]), "latent_size": "16"})


def test_without_a_model_the_device_loads_the_edges_or_refuses(tiny):
    space = tiny.latent_space
    assert load_edge_model({"latent_space": space}, loader=lambda src: tiny) is tiny
    front_door = {"sites": {"s0": {"up": False, "info": None}, "s1": {"info": {"latent_space": space}}}}
    assert load_edge_model(front_door, loader=lambda src: src) == "tiny"  # serve --ray: a site's model
    unknown = {**space, "model": "/the/edge/only/model"}
    with pytest.raises(ValueError) as err:
        load_edge_model({"latent_space": unknown})
    message = str(err.value)
    assert message.startswith("--model is needed: the edge serves model '/the/edge/only/model'")
    assert "does not exist" in message and len(message.splitlines()) == 1
