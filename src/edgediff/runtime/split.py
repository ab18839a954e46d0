"""Split inference as library calls (paper Sec. III-C; step convention of docs/runtime.md).

``run_edge`` runs steps N..n+1 of a request with the cluster-wide model and returns the
intermediate :class:`LatentState`; ``run_local`` runs steps n..1 with the device's own model
(re-encoding the prompt with its own text encoder); ``finish`` also decodes the image.
``generate`` chains them in one process, passing the latent through the payload bytes the
way a server would. With one model on both sides and the same seed the split result is bit
for bit the unsplit one: both halves run through the same single-member executor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from edgediff.runtime.executor import BatchedExecutor, initial_state
from edgediff.runtime.latent_space import check as check_latent_space
from edgediff.runtime.models import DiffusionModel
from edgediff.runtime.request import GenerationRequest, LatentState, RequestError


def run_edge(
    model: DiffusionModel, request: GenerationRequest, split: int, start: LatentState | None = None
) -> LatentState:
    """Steps N..split+1 of ``request`` on ``model`` (from ``start`` if given, e.g. a cached
    latent); returns the state with ``split`` steps left. ``N`` is the length of the
    scheduler's schedule (``request.steps`` but for Heun and PNDM, docs/runtime.md)."""
    if isinstance(split, bool) or not isinstance(split, int) or split < 0:
        raise RequestError(f"split must be an integer >= 0, got {split!r}")
    return _run_one(model, request, split, start)


def run_local(model: DiffusionModel, state: LatentState) -> LatentState:
    """The remaining steps ``state.split``..1 on the device's ``model``; returns the finished
    state. Raises :class:`~edgediff.runtime.latent_space.LatentSpaceMismatch` (before any
    step) if the state was made by a model whose latent space ``model`` does not share."""
    if state.latent_space is not None and not state.finished:
        check_latent_space(state.latent_space, model)
    return _run_one(model, state.request, 0, state)


def _run_one(model: DiffusionModel, request: GenerationRequest, stop: int, start: LatentState | None) -> LatentState:
    executor = BatchedExecutor(model)
    executor.add("one", request, stop, start)
    return executor.run()["one"]  # raises GenerationFailed if the member failed


def finish(model: DiffusionModel, state: LatentState):
    """Run the remaining steps and decode: a uint8 RGB image ``(H, W, 3)``."""
    return model.decode(run_local(model, state).latent)[0]


def image_requests(request: GenerationRequest, images: int) -> list[GenerationRequest]:
    """``images`` images of one prompt: the request with seeds ``seed, seed + 1, ...``, which
    equal diffusers' ``num_images_per_prompt=images`` with one generator per image
    (``generator=[torch.Generator().manual_seed(seed + i) ...]``)."""
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise RequestError(f"images must be an integer >= 1, got {images!r}")
    if request.seed + images > 2**63:
        raise RequestError(f"seed + images must stay below 2^63, got {request.seed} + {images}")
    return [replace(request, seed=request.seed + i) for i in range(images)]


@dataclass(frozen=True)
class GenerationResult:
    """An image and how it was made (times in seconds; ``payload_bits`` 0 when all local)."""

    image: object  # uint8 NumPy array (H, W, 3)
    split: int
    steps: int
    payload_bits: int
    edge_s: float
    local_s: float

    @property
    def offloaded_steps(self) -> int:
        return self.steps - self.split


def generate(
    request: GenerationRequest,
    model: DiffusionModel,
    split: int | None = None,
    edge_model: DiffusionModel | None = None,
    payload_dtype: str = "float32",
) -> GenerationResult:
    """One request in-process: steps N..split+1 on ``edge_model`` (default ``model``), the
    latent encoded to payload bytes and decoded, steps split..1 on ``model``, then decoded.
    ``split`` ``None`` or ``N`` runs everything locally (``N``: the schedule's length)."""
    from edgediff.runtime.payload import decode_latent, encode_latent

    start = time.perf_counter()
    if split is None or split == initial_state(edge_model or model, request).steps:
        state, bits = initial_state(model, request), 0
    else:
        payload = encode_latent(run_edge(edge_model or model, request, split), dtype=payload_dtype)
        state, bits = decode_latent(payload), 8 * len(payload)
    edge_s = time.perf_counter() - start
    image = finish(model, state)
    return GenerationResult(image, state.split, state.steps, bits, edge_s, time.perf_counter() - start - edge_s)
