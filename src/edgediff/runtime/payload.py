"""The intermediate-latent payload: a :class:`LatentState` as bytes (safetensors).

Tensors: ``latent`` (shape ``(1, C, h, w)``, float32 or float16), and where the scheduler
has state to carry, ``state.0``, ``state.1``, ... (its tensors: model-output history,
samples), and ``generator`` (uint8: the CPU noise generator's state, only when a stochastic
step has drawn from it). String metadata:

==================== ==========================================================
key                  value
==================== ==========================================================
``format``           ``edgediff-latent``
``version``          ``2`` (version 1 payloads carried no scheduler state; refused)
``dtype``            ``float32`` or ``float16`` (the latent's, and the latent-shaped
                     floating state tensors')
``shape``            JSON list, e.g. ``[1, 4, 16, 16]``
``steps``            the trajectory's denoising steps (the scheduler's schedule length;
                     the request's ``N`` except for Heun, ``2N - 1``, and PNDM, ``N + 1``)
``split``            ``n``: steps n..1 are left
``timestep``         the scheduler timestep of the next step; empty when n = 0
``scheduler_class``  e.g. ``DPMSolverMultistepScheduler``
``scheduler_config`` JSON object (the edge's scheduler; the device continues on it)
``scheduler_state``  JSON object: attribute -> encoded value (see :func:`_pack`)
``request``          JSON object: prompt, steps, seed, guidance_scale, negative_prompt, size
``latent_space``     JSON object: the fingerprint of the model that made the latent
                     (family, latent channels and size, VAE factor, scaling and shift,
                     noise-schedule digest, model id; :mod:`edgediff.runtime.latent_space`).
                     Written by every edgediff that has it; a payload without it is
                     read, but the device cannot check that its model fits
==================== ==========================================================

float16 halves the latent; the device upcasts, so a float16 payload is not bit-identical to
an unsplit run (float32 is). ``len(payload) * 8`` is the ``intermediate_bits`` of the
instance file (docs/formats.md).
"""

from __future__ import annotations

import json
import math
import re
import struct

from edgediff.errors import InputError
from edgediff.runtime.latent_space import validate as validate_latent_space
from edgediff.runtime.request import GenerationRequest, LatentState, RequestError
from edgediff.runtime.schedulers import SchedulerStateError, fresh_scheduler, scheduler_type

FORMAT = "edgediff-latent"
VERSION = "2"
PAYLOAD_DTYPES = ("float32", "float16")
MAX_PAYLOAD_BYTES = 64 * 2**20
_KEYS = (
    "format",
    "version",
    "dtype",
    "shape",
    "steps",
    "split",
    "timestep",
    "scheduler_class",
    "scheduler_config",
    "scheduler_state",
)
# dtypes a state tensor may have (what schedulers keep: floats, step indices, timesteps)
_STATE_DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64", "uint8", "bool")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PayloadError(InputError):
    """A latent payload is malformed; the message says what is wrong."""


def encode_latent(state: LatentState, dtype: str = "float32") -> bytes:
    """``state`` as payload bytes; ``dtype`` ``float16`` halves the latent (and the
    latent-shaped floating tensors of the scheduler state)."""
    import torch
    from safetensors.torch import save

    if dtype not in PAYLOAD_DTYPES:
        raise PayloadError(f"payload dtype must be one of {', '.join(PAYLOAD_DTYPES)}, got {dtype!r}")
    latent = state.latent.detach().to("cpu", getattr(torch, dtype)).contiguous()
    tensors = {"latent": latent}
    packer = _Packer(tensors, tuple(latent.shape), getattr(torch, dtype))
    scheduler_state = {name: packer.pack(value) for name, value in state.scheduler_state.items()}
    if state.generator_state is not None:
        tensors["generator"] = state.generator_state.detach().to("cpu", torch.uint8).contiguous()
    timestep = ""
    if state.split > 0:
        scheduler = fresh_scheduler(state.scheduler_class, state.scheduler_config, state.request.steps)
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
        "scheduler_state": json.dumps(scheduler_state, sort_keys=True),
        "request": json.dumps(state.request.to_dict(), sort_keys=True),
    }
    if state.latent_space is not None:
        metadata["latent_space"] = json.dumps(state.latent_space, sort_keys=True)
    return save(tensors, metadata=metadata)


