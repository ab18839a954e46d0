"""Real model architectures with seeded random weights: real-size timing without a download.

``arch:sd15`` is Stable Diffusion 1.5 and ``arch:sdxl`` SDXL base 1.0, built from their
published configs (the ``config.json`` of each part in the released checkpoints, written out
here) with weights drawn from a fixed seed. Their images are noise, but every denoiser call
costs what the real model's costs, so ``edgediff calibrate --model arch:sd15`` measures the
``L(b) = k b + h`` of the real architecture at its native latent size (docs/runtime.md). The
tokenizer is the project's byte-level one (the real vocabulary files are not shipped); it
only sets the prompt tokens, not the cost of a step.
"""

from __future__ import annotations

PREFIX = "arch:"
SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
# CLIP ViT-L/14's text tower (SD 1.x; SDXL's first encoder)
CLIP_L = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    vocab_size=49408,
    hidden_act="quick_gelu",
    projection_dim=768,
)
# OpenCLIP ViT-bigG/14's text tower (SDXL's second encoder)
CLIP_BIG_G = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    vocab_size=49408,
    hidden_act="gelu",
    projection_dim=1280,
)
SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
)


def names() -> tuple[str, ...]:
    return tuple(f"{PREFIX}{name}" for name in _BUILDERS)


def build(source: str, seed: int = 0):
    """The backend of architecture ``source`` (``arch:sd15`` or ``arch:sdxl``), random
    weights from ``seed``; the global torch RNG is left alone."""
    import torch

    from edgediff.runtime.backends import ModelLoadError

    builder = _BUILDERS.get(source.removeprefix(PREFIX))
    if builder is None:
        raise ModelLoadError(f"unknown architecture {source!r}; known: {', '.join(names())}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder()


def _tokenizer():
    from transformers import CLIPTokenizer

    from edgediff.runtime.tiny import byte_level_vocab

    return CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=77)


def _sd15():
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from edgediff.runtime.backends import UNetBackend

    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(**SD_VAE, sample_size=512, scaling_factor=0.18215)
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L))
    scheduler = PNDMScheduler(**SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False)
    return UNetBackend(unet, vae, text_encoder, _tokenizer(), scheduler)


def _sdxl():
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from edgediff.runtime.sdxl import SDXLBackend

    unet = UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    vae = AutoencoderKL(**SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True)
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G))
    scheduler = EulerDiscreteScheduler(**SD_BETAS, timestep_spacing="leading")
    tokenizer = _tokenizer()
    parts = dict(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=scheduler,
    )
    return SDXLBackend.from_components(f"{PREFIX}sdxl", parts)


_BUILDERS = {"sd15": _sd15, "sdxl": _sdxl}
