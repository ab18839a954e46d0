"""The embedded default model ``tiny``: a small latent-diffusion pipeline built from config.

Everything is built locally with fixed-seed random weights, the tokenizer included (a
byte-level CLIP tokenizer whose vocabulary is the 256 byte symbols, so no vocabulary file is
downloaded), so the whole runtime works offline on a CPU. The shapes follow diffusers' own
tiny test pipelines (two UNet blocks, one cross-attention block, a small CLIP text
encoder), scaled so that a 50-step generation takes about a second on one CPU core.
A later issue replaces the random weights with small trained ones: train these modules and
``DiffusionModel.save`` them; the result loads as an ordinary pipeline directory.
"""

from __future__ import annotations

from dataclasses import dataclass

TINY_NAME = "tiny"


@dataclass(frozen=True)
class TinyConfig:
    """Shapes and seed of the embedded ``tiny`` pipeline (64x64 RGB images, 16x16x4 latents)."""

    seed: int = 0
    image_size: int = 64
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (32, 64)
    vae_channels: tuple[int, ...] = (32, 64, 64)  # three blocks: the VAE downsamples by 4
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 4
    max_tokens: int = 64  # byte-level tokens, i.e. about 60 characters of prompt
    norm_groups: int = 8
    train_timesteps: int = 1000


def byte_level_vocab() -> dict[str, int]:
    """CLIP-style vocabulary of the 256 byte symbols, alone and word-final (``</w>``)."""
    from tokenizers import pre_tokenizers

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for symbol in symbols:
            vocab[symbol + suffix] = len(vocab)
    return vocab


def build_tiny(config: TinyConfig = TinyConfig()):
    """Build the ``tiny`` pipeline's components with weights drawn from ``config.seed``.

    Returns ``(unet, vae, text_encoder, tokenizer, scheduler)``. The global torch RNG is
    forked, so building does not disturb the caller's random state.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = byte_level_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=config.max_tokens)
    down_scale = 2 ** (len(config.vae_channels) - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = UNet2DConditionModel(
            sample_size=config.image_size // down_scale,
            in_channels=config.latent_channels,
            out_channels=config.latent_channels,
            block_out_channels=config.unet_channels,
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=config.text_hidden,
            attention_head_dim=8,
            norm_num_groups=config.norm_groups,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=config.vae_channels,
            down_block_types=("DownEncoderBlock2D",) * len(config.vae_channels),
            up_block_types=("UpDecoderBlock2D",) * len(config.vae_channels),
            latent_channels=config.latent_channels,
            norm_num_groups=config.norm_groups,
            sample_size=config.image_size,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=config.text_hidden,
                intermediate_size=2 * config.text_hidden,
                num_hidden_layers=config.text_layers,
                num_attention_heads=config.text_heads,
                max_position_embeddings=config.max_tokens,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        )
    # Stable Diffusion's schedule; DDIM because its step depends only on (latent, timestep),
    # which is what lets a request stop at the edge and resume on the device exactly.
    scheduler = DDIMScheduler(
        num_train_timesteps=config.train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return unet.eval(), vae.eval(), text_encoder.eval(), tokenizer, scheduler
