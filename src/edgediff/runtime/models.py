"""Text-to-image models for split inference: a ``diffusers`` pipeline directory or ``tiny``.

A :class:`DiffusionModel` holds the four parts of a latent-diffusion pipeline (UNet, VAE,
CLIP-like text encoder + tokenizer, scheduler). The denoising loop itself lives in
:mod:`edgediff.runtime.executor`, so that the edge can batch many requests at different
timesteps; the model only encodes prompts, makes schedulers and decodes latents.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edgediff.errors import InputError
from edgediff.runtime.tiny import EMBEDDED, PERSONALIZATION_FILE, TINY_NAME, TinyConfig, is_weights_folder, load_tiny

log = logging.getLogger(__name__)

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# Schedulers whose step depends only on (latent, timestep index): a request can stop after
# any step and resume elsewhere from the latent alone. Multistep solvers (PNDM, DPM-Solver++)
# keep a history of model outputs that would have to travel too; we swap them for DDIM.
RESUMABLE_SCHEDULERS = ("DDIMScheduler", "EulerDiscreteScheduler")
DTYPES = ("float32", "float16", "bfloat16")


class ModelLoadError(InputError):
    """A model directory or spec is unusable; the message says why, in one line."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from: an embedded name (``"tiny"``, its personal fine-tunes
    ``"tiny-italic"``/``"tiny-bold"``/``"tiny-small"``, ``"tiny-random"``), a pipeline
    directory, or one model's folder of a ``train-tiny`` output. ``tiny`` configures
    ``tiny-random`` only (the trained weights carry their own config)."""

    source: str = TINY_NAME
    dtype: str = "float32"
    device: str = "cpu"
    tiny: TinyConfig = TinyConfig()

    def __post_init__(self):
        if not self.source:
            raise ModelLoadError("model: expected 'tiny' or a pipeline directory, got ''")
        if self.dtype not in DTYPES:
            raise ModelLoadError(f"model dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @property
    def is_tiny(self) -> bool:
        return self.source in EMBEDDED


@dataclass(eq=False)
class DiffusionModel:
    """A loaded latent-diffusion pipeline (modules in eval mode, no gradients)."""

    name: str
    unet: object
    vae: object
    text_encoder: object
    tokenizer: object
    scheduler: object  # template; every request gets its own copy (see new_scheduler)
    device: str = "cpu"
    dtype: str = "float32"
    identifier: str | None = None  # a DreamBooth model's identifier (see personalize.data.personal_prompt)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """Default image side in pixels (the UNet's trained sample size times the VAE factor)."""
        size = self.unet.config.sample_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        return int(size) * self.vae_scale_factor

    @property
    def scheduler_class(self) -> str:
        return type(self.scheduler).__name__

    @property
    def scheduler_config(self) -> dict:
        return {k: v for k, v in dict(self.scheduler.config).items() if not k.startswith("_")}

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def new_scheduler(self, class_name: str | None = None, config: dict | None = None):
        """A fresh scheduler: this model's, or the one described by ``class_name``/``config``
        (so that a device continues on exactly the edge's timestep schedule)."""
        import diffusers

        class_name = class_name or self.scheduler_class
        if class_name not in RESUMABLE_SCHEDULERS:
            raise ModelLoadError(
                f"scheduler {class_name!r} cannot resume mid-trajectory; use one of {RESUMABLE_SCHEDULERS}"
            )
        return getattr(diffusers, class_name).from_config(self.scheduler_config if config is None else config)

    def encode_prompt(self, prompts: list[str]):
        """Text-encoder hidden states ``(len(prompts), tokens, hidden)``, padded to the
        tokenizer's maximum length as Stable Diffusion does."""
        import torch

        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.inference_mode():
            return self.text_encoder(ids.to(self.device))[0].to(self.torch_dtype())

    def decode(self, latents):
        """Latents ``(B, C, h, w)`` -> uint8 RGB images ``(B, H, W, 3)`` as a NumPy array."""
        import torch

        with torch.inference_mode():
            scaled = latents.to(self.device, self.torch_dtype()) / self.vae.config.scaling_factor
            images = self.vae.decode(scaled).sample
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        return (images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype("uint8")

    def save(self, directory: str | Path) -> None:
        """Write this model as a diffusers pipeline directory (``model_index.json`` + parts)."""
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=self.scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(str(directory), safe_serialization=True)
        if self.identifier:
            (Path(directory) / PERSONALIZATION_FILE).write_text(json.dumps({"identifier": self.identifier}) + "\n")


def load_model(spec: ModelSpec | str | Path = TINY_NAME) -> DiffusionModel:
    """Load ``spec``: an embedded name loads the shipped trained weights (``tiny-random``
    builds random ones); anything else is a local diffusers pipeline directory or a
    ``train-tiny`` model folder (nothing is downloaded). Raises :class:`ModelLoadError`."""
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec(str(spec))
    path = Path(spec.source)
    if spec.is_tiny:
        unet, vae, text_encoder, tokenizer, scheduler, identifier = load_tiny(spec.source, spec.tiny)
        name = spec.source
    elif path.is_dir() and is_weights_folder(path):
        try:
            unet, vae, text_encoder, tokenizer, scheduler, identifier = load_tiny(path.name, weights=path.parent)
        except Exception as err:  # torch/safetensors raise many types; one line naming the folder
            raise ModelLoadError(f"cannot load tiny weights from {str(path)!r}: {err}") from None
        name = str(spec.source)
    else:
        unet, vae, text_encoder, tokenizer, scheduler = _load_directory(path)
        identifier = _identifier(path)
        name = str(spec.source)
    import torch

    dtype = getattr(torch, spec.dtype)
    for module in (unet, vae, text_encoder):
        module.to(spec.device)
        if module.dtype != dtype:  # diffusers warns on a no-op dtype cast, so cast only when needed
            module.to(dtype=dtype)
        module.eval().requires_grad_(False)
    return DiffusionModel(name, unet, vae, text_encoder, tokenizer, scheduler, spec.device, spec.dtype, identifier)


def _identifier(path: Path) -> str | None:
    """The DreamBooth identifier recorded beside a pipeline (``personalization.json``), if any."""
    try:
        identifier = json.loads((path / PERSONALIZATION_FILE).read_text()).get("identifier")
    except (OSError, ValueError, AttributeError):
        return None
    return identifier if isinstance(identifier, str) and identifier else None


def _load_directory(path: Path):
    if not path.exists():
        raise ModelLoadError(f"model directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"model {str(path)!r} is not a directory (expected 'tiny' or a diffusers pipeline)")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ModelLoadError(f"{str(path)!r} is not a diffusers pipeline directory: no model_index.json")
    try:
        index = json.loads(index_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{str(index_file)!r} is not valid JSON: {err}") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{str(index_file)!r} is not a JSON object")
    missing = [c for c in COMPONENTS if not _component_entry(index.get(c))]
    if missing:
        raise ModelLoadError(
            f"{str(path)!r} is not a text-to-image pipeline: model_index.json lacks {', '.join(missing)}"
        )
    classes = {name: _component_class(path, name, *index[name]) for name in COMPONENTS}  # check all first
    parts = {name: _load_component(path, name, cls) for name, cls in classes.items()}
    from diffusers import DDIMScheduler, UNet2DConditionModel

    if not isinstance(parts["unet"], UNet2DConditionModel):
        raise ModelLoadError(f"{str(path)!r}: unet is a {type(parts['unet']).__name__}, not a UNet2DConditionModel")
    if not hasattr(parts["vae"], "decode") or "scaling_factor" not in parts["vae"].config:
        raise ModelLoadError(f"{str(path)!r}: vae {type(parts['vae']).__name__} is not a latent autoencoder")
    scheduler = parts["scheduler"]
    if type(scheduler).__name__ not in RESUMABLE_SCHEDULERS:
        log.warning(
            "%s: scheduler %s keeps multistep state; using DDIMScheduler with its config so that requests can be split",
            path,
            type(scheduler).__name__,
        )
        scheduler = DDIMScheduler.from_config(scheduler.config)
    return parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"], scheduler


def _component_entry(entry) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) and e for e in entry)


def _component_class(path: Path, name: str, library: str, class_name: str):
    # Only the two libraries a text-to-image pipeline is made of: model_index.json must not
    # be able to import arbitrary modules.
    if library not in ("diffusers", "transformers"):
        raise ModelLoadError(
            f"{str(path)!r}: {name} comes from library {library!r}, expected diffusers or transformers"
        )
    cls = getattr(importlib.import_module(library), class_name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ModelLoadError(f"{str(path)!r}: unknown {name} class {library}.{class_name}")
    return cls


def _load_component(path: Path, name: str, cls):
    folder = path / name
    if not folder.is_dir():
        raise ModelLoadError(f"{str(path)!r} is not a complete pipeline: no {name}/ folder")
    try:
        if name == "scheduler":
            return cls.from_pretrained(str(folder))
        return cls.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # the libraries raise many types; report one line naming the part
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"cannot load {name} from {str(folder)!r}: {first}") from None
