"""The ``--lora FILE[:SCALE]`` option of the commands that load a device's model."""

from __future__ import annotations

import argparse


def lora_option(text: str):
    """An argparse type: ``FILE[:SCALE]``, a LoRA file (or shipped LoRA name) and its scale."""
    from edgediff.runtime.lora import LoraWeights, ModelLoadError

    try:
        return LoraWeights.parse(text)
    except ModelLoadError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_lora(parser: argparse.ArgumentParser, whose: str = "the device's model") -> None:
    parser.add_argument(
        "--lora",
        metavar="FILE[:SCALE]",
        type=lora_option,
        action="append",
        default=[],
        help=f"a LoRA file (diffusers/PEFT or kohya .safetensors, or a shipped one: tiny-italic-lora, "
        f"tiny-bold-lora, tiny-small-lora) loaded into {whose}, at SCALE (1 if no :SCALE); repeatable",
    )
