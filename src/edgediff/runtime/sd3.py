"""Stable Diffusion 3 as a denoiser backend: a flow-matching transformer (MMDiT).

SD3's ``SD3Transformer2DModel`` predicts a velocity from the latent, a per-row timestep,
the joint text embeddings of two CLIP encoders and (optionally) T5, and the CLIP encoders'
pooled projections; ``FlowMatchEulerDiscreteScheduler`` integrates it. Prompts are encoded
by the pipeline's own ``encode_prompt``; the latent is the raw noise (no sigma scaling, no
``scale_model_input``) and is decoded with the VAE's scaling and shift factors, as
``StableDiffusion3Pipeline.__call__`` does. A directory without T5 (``text_encoder_3``
``null``) loads too: diffusers then uses zeros for the T5 part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgediff.runtime.backends import Conditioning, DenoiserBackend, ModelLoadError, check_tokenizer, decode_vae


@dataclass(eq=False)
class SD3Backend(DenoiserBackend):
    """Stable Diffusion 3/3.5: ``SD3Transformer2DModel`` on CLIP-L, CLIP-G (and T5) embeddings."""

    components: ClassVar[tuple[str, ...]] = (
        "transformer",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "scheduler",
    )
    optional_components: ClassVar[tuple[str, ...]] = ("text_encoder_3", "tokenizer_3")
    pipelines: ClassVar[tuple[str, ...]] = ("StableDiffusion3Pipeline",)
    supports_guidance_rescale: ClassVar[bool] = False

    transformer: object
    vae: object
    scheduler: object
    pipeline: object  # the StableDiffusion3Pipeline holding the text encoders (its encode_prompt)
    device: str = "cpu"
    dtype: str = "float32"

    @classmethod
    def from_components(cls, path: Path, parts: dict) -> SD3Backend:
        from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

        if not isinstance(parts["transformer"], SD3Transformer2DModel):
            raise ModelLoadError(f"{str(path)!r}: transformer is not an SD3Transformer2DModel")
        if parts["scheduler"].config.get("use_dynamic_shifting"):
            raise ModelLoadError(
                f"{str(path)!r}: schedulers with use_dynamic_shifting (size-dependent timesteps) are not supported"
            )
        check_tokenizer(path, parts["tokenizer"], parts["text_encoder"])
        check_tokenizer(path, parts["tokenizer_2"], parts["text_encoder_2"], "tokenizer_2")
        pipeline = parts.get("pipeline") or StableDiffusion3Pipeline(
            **{name: parts.get(name) for name in (*cls.components, *cls.optional_components)}
        )
        return cls(parts["transformer"], parts["vae"], parts["scheduler"], pipeline)

    @property
    def text_encoders(self) -> tuple:
        pipe = self.pipeline
        return tuple(e for e in (pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3) if e is not None)

    @property
    def modules(self) -> tuple:
        return self.transformer, self.vae, *self.text_encoders

    @property
    def latent_channels(self) -> int:
        return int(self.transformer.config.in_channels)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        return int(self.transformer.config.sample_size) * self.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        return self.vae_scale_factor * int(self.transformer.config.patch_size)

    def condition(
        self, prompts: Sequence[str], negative_prompts: Sequence[str] = (), clip_skip: int | None = None
    ) -> Conditioning:
        import torch

        guided = bool(negative_prompts)
        if guided and len(negative_prompts) != len(prompts):
            raise ValueError("SD3 conditions rows of (negative, prompt) pairs: give one negative prompt per prompt")
        with torch.inference_mode():
            embeds, negative_embeds, pooled, negative_pooled = self.pipeline.encode_prompt(
                list(prompts),
                None,
                None,
                device=self.device,
                do_classifier_free_guidance=guided,
                negative_prompt=list(negative_prompts) if guided else None,
                clip_skip=clip_skip,
            )
        if guided:
            embeds, pooled = torch.cat([negative_embeds, embeds]), torch.cat([negative_pooled, pooled])
        dtype = self.torch_dtype()
        return Conditioning({"encoder_hidden_states": embeds.to(dtype), "pooled_projections": pooled.to(dtype)})

    def predict(self, latents, timesteps, conditioning: Conditioning):
        import torch

        with torch.inference_mode():
            return self.transformer(
                hidden_states=latents,
                timestep=timesteps.to(self.device),
                encoder_hidden_states=conditioning["encoder_hidden_states"],
                pooled_projections=conditioning["pooled_projections"],
            ).sample

    def model_input(self, scheduler, latent, timestep):
        return latent  # flow matching: the transformer takes the latent as it is

    def initial_latent(self, noise, scheduler):
        return noise  # the pipeline does not scale its noise

    def decode(self, latents):
        return decode_vae(self.vae, latents, self.device, self.torch_dtype())

    def save(self, directory: str | Path) -> None:
        self.pipeline.save_pretrained(str(directory), safe_serialization=True)
