"""What a split request is made of: the generation request and an intermediate latent state.

Step convention (docs/runtime.md): a request has ``N`` denoising steps, numbered N (first) down to
1 (last). A state with split ``n`` has run steps N..n+1 (``N - n`` steps done) and has
steps n..1 left; ``n = N`` is pure noise, ``n = 0`` is a finished latent ready to decode.
Step number ``s`` uses the scheduler's timestep at position ``N - s``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from edgediff.errors import InputError

DTYPES = ("float32", "float16", "bfloat16")  # a model's dtypes (the executor runs members in the model's)


class RequestError(InputError):
    """A generation request or state is invalid; the message names the field."""


@dataclass(frozen=True)
class GenerationRequest:
    """One text-to-image request. ``guidance_scale > 1`` turns on classifier-free guidance
    (as in diffusers); ``size`` ``None`` means the model's native image size.

    diffusers' generation options, with diffusers' defaults and meaning: ``width`` and
    ``height`` (pixels; default ``size``, else native), ``eta`` (passed to schedulers whose
    ``step`` takes it: DDIM's η, TCD's γ; diffusers' pipelines pass 0.0), ``guidance_rescale``
    (φ of "Common Diffusion Noise Schedules...", 0: off), ``clip_skip`` (skip that many final
    CLIP layers), ``scheduler`` (a diffusers scheduler class name, default the model's) and
    ``scheduler_options`` (config overrides, as ``Scheduler.from_config(config, **options)``)."""

    prompt: str
    steps: int = 50
    seed: int = 0
    guidance_scale: float = 7.5
    negative_prompt: str = ""
    size: int | None = None
    width: int | None = None
    height: int | None = None
    eta: float = 0.0
    guidance_rescale: float = 0.0
    clip_skip: int | None = None
    scheduler: str | None = None
    scheduler_options: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if not isinstance(self.prompt, str):
            raise RequestError("prompt must be a string")
        if not isinstance(self.negative_prompt, str):
            raise RequestError("negative_prompt must be a string")
        if not _is_int(self.steps) or self.steps < 1:
            raise RequestError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise RequestError(f"seed must be an integer in [0, 2^63), got {self.seed!r}")
        if isinstance(self.guidance_scale, bool) or not isinstance(self.guidance_scale, (int, float)):
            raise RequestError(f"guidance_scale must be a number, got {self.guidance_scale!r}")
        if not math.isfinite(self.guidance_scale) or self.guidance_scale < 0:
            raise RequestError(f"guidance_scale must be finite and >= 0, got {self.guidance_scale!r}")
        for name in ("size", "width", "height", "clip_skip"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise RequestError(f"{name} must be a positive integer, got {value!r}")
        for name in ("eta", "guidance_rescale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise RequestError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.scheduler is not None and (not isinstance(self.scheduler, str) or not self.scheduler):
            raise RequestError(f"scheduler must be a diffusers scheduler class name, got {self.scheduler!r}")
        options = self.scheduler_options
        if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
            raise RequestError("scheduler_options must be an object of option name -> value")
        for key, value in options.items():
            if not (value is None or isinstance(value, (bool, int, str)) or _finite(value)):
                raise RequestError(f"scheduler_options {key} must be a string, a finite number, a boolean or null")

    def image_shape(self, native: int) -> tuple[int, int]:
        """``(height, width)`` in pixels: ``height``/``width``, else ``size``, else ``native``."""
        side = native if self.size is None else self.size
        return (side if self.height is None else self.height), (side if self.width is None else self.width)

    @property
    def guided(self) -> bool:
        return self.guidance_scale > 1.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LatentState:
    """A request's latent after ``steps - split`` denoising steps, plus everything a device
    needs to continue: the request (prompt, guidance, seed), the exact scheduler (class and
    config) that produced the timestep schedule, the scheduler's state after those steps
    (``scheduler_state``: model-output history, step index, counters; see
    :mod:`edgediff.runtime.schedulers`) and the state of the request's noise generator.

    ``schedule_steps`` is the length of the scheduler's timestep schedule for
    ``request.steps`` inference steps: equal to it for most schedulers, more for those that
    call the denoiser twice per step (Heun: ``2N - 1``; PNDM: ``N + 1``). A step of the split
    convention is one denoiser call, so ``split`` counts those. ``latent_space`` is the
    fingerprint of the model that made the latent, which a device checks before finishing."""

    latent: object = field(repr=False)  # torch.Tensor (1, C, h, w)
    request: GenerationRequest
    split: int
    scheduler_class: str
    scheduler_config: dict = field(repr=False)
    scheduler_state: dict = field(default_factory=dict, repr=False)
    generator_state: object = field(default=None, repr=False)  # torch.ByteTensor of a CPU torch.Generator
    schedule_steps: int | None = None  # None: request.steps
    # the latent-space fingerprint of the model that made it (runtime.latent_space); None: unknown
    latent_space: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.schedule_steps is not None and (not _is_int(self.schedule_steps) or self.schedule_steps < 1):
            raise RequestError(f"schedule_steps must be an integer >= 1, got {self.schedule_steps!r}")
        if not _is_int(self.split) or not 0 <= self.split <= self.steps:
            raise RequestError(f"split must be an integer in [0, {self.steps}], got {self.split!r}")
        shape = tuple(getattr(self.latent, "shape", ()))
        if len(shape) != 4 or shape[0] != 1:
            raise RequestError(f"latent must have shape (1, C, h, w), got {shape}")

    @property
    def steps(self) -> int:
        """The trajectory's denoising steps (denoiser calls): ``schedule_steps``, by default
        the request's ``N``."""
        return self.request.steps if self.schedule_steps is None else self.schedule_steps

    @property
    def steps_done(self) -> int:
        return self.steps - self.split

    @property
    def finished(self) -> bool:
        return self.split == 0


def _finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
