"""``serve``'s connection options and the edge profile's correction, with the service config
keys they set (kept apart from ``serve``'s own module, which stays within its size)."""

from __future__ import annotations

import argparse

from edgediff.cli._args import number, positive_float, positive_int


def add_connection_options(p: argparse.ArgumentParser, d: dict) -> None:
    """``--max-connections``, ``--header-timeout``, ``--body-timeout``, ``--linger``."""
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=d["max_connections"],
        help="open connections; one more gets 503",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_float,
        default=d["header_timeout_s"],
        help="seconds a connection has to send its request headers",
    )
    p.add_argument(
        "--body-timeout",
        type=positive_float,
        default=d["body_timeout_s"],
        help="seconds after the headers to send the body",
    )
    p.add_argument(
        "--linger",
        type=number(float, 0.0),
        default=d["linger_s"],
        help="at shutdown, seconds after the drain for clients to collect results",
    )


def add_profile_option(p: argparse.ArgumentParser, d: dict) -> None:
    """``--profile-from-steps`` / ``--no-profile-from-steps``."""
    p.add_argument(
        "--profile-from-steps",
        action=argparse.BooleanOptionalAction,
        default=d["profile_from_steps"],
        help="decide each window with L(b) times the measured pace of the recent batched steps "
        "(the service's host work included); off: the calibration alone (docs/service.md)",
    )


def serve_options_flags(args) -> dict:
    """The service config keys these options set."""
    return {
        "max_connections": args.max_connections,
        "header_timeout_s": args.header_timeout,
        "body_timeout_s": args.body_timeout,
        "linger_s": args.linger,
        "profile_from_steps": args.profile_from_steps,
    }
