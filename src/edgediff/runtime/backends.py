"""Denoiser backends: what depends on a model family, behind one interface.

The batched executor (:mod:`edgediff.runtime.executor`) owns the batch: which members run,
their timesteps, guidance rows, joins and leaves. A :class:`DenoiserBackend` owns the rest,
which differs between model families: turning prompts into :class:`Conditioning`, one
batched denoiser call, a member's scheduler step, and the latent space (channels, VAE
factor, decoding). The executor calls nothing else, so a new family (added conditioning,
a transformer denoiser, another latent layout) is one module with a subclass plus one line
in :data:`edgediff.runtime.models.BACKENDS`. See docs/runtime.md.

:class:`UNetBackend` is the Stable Diffusion 1.x/2.x family: a ``UNet2DConditionModel``
conditioned on a CLIP-like text encoder's hidden states, and a latent autoencoder. The
embedded ``tiny`` models are of this family. torch and diffusers are imported inside
methods only, so that importing this module stays light.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgediff.errors import InputError

log = logging.getLogger(__name__)


class ModelLoadError(InputError):
    """A model directory or spec is unusable; the message says why, in one line."""


@dataclass(frozen=True, eq=False)
class Conditioning:
    """What the denoiser is conditioned on: named tensors with one row (first axis) per
    denoiser input row, e.g. ``encoder_hidden_states``. The members' conditionings of a
    batch concatenate row-wise in the order of their latent rows."""

    tensors: Mapping[str, object]

    def __getitem__(self, name: str):
        return self.tensors[name]

    def __len__(self) -> int:
        """Number of rows."""
        return len(next(iter(self.tensors.values())))

    @classmethod
    def cat(cls, parts: Sequence[Conditioning]) -> Conditioning:
        import torch

        return cls({name: torch.cat([part[name] for part in parts]) for name in parts[0].tensors})


class DenoiserBackend(ABC):
    """One model family's denoiser, text conditioning, scheduler and latent space.

    Every backend has a template ``scheduler`` (a diffusers scheduler; members get their
    own copies from :meth:`new_scheduler`) and the ``device`` and ``dtype`` names its
    modules live on (set by :meth:`place`). Subclasses implement the abstract members; the
    scheduler and guidance methods hold for every diffusers scheduler and may be overridden.
    """

    #: ``model_index.json`` entries a pipeline directory of this family must have
    components: ClassVar[tuple[str, ...]]
    #: pipeline classes (``model_index.json`` ``_class_name``) this family loads
    pipelines: ClassVar[tuple[str, ...]] = ()
    #: parts loaded when the directory has them (``None`` otherwise), e.g. SD3's T5 encoder
    optional_components: ClassVar[tuple[str, ...]] = ()

    #: whether diffusers' pipeline of this family has ``guidance_rescale``
    supports_guidance_rescale: ClassVar[bool] = True

    scheduler: object
    device: str
    dtype: str

    @classmethod
    @abstractmethod
    def from_components(cls, path: Path, parts: dict) -> DenoiserBackend:
        """The backend made of ``parts`` (name in :attr:`components` -> loaded object) of the
        pipeline directory ``path``; raises :class:`ModelLoadError` if a part does not fit."""

    @property
    @abstractmethod
    def modules(self) -> tuple:
        """The torch modules, which :meth:`place` moves, casts and freezes; the denoiser first."""

    @property
    @abstractmethod
    def latent_channels(self) -> int: ...

    @property
    @abstractmethod
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel, along each side."""

    @property
    @abstractmethod
    def image_size(self) -> int:
        """Default (trained) image side in pixels."""

    @property
    @abstractmethod
    def size_multiple(self) -> int:
        """Image sides must be a multiple of this many pixels."""

    @abstractmethod
    def condition(
        self, prompts: Sequence[str], negative_prompts: Sequence[str] = (), clip_skip: int | None = None
    ) -> Conditioning:
        """Conditioning rows ``[*negative_prompts, *prompts]``: the unconditional rows of
        classifier-free guidance first, as diffusers orders them (none when unguided).
        ``clip_skip``: the prompts' embeddings from that many CLIP layers before the last
        (diffusers' ``clip_skip``, applied where its pipeline applies it)."""

    @property
    def guidance_embedding_dim(self) -> int | None:
        """For a guidance-distilled denoiser (LCM: ``time_cond_proj_dim`` set), the size of the
        guidance-scale embedding it takes as ``timestep_cond``; then, as in diffusers, there is
        no classifier-free guidance. ``None`` for an ordinary denoiser."""
        return None

    @abstractmethod
    def predict(self, latents, timesteps, conditioning: Conditioning):
        """One batched denoiser call: model-input rows ``(B, C, h, w)``, one timestep per row
        ``(B,)`` and ``B`` conditioning rows -> the model output ``(B, C, h, w)`` that the
        scheduler's step expects (noise, v or velocity)."""

    @abstractmethod
    def decode(self, latents):
        """Latents ``(B, C, h, w)`` -> uint8 RGB images ``(B, H, W, 3)`` as a NumPy array."""

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write a diffusers pipeline directory that this family loads back."""

    def diffusers_pipeline(self):
        """The family's diffusers pipeline made of these modules (shared, not copied), e.g.
        for its ``load_lora_weights``; None for a family without one."""
        return getattr(self, "pipeline", None)

    def place(self, device: str, dtype: str, only_denoiser: bool = False) -> None:
        """Move the modules to ``device`` and ``dtype``, in eval mode without gradients;
        ``only_denoiser``: the denoiser alone, the first of :attr:`modules` (a denoiser worker
        calls nothing but :meth:`predict`, so its GPU need not hold the autoencoder and text
        encoders)."""
        self.device, self.dtype = device, dtype
        torch_dtype = self.torch_dtype()
        for module in self.modules[:1] if only_denoiser else self.modules:
            module.to(device)
            cast_module(module, torch_dtype)
            module.eval().requires_grad_(False)

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def scheduler_class(self) -> str:
        return type(self.scheduler).__name__

    @property
    def scheduler_config(self) -> dict:
        return {k: v for k, v in dict(self.scheduler.config).items() if not k.startswith("_")}

    def new_scheduler(self, class_name: str | None = None, config: dict | None = None):
        """A fresh scheduler: the template's, or the one described by ``class_name``/``config``
        (so that a device continues on exactly the edge's timestep schedule)."""
        from edgediff.runtime.schedulers import from_config, scheduler_type

        class_name = class_name or self.scheduler_class
        return from_config(scheduler_type(class_name), self.scheduler_config if config is None else config)

    def initial_latent(self, noise, scheduler):
        """The first latent from the request's noise ``(1, C, h, w)`` (float32, CPU), as the
        family's diffusers pipeline prepares it."""
        return noise * scheduler.init_noise_sigma

    def model_input(self, scheduler, latent, timestep):
        """A member's latent as the denoiser's input at ``timestep``."""
        return scheduler.scale_model_input(latent, timestep)

    def guide(self, uncond, cond, scale: float, rescale: float = 0.0):
        """Classifier-free guidance: the output of one guided member from its two rows;
        ``rescale`` > 0: diffusers' ``guidance_rescale`` (``rescale_noise_cfg``)."""
        guided = uncond + scale * (cond - uncond)
        if rescale > 0:
            from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

            guided = rescale_noise_cfg(guided, cond, guidance_rescale=rescale)
        return guided

    def step(self, scheduler, output, timestep, latent, generator=None, eta: float = 0.0):
        """A member's scheduler step: its latent after ``timestep``. As diffusers' pipelines
        (``prepare_extra_step_kwargs``) do, ``eta`` goes to schedulers whose ``step`` takes it
        (DDIM's η, TCD's γ: diffusers passes 0.0, not TCD's own 0.3) and ``generator`` (the
        member's) to those that draw noise."""
        from edgediff.runtime.schedulers import accepts_eta, accepts_generator

        extra = {"generator": generator} if generator is not None and accepts_generator(scheduler) else {}
        if accepts_eta(scheduler):
            extra["eta"] = eta
        return scheduler.step(output, timestep, latent, **extra).prev_sample


def decode_vae(vae, latents, device: str, dtype):
    """Latents -> uint8 RGB images ``(B, H, W, 3)``, as diffusers' pipelines decode: a float16
    VAE that asks for it runs in float32 (SDXL's overflows), and latents are unscaled with the
    VAE's ``scaling_factor`` and ``shift_factor`` (SD3) or mean/std (where it has them)."""
    import torch

    config = vae.config
    run_dtype = torch.float32 if dtype == torch.float16 and config.get("force_upcast") else dtype
    with torch.inference_mode():
        latents = latents.to(device, run_dtype)
        if config.get("latents_mean") is not None and config.get("latents_std") is not None:
            mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
            std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
            if config.get("shift_factor") is not None:
                latents = latents + config.shift_factor
        if run_dtype != dtype:
            vae.to(dtype=run_dtype)
        try:
            images = vae.decode(latents).sample
        finally:
            if run_dtype != dtype:
                vae.to(dtype=dtype)
    images = (images.float() / 2 + 0.5).clamp(0, 1)
    return (images.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype("uint8")


def check_tokenizer(path: Path, tokenizer, text_encoder, name: str = "tokenizer") -> None:
    """Refuse a tokenizer that does not fit its text encoder: token ids beyond the encoder's
    vocabulary, sequences longer than its positions, or a vocabulary so broken (e.g. a missing
    ``vocab.json``/``tokenizer.json``) that different prompts encode alike."""
    vocab, positions = text_encoder.config.vocab_size, text_encoder.config.max_position_embeddings
    if len(tokenizer) > vocab:
        raise ModelLoadError(
            f"{str(path)!r}: {name} has {len(tokenizer)} tokens, its text encoder's vocabulary only {vocab}"
        )
    if tokenizer.model_max_length > positions:
        raise ModelLoadError(
            f"{str(path)!r}: {name} pads to {tokenizer.model_max_length} tokens, its text encoder has "
            f"{positions} positions (is tokenizer_config.json missing?)"
        )
    special = set(tokenizer.all_special_ids) | {tokenizer.unk_token_id}
    words = {i for i in tokenizer("a photo of a cat on a red car").input_ids if i not in special}
    if len(words) < 2:  # a real vocabulary has distinct tokens for these words (or their letters)
        raise ModelLoadError(
            f"{str(path)!r}: {name} has no tokens for ordinary words ({len(tokenizer)} in its vocabulary; "
            "tokenizer.json or vocab.json missing?)"
        )


@dataclass(eq=False)
class UNetBackend(DenoiserBackend):
    """Stable Diffusion 1.x/2.x: a ``UNet2DConditionModel`` on a CLIP-like text encoder's
    hidden states (padded to the tokenizer's maximum length), and a latent autoencoder."""

    components: ClassVar[tuple[str, ...]] = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    pipelines: ClassVar[tuple[str, ...]] = ("StableDiffusionPipeline",)

    unet: object
    vae: object
    text_encoder: object
    tokenizer: object
    scheduler: object
    device: str = "cpu"
    dtype: str = "float32"

    @classmethod
    def from_components(cls, path: Path, parts: dict) -> UNetBackend:
        from diffusers import UNet2DConditionModel

        if not isinstance(parts["unet"], UNet2DConditionModel):
            raise ModelLoadError(f"{str(path)!r}: unet is a {type(parts['unet']).__name__}, not a UNet2DConditionModel")
        if not hasattr(parts["vae"], "decode") or "scaling_factor" not in parts["vae"].config:
            raise ModelLoadError(f"{str(path)!r}: vae {type(parts['vae']).__name__} is not a latent autoencoder")
        check_tokenizer(path, parts["tokenizer"], parts["text_encoder"])
        return cls(parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"], parts["scheduler"])

    @property
    def modules(self) -> tuple:
        return self.unet, self.vae, self.text_encoder

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        size = self.unet.config.sample_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        return int(size) * self.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        # the UNet halves the latent once per block after the first
        return self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def encode_prompt(self, prompts: Sequence[str], clip_skip: int | None = None):
        """Text-encoder hidden states ``(len(prompts), tokens, hidden)``; ``clip_skip``: those
        of that many layers before the last, through the final layer norm (as diffusers)."""
        import torch

        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.inference_mode():
            if clip_skip is None:
                return self.text_encoder(ids.to(self.device))[0].to(self.torch_dtype())
            hidden = self.text_encoder(ids.to(self.device), output_hidden_states=True)[-1][-(clip_skip + 1)]
            # transformers 5 dropped CLIPTextModel.text_model (diffusers 0.42 still reaches for it)
            norm = getattr(self.text_encoder, "text_model", self.text_encoder).final_layer_norm
            return norm(hidden).to(self.torch_dtype())

    def condition(
        self, prompts: Sequence[str], negative_prompts: Sequence[str] = (), clip_skip: int | None = None
    ) -> Conditioning:
        if clip_skip is None:  # one text-encoder call for all rows
            return Conditioning({"encoder_hidden_states": self.encode_prompt([*negative_prompts, *prompts])})
        import torch

        # diffusers' StableDiffusionPipeline skips CLIP layers for the prompt, not the negative prompt
        rows = [self.encode_prompt(negative_prompts)] if negative_prompts else []
        rows.append(self.encode_prompt(prompts, clip_skip))
        return Conditioning({"encoder_hidden_states": torch.cat(rows)})

    @property
    def guidance_embedding_dim(self) -> int | None:
        dim = self.unet.config.get("time_cond_proj_dim")
        return None if dim is None else int(dim)

    def predict(self, latents, timesteps, conditioning: Conditioning):
        import torch

        with torch.inference_mode():
            return self.unet(
                latents,
                timesteps.to(self.device),
                encoder_hidden_states=conditioning["encoder_hidden_states"],
                timestep_cond=conditioning.tensors.get("timestep_cond"),
            ).sample

    def decode(self, latents):
        return decode_vae(self.vae, latents, self.device, self.torch_dtype())

    def diffusers_pipeline(self):
        pipeline = getattr(self, "pipeline", None)  # SDXL keeps its own
        if pipeline is not None:
            return pipeline
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=self.scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    def save(self, directory: str | Path) -> None:
        self.diffusers_pipeline().save_pretrained(str(directory), safe_serialization=True)


def cast_module(module, torch_dtype) -> None:
    """``module`` in ``torch_dtype``, except the layers transformers keeps in float32 when it
    loads a model in that dtype (``_keep_in_fp32_modules`` in float16, e.g. T5's ``wo``;
    ``_keep_in_fp32_modules_strict`` in float16 and bfloat16), as diffusers' pipelines get them."""
    import torch

    keep = set(getattr(module, "_keep_in_fp32_modules", None) or ()) if torch_dtype == torch.float16 else set()
    if torch_dtype in (torch.float16, torch.bfloat16):
        keep |= set(getattr(module, "_keep_in_fp32_modules_strict", None) or ())
    if not keep:
        if module.dtype != torch_dtype:  # diffusers warns on a no-op dtype cast, so cast only when needed
            module.to(dtype=torch_dtype)
        return
    for name, layer in module.named_modules():  # tensor by tensor: a kept layer is never rounded
        dtype = torch.float32 if keep & set(name.split(".")) else torch_dtype
        for tensor in [*layer.parameters(recurse=False), *layer.buffers(recurse=False)]:
            if tensor.is_floating_point():
                tensor.data = tensor.data.to(dtype)
