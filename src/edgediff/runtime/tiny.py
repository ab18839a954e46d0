"""The embedded default models: ``tiny`` (cluster-wide) and its personalized fine-tunes.

The architecture is a small latent-diffusion pipeline built from :class:`TinyConfig`: a
two-block conditional UNet, a two-block VAE (16x16 RGB images <-> 4x8x8 latents), a 2-layer
CLIP text encoder and a byte-level CLIP tokenizer whose vocabulary is the 256 byte symbols
(built in memory, so no vocabulary file is downloaded). The weights the package ships in
``runtime/weights/`` were trained by ``edgediff train-tiny`` (:mod:`edgediff.personalize.train`)
on scikit-learn's handwritten digits, prompts like ``"a handwritten digit 3"``:

- ``tiny``: the cluster-wide model (edge side);
- ``tiny-italic``, ``tiny-bold``, ``tiny-small``: three DreamBooth-style personal fine-tunes,
  each bound to its identifier (``"a handwritten digit 3 in sks style"``);
- ``tiny-random``: the same architecture with fixed-seed random weights (``TinyConfig.seed``),
  the starting point of training and a model for shape-only tests.

Weights layout (``weights/``): ``tiny_config.json`` (the :class:`TinyConfig` they were trained
with), ``vae.safetensors`` (shared by all models), and one folder per model with
``unet.safetensors``, ``text_encoder.safetensors`` and ``personalization.json`` (identifier).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

TINY_NAME = "tiny"
TINY_RANDOM = "tiny-random"
TINY_PERSONAL = ("tiny-italic", "tiny-bold", "tiny-small")
EMBEDDED = (TINY_NAME, *TINY_PERSONAL, TINY_RANDOM)
WEIGHTS_DIR = Path(__file__).parent / "weights"
PERSONALIZATION_FILE = "personalization.json"


@dataclass(frozen=True)
class TinyConfig:
    """Shapes and seed of the embedded pipeline (16x16 RGB images, 4x8x8 latents)."""

    seed: int = 0
    image_size: int = 16
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (32, 64)
    vae_channels: tuple[int, ...] = (16, 32)  # two blocks: the VAE downsamples by 2
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 4
    max_tokens: int = 64  # byte-level tokens, i.e. about 60 characters of prompt
    norm_groups: int = 8
    train_timesteps: int = 1000
    vae_scaling_factor: float = 1.0  # set by training to 1/std of the data latents (as SD's 0.18215)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TinyConfig:
        names = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**values)


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
    """Build the pipeline's components with random weights drawn from ``config.seed``.

    Returns ``(unet, vae, text_encoder, tokenizer, scheduler)``. The global torch RNG is
    forked, so building does not disturb the caller's random state.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = byte_level_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=config.max_tokens)
    down_scale = 2 ** (len(config.vae_channels) - 1)
    levels = len(config.unet_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = UNet2DConditionModel(
            sample_size=config.image_size // down_scale,
            in_channels=config.latent_channels,
            out_channels=config.latent_channels,
            block_out_channels=config.unet_channels,
            layers_per_block=1,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
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
            scaling_factor=config.vae_scaling_factor,
            mid_block_add_attention=False,  # 8x8 latents: attention buys nothing, costs training time
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


def save_tiny_weights(directory: str | Path, config: TinyConfig, vae, models: dict) -> None:
    """Write the weights layout (see the module doc) under ``directory``.

    ``models`` maps a model name to ``(unet, text_encoder, identifier or None)``. Tensors are
    stored in float16 (the shipped set stays a few MB); loading casts them back to float32.
    """
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tiny_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    def half(module):
        return {
            k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
            for k, v in module.state_dict().items()
        }

    save_file(half(vae), str(directory / "vae.safetensors"))
    for name, (unet, text_encoder, identifier) in models.items():
        folder = directory / name
        folder.mkdir(exist_ok=True)
        save_file(half(unet), str(folder / "unet.safetensors"))
        save_file(half(text_encoder), str(folder / "text_encoder.safetensors"))
        (folder / PERSONALIZATION_FILE).write_text(json.dumps({"identifier": identifier}) + "\n")


def load_tiny(name: str = TINY_NAME, config: TinyConfig = TinyConfig(), weights: str | Path | None = None):
    """Components of embedded model ``name`` plus its identifier:
    ``(unet, vae, text_encoder, tokenizer, scheduler, identifier)``.

    ``tiny-random`` is built from ``config``; the trained names load from ``weights``
    (default: the shipped ``runtime/weights``; any folder of a ``train-tiny`` output), whose
    own ``tiny_config.json`` fixes the shapes.
    """
    if name == TINY_RANDOM:
        return (*build_tiny(config), None)
    if weights is None and name not in EMBEDDED:
        raise ValueError(f"unknown embedded model {name!r}; expected one of {', '.join(EMBEDDED)}")
    from safetensors.torch import load_file

    directory = Path(weights) if weights is not None else WEIGHTS_DIR
    folder = directory / name
    if not (folder / "unet.safetensors").is_file():
        raise FileNotFoundError(f"no trained weights for {name!r} in {str(directory)!r} (run edgediff train-tiny)")
    trained = TinyConfig.from_dict(json.loads((directory / "tiny_config.json").read_text()))
    unet, vae, text_encoder, tokenizer, scheduler = build_tiny(trained)
    vae.load_state_dict(_float32(load_file(str(directory / "vae.safetensors"))))
    unet.load_state_dict(_float32(load_file(str(folder / "unet.safetensors"))))
    text_encoder.load_state_dict(_float32(load_file(str(folder / "text_encoder.safetensors"))))
    identifier = json.loads((folder / PERSONALIZATION_FILE).read_text()).get("identifier")
    return unet, vae, text_encoder, tokenizer, scheduler, identifier


def is_weights_folder(path: Path) -> bool:
    """Whether ``path`` is one model's folder of a weights layout (e.g. ``OUT/tiny-bold`` of
    ``edgediff train-tiny --out OUT``)."""
    return (path / "unet.safetensors").is_file() and (path.parent / "tiny_config.json").is_file()


def _float32(state: dict) -> dict:
    import torch

    return {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
