"""What the command modules share: argparse types, config defaults, the usage error."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from edgediff.errors import InputError


class UsageError(InputError):
    """Bad input from the user: reported in one line with exit code 2."""


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return names


def number(convert, minimum, *, strict: bool = False):
    """An argparse type: a finite number ``>= minimum`` (``> minimum`` when strict)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if convert is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value

    return parse


positive_int = number(int, 1)
non_negative_int = number(int, 0)
positive_float = number(float, 0.0, strict=True)


def profile(text: str) -> tuple[float, float]:
    """``k,h`` in seconds per step: k >= 0, k + h > 0."""
    try:
        k, h = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected k,h (two numbers), got {text!r}") from None
    if not (math.isfinite(k) and math.isfinite(h)) or k < 0 or k + h <= 0:
        raise argparse.ArgumentTypeError(f"need finite k >= 0 and k + h > 0, got {text!r}")
    return k, h


def policy_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; VALUE is read as JSON when it parses (numbers, true, lists), else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def add_policy_options(parser: argparse.ArgumentParser, applies_to: str = "the policy") -> None:
    parser.add_argument(
        "--policy-option",
        dest="policy_options",
        metavar="KEY=VALUE",
        type=policy_option,
        action="append",
        default=[],
        help=f"an option of {applies_to}, e.g. population=50 (ga), time_limit=2 (milp), split_grid=[0,40,80]"
        " (timeline); VALUE is JSON when it parses, else text; repeatable",
    )


def listing(title: str, summaries: dict[str, str], width: int, note: str = "") -> dict[str, Any]:
    """``add_parser`` keywords that list a registry's names and summaries below the options."""
    rows = "\n".join(f"  {name:<{width}} {summary}" for name, summary in summaries.items())
    return {"epilog": f"{title}:\n{rows}{note}", "formatter_class": argparse.RawDescriptionHelpFormatter}


def defaults(config: type) -> dict[str, Any]:
    """The field defaults of a config dataclass, so that options repeat no literal."""
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


def make_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {str(path)!r}: {err.strerror}") from None


def load_model(source: str, device: str | None = None):
    """A runtime model (``tiny`` or a folder); any failure to load it is the user's input."""
    from edgediff.runtime.models import ModelSpec, load_model

    try:
        return load_model(source if device is None else ModelSpec(source, device=device))
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
