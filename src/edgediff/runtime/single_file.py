"""Operator-side model checks: single-file checkpoints and the shared latent space.

A single ``.safetensors`` (or ``.ckpt``) file in the original Stable Diffusion layout holds
the UNet, VAE and text encoder but no configuration, tokenizer or scheduler. diffusers'
``from_single_file`` converts it offline when given ``config=``, a local pipeline directory
of the same architecture: only that directory's ``*/config.json``, tokenizer and scheduler
files are read, never its weights, and nothing is downloaded. See docs/serve-your-model.md.

:func:`latent_space` is what an edge's cluster-wide model and a device's personalized model
must agree on for a split request to continue on the device.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgediff.runtime.backends import ModelLoadError, UNetBackend
from edgediff.runtime.lora import apply_loras, not_a_model
from edgediff.runtime.models import DiffusionModel, ModelSpec, _identifier

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def is_single_file(source: str | Path) -> bool:
    """Whether ``source`` names a single-file checkpoint (an existing file with a known suffix)."""
    path = Path(source)
    return path.suffix.lower() in SINGLE_FILE_SUFFIXES and path.is_file()


def load_single_file(spec: ModelSpec | str | Path, config: str | Path | None) -> DiffusionModel:
    """Load a single-file Stable Diffusion checkpoint with the architecture of the pipeline
    directory ``config`` (read offline; its weights are not needed). The DreamBooth identifier
    comes from ``personalization.json`` in ``config``, if any. Raises :class:`ModelLoadError`."""
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec(str(spec))
    path = Path(spec.source)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint file {str(path)!r} does not exist")
    not_a_model(path)
    if config is None:
        raise ModelLoadError(
            f"{str(path)!r} is a single-file checkpoint: name a local pipeline directory of the same "
            "architecture with --model-config (its config files are read, not its weights)"
        )
    config = Path(config)
    if not (config / "model_index.json").is_file():
        raise ModelLoadError(
            f"--model-config {str(config)!r} is not a diffusers pipeline directory: no model_index.json"
        )
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    bar = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # a library logs, it draws no bars
    try:
        pipe = StableDiffusionPipeline.from_single_file(
            str(path),
            config=str(config),
            local_files_only=True,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except Exception as err:  # diffusers raises many types; one line naming the file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load {str(path)!r} with config {str(config)!r}: {first}") from None
    finally:
        if bar:
            diffusers_logging.enable_progress_bar()
    parts = {name: getattr(pipe, name) for name in UNetBackend.components}
    backend = UNetBackend.from_components(path, parts)
    identifier = apply_loras(backend, spec.loras, str(path)) or _identifier(config)
    backend.place(spec.device, spec.dtype)
    return DiffusionModel(spec.name, backend, identifier)


def latent_space(model: DiffusionModel) -> dict:
    """What a split request's latent means: the model's latent-space fingerprint
    (:mod:`edgediff.runtime.latent_space`: family, latent channels and size, VAE factor,
    scaling and shift, training noise schedule) and a digest of the VAE weights (equal
    digests: the device decodes exactly as the edge's model would). Two models continue each
    other's latents only if all but the digest agree."""
    import torch

    vae = model.backend.vae
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    space = {k: v for k, v in model.latent_space.items() if k != "model"}
    return {**space, "vae_sha256": digest.hexdigest()[:16]}


def latent_space_mismatches(device: DiffusionModel, cluster: DiffusionModel) -> list[str]:
    """Why ``device`` cannot continue ``cluster``'s latents (empty: it can): each differing
    field of the fingerprint, as ``"name a vs b"`` (device's first)."""
    from edgediff.runtime.latent_space import mismatches

    return mismatches(device.latent_space, cluster.latent_space)
