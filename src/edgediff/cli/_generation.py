"""diffusers' generation options on the command line (``generate``; ``--dtype`` also ``calibrate``):
parsed here into :class:`~edgediff.runtime.request.GenerationRequest` fields (docs/runtime.md)."""

from __future__ import annotations

import argparse
import json

from edgediff.cli._args import number, positive_int
from edgediff.runtime.request import DTYPES


def add_dtype(parser: argparse.ArgumentParser, help: str = "the model's dtype (float16/bfloat16 as on a GPU)") -> None:
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help=help)


def scheduler_option(text: str) -> tuple[str, object]:
    """``NAME=VALUE``; VALUE is read as JSON (``true``, ``2``, ``"trailing"``), else as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """diffusers' ``__call__`` options: image size, eta, guidance rescale, clip skip, scheduler."""
    add_dtype(parser)
    parser.add_argument(
        "--images",
        type=positive_int,
        default=1,
        help="images per prompt, seeds --seed, --seed + 1, ... (OUT-1.png ...); with --server one request of them",
    )
    parser.add_argument("--width", type=positive_int, help="image width in pixels (default: the model's)")
    parser.add_argument("--height", type=positive_int, help="image height in pixels (default: the model's)")
    parser.add_argument(
        "--eta", type=number(float, 0.0), default=0.0, help="eta of schedulers that take it (DDIM's η, TCD's γ)"
    )
    parser.add_argument(
        "--guidance-rescale", type=number(float, 0.0), default=0.0, help="diffusers' guidance_rescale, in [0, 1]"
    )
    parser.add_argument("--clip-skip", type=positive_int, help="skip that many final CLIP layers for the prompt")
    parser.add_argument("--scheduler", help="a diffusers scheduler class name, e.g. DPMSolverMultistepScheduler")
    parser.add_argument(
        "--scheduler-option",
        type=scheduler_option,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a scheduler config option (repeatable; of --scheduler, else of the model's), e.g. use_karras_sigmas=true",
    )


def generation_fields(args) -> dict:
    """The request fields of :func:`add_generation_options`."""
    return dict(
        width=args.width,
        height=args.height,
        eta=args.eta,
        guidance_rescale=args.guidance_rescale,
        clip_skip=args.clip_skip,
        scheduler=args.scheduler,
        scheduler_options=dict(args.scheduler_option),
    )
