"""The ``edgediff`` command line: one module per command, each holding its parser next to its handler.

A command module has ``add_parsers(sub)``, which registers its subcommand(s) with their handler;
heavy libraries are imported inside the handlers. Adding a command is its module and one line in
``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap

from edgediff import __version__
from edgediff.cli import (
    cache_sim,
    calibrate,
    check_model,
    compare,
    demo,
    generate,
    measure,
    reproduce,
    serve,
    simulate,
    solve,
    train_dqn,
    train_tiny,
)
from edgediff.cli._args import Parser, UsageError, set_default_threads
from edgediff.errors import EXIT_INPUT, EXIT_TIMEOUT, InputError, WaitTimeout

__all__ = ["COMMAND_MODULES", "UsageError", "build_parser", "main"]

DESCRIPTION = (
    "edgediff: a research tool and a serving tool for edge-device collaborative diffusion serving. "
    "An edge server runs the first denoising steps of many users' text-to-image requests as one "
    "batch with a shared model; each user finishes the remaining steps on their own device with a "
    "personalized model. Every window the edge decides whose requests it accepts, where each "
    "request is split, and which intermediate outputs it caches."
)

EPILOG = (
    "researchers: instance, solve, compare, reproduce, cache-sim, train-dqn; operators: serve, generate "
    "--server, calibrate; both: demo (start here). Exit codes: 0 done, 1 a solver failed, 2 bad input "
    "(one line on stderr), 4 the edge service did not answer in time. Docs: README.md, docs/*.md."
)

COMMAND_MODULES = (
    solve,
    compare,
    train_dqn,
    demo,
    calibrate,
    check_model,
    generate,
    serve,
    cache_sim,
    reproduce,
    train_tiny,
    measure,
    simulate,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edgediff", description=textwrap.fill(DESCRIPTION, 88), epilog=textwrap.fill(EPILOG, 88))
    parser.add_argument("--version", action="version", version=f"edgediff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    for command in sub.choices.values():  # -v after the command too; SUPPRESS keeps the top-level value
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress to stderr"
        )
    return parser


def quiet_libraries(verbose: bool) -> None:
    """Unless ``-v``: diffusers' and transformers' warnings (transformers' "requires
    torchvision" on every import, diffusers' config notes, their deprecation warnings) are
    hidden, so that a user sees edgediff's one line per problem. Set by environment for the
    libraries not imported yet (and the worker processes), directly for those already imported."""
    import os
    import warnings

    level = "warning" if verbose else "error"
    for name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        if verbose or os.environ.get(name) in (None, "warning"):
            os.environ[name] = level
    for library in ("transformers", "diffusers"):
        if f"{library}.utils.logging" in sys.modules:
            getattr(sys.modules[f"{library}.utils.logging"], f"set_verbosity_{level}")()
    if not verbose:
        warnings.filterwarnings("ignore", module=r"(diffusers|transformers|huggingface_hub)(\.|$)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    # each call sets edgediff's level afresh: a command that raised it (reproduce, serve) must not
    # leave the next in-process call verbose
    logging.getLogger("edgediff").setLevel(logging.INFO if args.verbose else logging.WARNING)
    quiet_libraries(args.verbose)
    set_default_threads()
    from edgediff.offload.policies import SolverError

    try:
        args.handler(args)
    except InputError as err:
        print(f"edgediff {args.command}: error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except WaitTimeout as err:  # the edge service (or another party) did not answer in time
        print(f"edgediff {args.command}: error: {err}", file=sys.stderr)
        return EXIT_TIMEOUT
    except SolverError as err:  # not the user's fault: exit 1, still one line
        print(f"edgediff {args.command}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    return 0
