"""Stable Diffusion XL as a denoiser backend: two text encoders, pooled embeddings, size ids.

SDXL's UNet is conditioned on the two CLIP encoders' hidden states side by side, and through
``added_cond_kwargs`` on the second encoder's pooled (projected) embedding and six "time
ids" (original size, crop corner, target size). Prompts are encoded by the pipeline's own
``encode_prompt`` (so ``force_zeros_for_empty_prompt`` and the penultimate-layer choice are
diffusers'), and the time ids are those ``StableDiffusionXLPipeline.__call__`` makes by
default: original = target = the image size, crop (0, 0). The latent space (channels, VAE
factor, decoding) is Stable Diffusion's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgediff.runtime.backends import Conditioning, ModelLoadError, UNetBackend, check_tokenizer


@dataclass(eq=False)
class SDXLBackend(UNetBackend):
    """SDXL base: a ``UNet2DConditionModel`` with ``addition_embed_type="text_time"`` on two
    CLIP text encoders (``text_encoder``, ``text_encoder_2`` with projection)."""

    components: ClassVar[tuple[str, ...]] = (
        "unet",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "scheduler",
    )
    pipelines: ClassVar[tuple[str, ...]] = ("StableDiffusionXLPipeline",)

    text_encoder_2: object = None
    tokenizer_2: object = None
    pipeline: object = None  # the StableDiffusionXLPipeline holding these parts (its encode_prompt)

    @classmethod
    def from_components(cls, path: Path, parts: dict) -> SDXLBackend:
        from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

        unet = parts["unet"]
        if not isinstance(unet, UNet2DConditionModel) or unet.config.addition_embed_type != "text_time":
            raise ModelLoadError(f"{str(path)!r}: unet is not an SDXL UNet (addition_embed_type 'text_time')")
        check_tokenizer(path, parts["tokenizer"], parts["text_encoder"])
        check_tokenizer(path, parts["tokenizer_2"], parts["text_encoder_2"], "tokenizer_2")
        pipeline = parts.get("pipeline") or StableDiffusionXLPipeline(
            **{name: parts[name] for name in cls.components}, add_watermarker=False
        )
        return cls(
            unet,
            parts["vae"],
            parts["text_encoder"],
            parts["tokenizer"],
            parts["scheduler"],
            text_encoder_2=parts["text_encoder_2"],
            tokenizer_2=parts["tokenizer_2"],
            pipeline=pipeline,
        )

    @property
    def modules(self) -> tuple:
        return self.unet, self.vae, self.text_encoder, self.text_encoder_2

    def condition(
        self, prompts: Sequence[str], negative_prompts: Sequence[str] = (), clip_skip: int | None = None
    ) -> Conditioning:
        import torch

        guided = bool(negative_prompts)
        if guided and len(negative_prompts) != len(prompts):
            raise ValueError("SDXL conditions rows of (negative, prompt) pairs: give one negative prompt per prompt")
        # an empty negative prompt is diffusers' default (None): zeros where the pipeline says so
        negative = None if all(n == "" for n in negative_prompts) else list(negative_prompts)
        with torch.inference_mode():
            embeds, negative_embeds, pooled, negative_pooled = self.pipeline.encode_prompt(
                list(prompts),
                device=self.device,
                do_classifier_free_guidance=guided,
                negative_prompt=negative,
                clip_skip=clip_skip,
            )
        dtype = self.torch_dtype()
        if guided:
            embeds, pooled = torch.cat([negative_embeds, embeds]), torch.cat([negative_pooled, pooled])
        return Conditioning({"encoder_hidden_states": embeds.to(dtype), "text_embeds": pooled.to(dtype)})

    def predict(self, latents, timesteps, conditioning: Conditioning):
        import torch

        # the pipeline's default time ids: original size = target size = the image, crop (0, 0)
        height, width = (side * self.vae_scale_factor for side in latents.shape[-2:])
        embeds = conditioning["encoder_hidden_states"]
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=embeds.dtype, device=self.device)
        with torch.inference_mode():
            return self.unet(
                latents,
                timesteps.to(self.device),
                encoder_hidden_states=embeds,
                added_cond_kwargs={
                    "text_embeds": conditioning["text_embeds"],
                    "time_ids": time_ids.expand(len(latents), 6),
                },
                timestep_cond=conditioning.tensors.get("timestep_cond"),
            ).sample

    def save(self, directory: str | Path) -> None:
        self.pipeline.save_pretrained(str(directory), safe_serialization=True)
