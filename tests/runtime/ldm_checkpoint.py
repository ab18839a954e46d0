"""Test support: write a Stable Diffusion model as one file in the original (LDM) layout.

Operators hold checkpoints in this layout (``model.diffusion_model.*``,
``first_stage_model.*``, ``cond_stage_model.transformer.*``); diffusers reads it, but ships
no writer. This is the inverse of diffusers' ``convert_ldm_*_checkpoint`` for SD 1.x-style
UNet/VAE/CLIP of any block count, enough to make such a file of the ``tiny`` model.
"""

from __future__ import annotations

import re
from pathlib import Path

RESNET = (  # diffusers -> LDM, inside a UNet resnet
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return dict(RESNET).get(head, head) + "." + tail


def unet_to_ldm(state: dict, config) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    per = config["layers_per_block"] + 1
    has_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
            continue
        m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.*)", key)
        if m:
            side, i, kind, j, rest = m[1], int(m[2]), m[3], int(m[4]), m[5]
            if kind == "downsamplers":
                name = f"input_blocks.{per * (i + 1)}.0.op.{rest.removeprefix('conv.')}"
            elif kind == "upsamplers":
                name = f"output_blocks.{per * i + per - 1}.{2 if has_attn[i] else 1}.{rest}"
            else:
                block = f"input_blocks.{per * i + j + 1}" if side == "down" else f"output_blocks.{per * i + j}"
                name = f"{block}.0.{_resnet(rest)}" if kind == "resnets" else f"{block}.1.{rest}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            name = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            name = f"middle_block.1.{m[1]}"
        else:
            raise KeyError(f"no LDM name for unet key {key}")
        out[name] = value
    return out


def vae_to_ldm(state: dict, config) -> dict:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["vae"]
    blocks = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
            continue
        name = key.replace("conv_shortcut", "nin_shortcut")
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.(resnets|downsamplers)\.(\d+)\.(.*)", name):
            i, kind, j, rest = m.groups()
            name = f"encoder.down.{i}.block.{j}.{rest}" if kind == "resnets" else f"encoder.down.{i}.downsample.{rest}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.*)", name):
            i, kind, j, rest = m.groups()
            up = blocks - 1 - int(i)
            name = f"decoder.up.{up}.block.{j}.{rest}" if kind == "resnets" else f"decoder.up.{up}.upsample.{rest}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", name):
            name = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", name):
            rest = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
            head, _, tail = m[2].rpartition(".")
            name = f"{m[1]}.mid.attn_1.{rest[head]}.{tail}"
            if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        else:
            raise KeyError(f"no LDM name for vae key {key}")
        out[name] = value
    return out


def write_ldm_checkpoint(model, path: Path) -> Path:
    """Write ``model`` (a loaded SD-family ``DiffusionModel``) as one LDM-layout safetensors file."""
    from safetensors.torch import save_file

    b = model.backend
    state = {"model.diffusion_model." + k: v for k, v in unet_to_ldm(b.unet.state_dict(), b.unet.config).items()}
    state |= {"first_stage_model." + k: v for k, v in vae_to_ldm(b.vae.state_dict(), b.vae.config).items()}
    # SD 1.x files name the CLIP text model's weights ``text_model.*`` (transformers 5 drops the prefix)
    text = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in b.text_encoder.state_dict().items()}
    state |= {"cond_stage_model.transformer." + k: v for k, v in text.items()}
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path))
    return path


def write_config_dir(model, directory: Path) -> Path:
    """A pipeline directory of ``model`` without its weight files: configs, tokenizer, scheduler."""
    model.save(directory)
    for weights in directory.rglob("*.safetensors"):
        weights.unlink()
    return directory
