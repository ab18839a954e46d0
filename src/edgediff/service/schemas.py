"""HTTP bodies of the service (pydantic): what a client sends and what it gets back.

Strict: unknown fields are rejected, numbers must be JSON numbers (not strings, not booleans;
an integer field takes no ``20.0``) and finite, and every limit names its field, so a bad
body gets a 422 whose message names the field (see ``app``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgediff.core.profiles import PRESETS

MAX_PROMPT_CHARS = 1000
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0
MAX_SIDE = 4096  # pixels: above any model's trained size, below what would exhaust an edge's memory on a typo
MAX_IMAGES = 8  # images per request: each is a job of its own in the window
STATUSES = ("queued", "running", "done", "denied", "failed")
TERMINAL = ("done", "denied", "failed")
SITE_NAME = r"^[a-z0-9_]+$"  # no "-": a request id is "<site>-<hex>"
SITE_NAME_CHARS = 64


class Profile(BaseModel):
    """A device's per-step latency ``L(1) = k + h`` (s); an instance file user's ``k``, ``h`` (docs/formats.md)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    k: Annotated[float, Field(ge=0, le=1e4, allow_inf_nan=False)]
    h: Annotated[float, Field(ge=-1e4, le=1e4, allow_inf_nan=False)]

    @model_validator(mode="after")
    def _positive(self):
        if self.k + self.h <= 0:
            raise ValueError("local step latency k + h must be positive")
        return self


class SubmitRequest(BaseModel):
    """``POST /v1/requests``: one text-to-image request with the device's profile and α.

    Exactly one of ``profile`` (measured ``k``, ``h``) and ``preset`` (a row of the paper's
    profile table, ``row3`` .. ``row10``, or ``edge-h100``) must be given. ``site`` names the
    site to run at behind a front door (docs/service.md, "Deployment"). ``images`` = n makes
    n requests of seeds ``seed`` .. ``seed + n - 1``, accepted together or not at all.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 50
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    images: Annotated[int, Field(ge=1, le=MAX_IMAGES)] = 1  # seeds seed, seed + 1, ...: one job each
    alpha: Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
    profile: Profile | None = None
    preset: Literal[tuple(PRESETS)] | None = None  # type: ignore[valid-type]
    negative_prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] = ""
    guidance_scale: Annotated[float, Field(ge=0, le=MAX_GUIDANCE, allow_inf_nan=False)] = 7.5
    # diffusers' generation options (docs/service.md, "HTTP API"); omitted: diffusers' defaults
    width: Annotated[int, Field(ge=1, le=MAX_SIDE)] | None = None
    height: Annotated[int, Field(ge=1, le=MAX_SIDE)] | None = None
    eta: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    guidance_rescale: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    clip_skip: Annotated[int, Field(ge=1, le=64)] | None = None
    scheduler: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_]+$")] | None = None
    scheduler_options: dict[str, bool | int | Annotated[float, Field(allow_inf_nan=False)] | str | None] = {}
    # behind a front door (edgediff serve --ray): the site to run at; omitted, the front door picks one
    site: Annotated[str, Field(min_length=1, max_length=SITE_NAME_CHARS, pattern=SITE_NAME)] | None = None

    @model_validator(mode="after")
    def _one_profile(self):
        if (self.profile is None) == (self.preset is None):
            raise ValueError("give exactly one of profile {k, h} and preset")
        return self

    def generation_options(self) -> dict:
        """The diffusers options given (not at their defaults), as ``GenerationRequest`` fields."""
        names = ("width", "height", "eta", "guidance_rescale", "clip_skip", "scheduler", "scheduler_options")
        return {name: getattr(self, name) for name in names if getattr(self, name) not in (None, 0.0, {})}

    def device_profile(self) -> tuple[float, float]:
        if self.profile is not None:
            return self.profile.k, self.profile.h
        preset = PRESETS[self.preset]
        return preset.k, preset.h


class JobStatus(BaseModel):
    """A request's state. ``steps`` is what the client asked for; ``calls`` (``N``) the
    denoiser calls of its schedule, the unit of ``split``, ``offloaded_steps`` (``N - split``,
    the calls the edge runs) and ``cache_hit_step``. ``split`` is the decision (``N`` when
    denied: run locally); ``cache_hit_step`` > 0 means the edge started from a cached latent
    that many calls in; ``cache_miss`` says why a granted request started from noise with
    the cache on (the reuse rule that refused every cached latent)."""

    id: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    steps: int
    window: int | None = None
    granted: bool | None = None
    split: int | None = None
    offloaded_steps: int | None = None
    calls: int | None = None
    predicted_latency_s: float | None = None
    predicted_pai: float | None = None
    cache_hit_step: int = 0
    cache_miss: str | None = None
    reason: str | None = None
    queued_s: float | None = None
    edge_s: float | None = None
    payload_bytes: int | None = None
    predicted_handoff_s: float | None = None
    predicted_edge_s: float | None = None
    handoff_s: float | None = None
    measured_latency_s: float | None = None


class Submitted(JobStatus):
    """The 202 of ``POST /v1/requests``: the first image's status and ``ids``, every image's
    request id in seed order (``ids[0] == id``); each is polled as a request of its own."""

    ids: list[str]


class MeasuredLatency(BaseModel):
    """What the device measured of a request the edge helped with: submit to decoded image."""

    model_config = ConfigDict(extra="forbid")
    latency_s: Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ErrorBody(BaseModel):
    error: str