class _Packer:
    """Encodes scheduler-state values as JSON, moving tensors into the payload's tensors:
    ``{"value": v}`` (None, bool, int, float, str), ``{"tensor": name, "dtype": d}``,
    ``{"array": name, "dtype": d}`` (NumPy), ``{"scalar": v, "dtype": d}`` (NumPy scalar),
    ``{"list": [...]}`` / ``{"tuple": [...]}``. ``dtype`` is the value's own dtype (the
    tensor may be stored as float16)."""

    def __init__(self, tensors: dict, latent_shape: tuple, half):
        self.tensors, self.latent_shape, self.half = tensors, latent_shape, half

    def pack(self, value):
        import numpy as np
        import torch

        if isinstance(value, torch.Tensor):
            stored = value.detach().to("cpu")
            if stored.is_floating_point() and tuple(stored.shape) == self.latent_shape:
                stored = stored.to(self.half)
            return {"tensor": self._add(stored), "dtype": str(value.dtype).removeprefix("torch.")}
        if isinstance(value, np.ndarray):
            return {"array": self._add(torch.from_numpy(np.ascontiguousarray(value))), "dtype": str(value.dtype)}
        if isinstance(value, np.generic):
            return {"scalar": value.item(), "dtype": str(value.dtype)}
        if isinstance(value, (list, tuple)):
            return {type(value).__name__: [self.pack(v) for v in value]}
        return {"value": value}

    def _add(self, tensor) -> str:
        name = f"state.{len(self.tensors) - 1}"
        self.tensors[name] = tensor.contiguous()
        return name


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
    if metadata.get("format") == FORMAT and metadata.get("version", VERSION) != VERSION:
        raise PayloadError(
            f"payload version {metadata['version']!r} is not supported (this edgediff reads version {VERSION}, "
            "which carries the scheduler state; re-run the edge part with the same version)"
        )
    missing = [k for k in (*_KEYS, "request") if k not in metadata]
    if missing:
        raise PayloadError(f"payload metadata lacks {', '.join(missing)}")
    if metadata["format"] != FORMAT:
        raise PayloadError(f"payload format is {metadata['format']!r}, expected {FORMAT!r}")
    if metadata["version"] != VERSION:
        raise PayloadError(f"payload version {metadata['version']!r} is not supported, expected {VERSION!r}")
    if metadata["dtype"] not in PAYLOAD_DTYPES:
        raise PayloadError(f"payload dtype {metadata['dtype']!r} is not one of {', '.join(PAYLOAD_DTYPES)}")
    try:
        scheduler_type(metadata["scheduler_class"])
    except SchedulerStateError as err:
        raise PayloadError(f"payload scheduler: {err}") from None
    steps, split = _int(metadata, "steps"), _int(metadata, "split")
    shape = _json(metadata, "shape", list)
    scheduler_config = _json(metadata, "scheduler_config", dict)
    packed_state = _json(metadata, "scheduler_state", dict)
    request_fields = _json(metadata, "request", dict)
    space = None
    if "latent_space" in metadata:
        try:
            space = validate_latent_space(_json(metadata, "latent_space", dict), "payload latent_space")
        except InputError as err:
            raise PayloadError(str(err)) from None
    try:
        request = GenerationRequest(**request_fields)
    except (TypeError, RequestError) as err:
        raise PayloadError(f"payload request is invalid: {err}") from None
    if steps < request.steps:
        raise PayloadError(f"payload steps {steps} are fewer than its request's steps {request.steps}")

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise PayloadError(f"payload tensor data is malformed: {err}") from None
    if "latent" not in tensors:
        raise PayloadError(f"payload must hold a tensor 'latent', got {sorted(tensors)}")
    latent = tensors.pop("latent")
    generator_state = tensors.pop("generator", None)
    if generator_state is not None and (
        generator_state.dtype != torch.uint8 or generator_state.shape != torch.Generator().get_state().shape
    ):
        raise PayloadError("payload generator state is not a CPU torch.Generator state (uint8)")
    if str(latent.dtype).removeprefix("torch.") != metadata["dtype"]:
        raise PayloadError(f"payload tensor is {latent.dtype}, metadata says {metadata['dtype']}")
    if list(latent.shape) != shape:
        raise PayloadError(f"payload tensor has shape {list(latent.shape)}, metadata says {shape}")
    if not bool(latent.isfinite().all()):
        raise PayloadError("payload latent has non-finite values")
    unpacker = _Unpacker(tensors)
    scheduler_state = {}
    for name, packed in packed_state.items():
        if not _NAME.match(name) or name.startswith("__"):
            raise PayloadError(f"payload scheduler_state names an invalid attribute {name!r}")
        scheduler_state[name] = unpacker.unpack(packed, name)
    if set(tensors) != unpacker.used:
        raise PayloadError(
            f"payload has tensors its scheduler_state does not name: {sorted(set(tensors) - unpacker.used)}"
        )
    try:
        return LatentState(
            latent,
            request,
            split,
            metadata["scheduler_class"],
            scheduler_config,
            scheduler_state,
            generator_state,
            steps,
            space,
        )
    except RequestError as err:
        raise PayloadError(f"payload is inconsistent: {err}") from None


class _Unpacker:
    """Decodes what :class:`_Packer` wrote, checking every entry; records the tensors used."""

    def __init__(self, tensors: dict):
        self.tensors, self.used = tensors, set()

    def unpack(self, packed, name: str):
        import numpy as np
        import torch

        if not isinstance(packed, dict) or len(packed) not in (1, 2):
            raise PayloadError(f"payload scheduler_state {name} is malformed")
        if "value" in packed and len(packed) == 1:
            value = packed["value"]
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
        elif "list" in packed or "tuple" in packed:
            items = packed.get("list", packed.get("tuple"))
            if isinstance(items, list) and len(packed) == 1:
                values = [self.unpack(item, name) for item in items]
                return values if "list" in packed else tuple(values)
        elif packed.get("dtype") in _STATE_DTYPES:
            dtype = packed["dtype"]
            if "tensor" in packed or "array" in packed:
                key = packed.get("tensor", packed.get("array"))
                if key not in self.tensors or key in self.used:
                    raise PayloadError(f"payload scheduler_state {name} names a missing tensor {key!r}")
                self.used.add(key)
                tensor = self.tensors[key]
                if "tensor" in packed:
                    return tensor.to(getattr(torch, dtype))
                if dtype != "bfloat16":
                    return tensor.numpy().astype(dtype)
            elif "scalar" in packed and isinstance(packed["scalar"], (bool, int, float)) and dtype != "bfloat16":
                return np.dtype(dtype).type(packed["scalar"])
        raise PayloadError(f"payload scheduler_state {name} is malformed")


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
