"""The intermediate-latent payload: a :class:`LatentState` as bytes (safetensors).

One tensor, ``latent`` (shape ``(1, C, h, w)``, float32 or float16), and string metadata:

=================== ==========================================================
key                 value
=================== ==========================================================
``format``          ``edgediff-latent``
``version``         ``1``
``dtype``           ``float32`` or ``float16`` (the tensor's dtype)
``shape``           JSON list, e.g. ``[1, 4, 16, 16]``
``steps``           ``N``, total denoising steps
``split``           ``n``: steps n..1 are left (``N - n`` done)
``timestep``        the scheduler timestep of the next step (step ``n``); empty when n = 0
``scheduler_class`` e.g. ``DDIMScheduler``
``scheduler_config`` JSON object (the edge's scheduler; the device continues on it)
``request``         JSON object: prompt, steps, seed, guidance_scale, negative_prompt, size
=================== ==========================================================

float16 halves the payload; the device upcasts to its model's dtype, so a float16 payload
is not bit-identical to an unsplit run (float32 is). ``len(payload) * 8`` is the
``intermediate_bits`` of the instance file (docs/formats.md).
"""

from __future__ import annotations

import json
import math
import struct

from edgediff.errors import InputError
from edgediff.runtime.backends import RESUMABLE_SCHEDULERS
from edgediff.runtime.request import GenerationRequest, LatentState, RequestError

FORMAT = "edgediff-latent"
VERSION = "1"
PAYLOAD_DTYPES = ("float32", "float16")
MAX_PAYLOAD_BYTES = 64 * 2**20
_KEYS = ("format", "version", "dtype", "shape", "steps", "split", "timestep", "scheduler_class", "scheduler_config")


class PayloadError(InputError):
    """A latent payload is malformed; the message says what is wrong."""


def encode_latent(state: LatentState, dtype: str = "float32") -> bytes:
    """``state`` as payload bytes; ``dtype`` ``float16`` halves the size."""
    import torch
    from safetensors.torch import save

    if dtype not in PAYLOAD_DTYPES:
        raise PayloadError(f"payload dtype must be one of {', '.join(PAYLOAD_DTYPES)}, got {dtype!r}")
    latent = state.latent.detach().to("cpu", getattr(torch, dtype)).contiguous()
    timestep = ""
    if state.split > 0:
        import diffusers

        scheduler = getattr(diffusers, state.scheduler_class).from_config(state.scheduler_config)
        scheduler.set_timesteps(state.steps)
        timestep = str(float(scheduler.timesteps[state.steps_done]))
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype,
        "shape": json.dumps(list(latent.shape)),
        "steps": str(state.steps),
        "split": str(state.split),
        "timestep": timestep,
        "scheduler_class": state.scheduler_class,
        "scheduler_config": json.dumps(state.scheduler_config, sort_keys=True),
        "request": json.dumps(state.request.to_dict(), sort_keys=True),
    }
    return save({"latent": latent}, metadata=metadata)


def payload_bits(state: LatentState, dtype: str = "float32") -> int:
    """Size of ``state``'s payload in bits (the instance file's ``intermediate_bits``, docs/formats.md)."""
    return 8 * len(encode_latent(state, dtype))


def decode_latent(data: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> LatentState:
    """Parse and validate payload bytes; raises :class:`PayloadError` naming the problem."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise PayloadError(f"payload is {len(data)} bytes, more than the limit of {max_bytes}")
    metadata = _read_metadata(data)
    missing = [k for k in (*_KEYS, "request") if k not in metadata]
    if missing:
        raise PayloadError(f"payload metadata lacks {', '.join(missing)}")
    if metadata["format"] != FORMAT or metadata["version"] != VERSION:
        raise PayloadError(
            f"payload format is {metadata['format']!r} version {metadata['version']!r}, expected {FORMAT!r} {VERSION!r}"
        )
    if metadata["dtype"] not in PAYLOAD_DTYPES:
        raise PayloadError(f"payload dtype {metadata['dtype']!r} is not one of {', '.join(PAYLOAD_DTYPES)}")
    if metadata["scheduler_class"] not in RESUMABLE_SCHEDULERS:
        raise PayloadError(f"payload scheduler {metadata['scheduler_class']!r} is not one of {RESUMABLE_SCHEDULERS}")
    steps, split = _int(metadata, "steps"), _int(metadata, "split")
    shape = _json(metadata, "shape", list)
    scheduler_config = _json(metadata, "scheduler_config", dict)
    request_fields = _json(metadata, "request", dict)
    try:
        request = GenerationRequest(**request_fields)
    except (TypeError, RequestError) as err:
        raise PayloadError(f"payload request is invalid: {err}") from None
    if request.steps != steps:
        raise PayloadError(f"payload steps {steps} disagree with its request's steps {request.steps}")

    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise PayloadError(f"payload tensor data is malformed: {err}") from None
    if set(tensors) != {"latent"}:
        raise PayloadError(f"payload must hold exactly one tensor 'latent', got {sorted(tensors)}")
    latent = tensors["latent"]
    if str(latent.dtype).removeprefix("torch.") != metadata["dtype"]:
        raise PayloadError(f"payload tensor is {latent.dtype}, metadata says {metadata['dtype']}")
    if list(latent.shape) != shape:
        raise PayloadError(f"payload tensor has shape {list(latent.shape)}, metadata says {shape}")
    if not bool(latent.isfinite().all()):
        raise PayloadError("payload latent has non-finite values")
    try:
        return LatentState(latent, request, split, metadata["scheduler_class"], scheduler_config)
    except RequestError as err:
        raise PayloadError(f"payload is inconsistent: {err}") from None


def _read_metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: u64 little-endian header length, then a JSON header.
    if len(data) < 8:
        raise PayloadError(f"payload is {len(data)} bytes, too short for a safetensors header")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise PayloadError(f"payload header claims {length} bytes but only {len(data) - 8} follow")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PayloadError("payload header is not valid JSON (not a safetensors payload)") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise PayloadError("payload has no string metadata (not an edgediff latent payload)")
    return metadata


def _int(metadata: dict, key: str) -> int:
    try:
        return int(metadata[key])
    except ValueError:
        raise PayloadError(f"payload metadata {key} must be an integer, got {metadata[key]!r}") from None


def _json(metadata: dict, key: str, kind: type):
    try:
        value = json.loads(metadata[key])
    except json.JSONDecodeError:
        raise PayloadError(f"payload metadata {key} is not valid JSON") from None
    if not isinstance(value, kind):
        raise PayloadError(f"payload metadata {key} must be a JSON {kind.__name__}")
    if kind is list and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise PayloadError(f"payload metadata {key} must be a list of integers")
    if kind is dict and key == "request" and isinstance(value.get("guidance_scale"), float):
        if not math.isfinite(value["guidance_scale"]):
            raise PayloadError("payload request guidance_scale must be finite")
    return value
