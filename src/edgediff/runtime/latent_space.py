"""The latent space a split request lives in, and the check that two models share it.

A device can finish an edge's latent only with a model that reads latents the same way:
the same model family (denoiser conditioning and latent layout), latent channels and native
latent size, VAE factor and scaling (and shift), and the same training noise schedule (what
the denoiser's output means: ``prediction_type``, betas, ``num_train_timesteps``). The edge
publishes this fingerprint in ``/v1/info`` and in every payload (``latent_space``); the
device compares it with its own model before finishing and refuses a mismatch in one line
naming both sides. The sampling scheduler (class, step spacing) need not match: the device
continues on the edge's, which the payload carries. ``model`` (the edge's model id) is
informational: a personalized device model has another name by design. See docs/runtime.md.
"""

from __future__ import annotations

import hashlib
import json
import math

from edgediff.errors import InputError

#: fields two models must share for one to finish the other's latents (``model`` is not one)
MUST_MATCH = (
    "family",
    "latent_channels",
    "latent_size",
    "vae_scale_factor",
    "vae_scaling_factor",
    "vae_shift_factor",
    "noise_schedule",
)
FIELDS = (*MUST_MATCH, "model")
# scheduler config keys that describe how the denoiser was trained (not how it is sampled)
_TRAINING_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "rescale_betas_zero_snr",
    "shift",
)


class LatentSpaceMismatch(InputError):
    """The device's model cannot finish the edge's latent; the message names both sides."""


def noise_schedule(scheduler_config: dict) -> str:
    """A short digest of the training noise schedule in ``scheduler_config`` (the keys of
    :data:`_TRAINING_KEYS` it has), so that DDIM and DPM-Solver configs of one model agree."""
    training = {k: scheduler_config[k] for k in _TRAINING_KEYS if k in scheduler_config}
    if "prediction_type" not in training:  # diffusers' default for every scheduler that has one
        training["prediction_type"] = "epsilon"
    text = json.dumps(training, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def fingerprint(model) -> dict:
    """The latent-space fingerprint of a loaded ``DiffusionModel`` (JSON-ready)."""
    from edgediff.runtime.models import family_name

    backend = model.backend
    vae_config = getattr(getattr(backend, "vae", None), "config", {})  # a family without a VAE has no scaling
    shift, scaling = vae_config.get("shift_factor"), vae_config.get("scaling_factor")
    return {
        "family": family_name(backend),
        "latent_channels": int(backend.latent_channels),
        "latent_size": int(backend.image_size // backend.vae_scale_factor),
        "vae_scale_factor": int(backend.vae_scale_factor),
        "vae_scaling_factor": None if scaling is None else float(scaling),
        "vae_shift_factor": None if shift is None else float(shift),
        "noise_schedule": noise_schedule(backend.scheduler_config),
        "model": str(model.name),
    }


def validate(value, where: str = "latent_space") -> dict:
    """``value`` if it is a fingerprint (a JSON object with :data:`FIELDS` of sane types),
    else :class:`InputError` naming ``where``."""
    if not isinstance(value, dict) or set(value) != set(FIELDS):
        raise InputError(f"{where} must be a JSON object with keys {', '.join(FIELDS)}")
    for key in ("family", "noise_schedule", "model"):
        if not isinstance(value[key], str):
            raise InputError(f"{where} {key} must be a string")
    for key in ("latent_channels", "latent_size", "vae_scale_factor"):
        if isinstance(value[key], bool) or not isinstance(value[key], int):
            raise InputError(f"{where} {key} must be an integer")
    for key in ("vae_scaling_factor", "vae_shift_factor"):
        number = value[key]
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise InputError(f"{where} {key} must be a finite number")
    return value


def mismatches(edge: dict, device: dict) -> list[str]:
    """The :data:`MUST_MATCH` fields where ``edge`` and ``device`` differ, as ``"name a vs b"``."""
    out = []
    for name in MUST_MATCH:
        a, b = edge.get(name), device.get(name)
        same = a == b or (
            isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6)
        )
        if not same:
            out.append(f"{name} {_show(a)} vs {_show(b)}")
    return out


def _show(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def describe(space: dict) -> str:
    """One phrase for a fingerprint, e.g. ``'tiny' (stable-diffusion, 4x16x16 latents, ...)``."""
    shift = "" if space.get("vae_shift_factor") is None else f", shift {space['vae_shift_factor']:.6g}"
    return (
        f"{space.get('model')!r} ({space.get('family')}, {space.get('latent_channels')}x{space.get('latent_size')}"
        f"x{space.get('latent_size')} latents, VAE /{space.get('vae_scale_factor')} scaling "
        f"{_show(space.get('vae_scaling_factor'))}{shift}, noise schedule {space.get('noise_schedule')})"
    )


def check(edge: dict, model) -> None:
    """Raise :class:`LatentSpaceMismatch` unless ``model`` (the device's) shares the latent
    space ``edge`` (the edge's fingerprint, from ``/v1/info`` or a payload)."""
    device = model.latent_space
    differ = mismatches(edge, device)
    if differ:
        raise LatentSpaceMismatch(
            f"model mismatch: the edge's model {describe(edge)} and the device's model {describe(device)} "
            f"differ in {'; '.join(differ)}; finish with a model of the edge's latent space "
            "(--model; `edgediff check-model` compares two models)"
        )
