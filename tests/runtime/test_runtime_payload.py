import copy
import json
import struct

import pytest
import torch
from safetensors.torch import save

from edgediff.runtime.payload import PayloadError, decode_latent, encode_latent, payload_bits
from edgediff.runtime.request import GenerationRequest
from edgediff.runtime.split import run_edge


@pytest.fixture(scope="module")
def state(tiny):
    return run_edge(tiny, GenerationRequest("a dog", steps=6, seed=3, guidance_scale=4.0, negative_prompt="blur"), 2)


def metadata_of(data: bytes) -> dict:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])["__metadata__"]


def test_round_trip_keeps_everything(state):
    data = encode_latent(state)
    back = decode_latent(data)
    assert torch.equal(back.latent, state.latent) and back.latent.dtype == torch.float32
    assert back.request == state.request and back.split == 2 and back.steps == 6
    assert back.scheduler_class == state.scheduler_class == "DDIMScheduler"
    assert back.scheduler_config == json.loads(json.dumps(state.scheduler_config))
    meta = metadata_of(data)
    assert meta["format"] == "edgediff-latent" and meta["shape"] == "[1, 4, 8, 8]"
    assert float(meta["timestep"]) > 0 and payload_bits(state) == 8 * len(data)


def test_float16_halves_the_tensor(state):
    full, half = encode_latent(state), encode_latent(state, "float16")
    assert len(full) - len(half) == pytest.approx(4 * 8 * 8 * 2, abs=8)  # header padding aside
    back = decode_latent(half)
    assert back.latent.dtype == torch.float16
    assert torch.allclose(back.latent.float(), state.latent, rtol=1e-3, atol=1e-3)
    with pytest.raises(PayloadError, match="dtype"):
        encode_latent(state, "int8")


def rewrite(data: bytes, **changes) -> bytes:
    meta = metadata_of(data)
    meta.update(changes)
    meta = {k: v for k, v in meta.items() if v is not None}
    tensor = decode_latent(data).latent
    return save({"latent": tensor}, metadata=meta)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"", "too short"),
        (lambda d: b"not a payload at all", "header claims"),
        (lambda d: struct.pack("<Q", 5) + b"{{{{{" + b"x", "not valid JSON"),
        (lambda d: d[:-10], "tensor data is malformed"),
        (lambda d: rewrite(d, format="other"), "format"),
        (lambda d: rewrite(d, split=None), "lacks split"),
        (lambda d: rewrite(d, split="many"), "split must be an integer"),
        (lambda d: rewrite(d, split="9"), "split must be an integer in \\[0, 6\\]"),
        (lambda d: rewrite(d, shape="[1, 4, 16, 16]"), "shape"),
        (lambda d: rewrite(d, dtype="float16"), "metadata says float16"),
        (lambda d: rewrite(d, scheduler_class="UNet2DConditionModel"), "not a diffusers scheduler class"),
        (lambda d: rewrite(d, version="1"), "version '1' is not supported"),
        (
            lambda d: rewrite(d, scheduler_state='{"counter": {"tensor": "state.0", "dtype": "int64"}}'),
            "missing tensor",
        ),
        (lambda d: rewrite(d, scheduler_state='{"__class__": {"value": 1}}'), "invalid attribute"),
        (lambda d: rewrite(d, scheduler_state='{"x": {"value": {"a": 1}}}'), "scheduler_state x is malformed"),
        (lambda d: rewrite(d, request='{"prompt": "x", "steps": 0}'), "request is invalid"),
        (lambda d: rewrite(d, request='{"prompt": "x", "colour": 1}'), "request is invalid"),
        (lambda d: rewrite(d, steps="5"), "fewer than its request's steps"),
        (lambda d: save({"latent": torch.full((1, 4, 8, 8), float("nan"))}, metadata=metadata_of(d)), "non-finite"),
        (lambda d: save({"x": torch.zeros(1, 4, 8, 8)}, metadata=metadata_of(d)), "must hold a tensor 'latent'"),
        (
            lambda d: save({"latent": torch.zeros(1, 4, 8, 8), "x": torch.zeros(1)}, metadata=metadata_of(d)),
            "does not name",
        ),
        (
            lambda d: save({"latent": torch.zeros(1, 4, 8, 8), "generator": torch.zeros(3)}, metadata=metadata_of(d)),
            "generator",
        ),
        (lambda d: save({"latent": torch.zeros(1, 4, 8, 8)}), "no string metadata"),
    ],
)
def test_malformed_payload_rejected_with_clear_error(state, mutate, message):
    with pytest.raises(PayloadError, match=message):
        decode_latent(mutate(encode_latent(state)))


def test_oversized_and_non_bytes_rejected(state):
    data = encode_latent(state)
    with pytest.raises(PayloadError, match="limit"):
        decode_latent(data, max_bytes=len(data) - 1)
    with pytest.raises(PayloadError, match="bytes"):
        decode_latent("text")


def test_scheduler_state_and_generator_travel(tiny):
    """A stochastic multistep scheduler's state (history, counters, step index) and the noise
    generator's state survive the bytes; float16 halves the latent-shaped history too."""
    from edgediff.runtime.models import DiffusionModel
    from edgediff.runtime.schedulers import scheduler_type

    backend = copy.copy(tiny.backend)
    backend.scheduler = scheduler_type("DPMSolverMultistepScheduler").from_config(
        tiny.scheduler_config, algorithm_type="sde-dpmsolver++"
    )
    model = DiffusionModel("tiny-dpm-sde", backend)
    state = run_edge(model, GenerationRequest("a dog", steps=6, seed=3), 3)
    assert {"model_outputs", "lower_order_nums", "_step_index"} <= set(state.scheduler_state)
    assert state.generator_state is not None  # the SDE steps drew noise
    back = decode_latent(encode_latent(state))
    assert back.scheduler_state.keys() == state.scheduler_state.keys()
    for a, b in zip(back.scheduler_state["model_outputs"], state.scheduler_state["model_outputs"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert back.scheduler_state["_step_index"] == 3 and torch.equal(back.generator_state, state.generator_state)
    full, half = encode_latent(state), encode_latent(state, "float16")
    assert len(full) - len(half) == pytest.approx(3 * 4 * 8 * 8 * 2, abs=64)  # latent + two outputs
    assert decode_latent(half).scheduler_state["model_outputs"][-1].dtype == torch.float32  # restored dtype
