"""The ``edgediff`` command line: one module per command, each holding its parser next to its handler.

A command module has ``add_parsers(sub)``, which registers its subcommand(s) with their handler;
heavy libraries are imported inside the handlers. Adding a command is its module and one line in
``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from edgediff import __version__
from edgediff.cli import (
    cache_sim,
    calibrate,
    compare,
    demo,
    generate,
    measure,
    reproduce,
    serve,
    solve,
    train_dqn,
    train_tiny,
)
from edgediff.cli._args import UsageError
from edgediff.errors import InputError

__all__ = ["COMMAND_MODULES", "UsageError", "build_parser", "main"]

DESCRIPTION = (
    "edgediff: edge-device collaborative diffusion serving. An edge server runs the first denoising "
    "steps of many users' text-to-image requests as one batch with a shared model; each user finishes "
    "the remaining steps on their own device with a personalized model. Every window the edge decides "
    "whose requests it accepts, where each request is split, and which intermediate outputs it caches."
)

COMMAND_MODULES = (
    solve,
    compare,
    train_dqn,
    demo,
    calibrate,
    generate,
    serve,
    cache_sim,
    reproduce,
    train_tiny,
    measure,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgediff", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"edgediff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from edgediff.offload.policies import SolverError

    try:
        args.handler(args)
    except InputError as err:
        print(f"edgediff {args.command}: error: {err}", file=sys.stderr)
        return 2
    except SolverError as err:  # not the user's fault: exit 1, still one line
        print(f"edgediff {args.command}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    return 0
