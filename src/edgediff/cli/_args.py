"""What the command modules share: parser, help formatter, argparse types, config defaults, usage error."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from edgediff.errors import InputError


class UsageError(InputError):
    """Bad input from the user: reported in one line with exit code 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option with a default shows it after its help; descriptions and epilogs (the
    registries' listings) keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        unset = default in (None, False, argparse.SUPPRESS) or default == []
        if "%(default)" in text or not action.option_strings or unset:
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse with the project's formatter, whose errors are one line (exit 2), as every
    other bad input: ``edgediff CMD: error: ...``, no usage block."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def default_threads(environ=os.environ) -> int | None:
    """torch's intra-op thread count when ``OMP_NUM_THREADS`` is not set: half the usable CPUs,
    at most 4. OpenMP threads spin on cores other work holds; one busy 2-core machine took 47-100 s
    for a 50-step tiny generation with 2 threads and 1.3 s with 1. ``None`` when the user chose."""
    if environ.get("OMP_NUM_THREADS"):
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, max(1, cpus // 2))


def set_default_threads() -> None:
    """Apply :func:`default_threads` through the environment, before torch is imported (free:
    torch reads it when it loads; set later, ``torch.set_num_threads`` does the same)."""
    threads = default_threads()
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def refuse_overwrite(paths, force: bool, option: str = "--out") -> None:
    """One line, exit 2, if any of ``paths`` exists and ``--force`` was not given."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not force:
        raise UsageError(f"{option} would overwrite {', '.join(existing)}; pass --force to replace")


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


def check_worker_devices(device: str, workers: int) -> None:
    """A usage error if ``device`` cannot hold ``workers`` replicas (too few GPUs)."""
    from edgediff.runtime.workers import WorkerPoolError, worker_devices

    try:
        worker_devices(device, workers)
    except WorkerPoolError as err:
        raise UsageError(f"--workers: {err}") from None


def profile(text: str) -> tuple[float, float]:
    """``k,h`` in seconds per step (k >= 0, k + h > 0), or a profile JSON file with ``k`` and ``h``
    (what ``edgediff calibrate --out`` writes; its other keys are ignored)."""
    from edgediff.core.profiles import warn_implausible

    if "," in text:
        try:
            k, h = (float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected k,h (two numbers) or a profile JSON file, got {text!r}"
            ) from None
    else:
        try:
            data = json.loads(Path(text).read_text())
            k, h = float(data["k"]), float(data["h"])
        except OSError as err:
            raise argparse.ArgumentTypeError(f"expected k,h or a profile JSON file: {text!r}: {err.strerror}") from None
        except (ValueError, TypeError, KeyError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a profile JSON file with numbers k and h") from None
    if not (math.isfinite(k) and math.isfinite(h)) or k < 0 or k + h <= 0:
        raise argparse.ArgumentTypeError(f"need finite k >= 0 and k + h > 0, got {text!r}")
    warn_implausible(f"profile {text}", k, h)
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
        help=f"an option of {applies_to}, e.g. population=50 (ga), time_limit=2 (milp), split_grid=[80,140,200]"
        " (timeline); VALUE is JSON when it parses, else text; repeatable",
    )


def listing(title: str, summaries: dict[str, str], width: int, note: str = "") -> dict[str, Any]:
    """``add_parser`` keywords that list a registry's names and summaries below the options."""
    rows = "\n".join(f"  {name:<{width}} {summary}" for name, summary in summaries.items())
    return {"epilog": f"{title}:\n{rows}{note}"}


def defaults(config: type) -> dict[str, Any]:
    """The field defaults of a config dataclass (a composed one's flat keys): no literal repeated."""
    if hasattr(config, "defaults"):
        return config.defaults()
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


def make_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {str(path)!r}: {err.strerror}") from None


def check_device(device: str | None) -> None:
    """A CUDA device without CUDA is the user's input: one line, not torch's traceback."""
    if device is None or not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    index = device.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def add_model_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        type=Path,
        metavar="DIR",
        help="for a single-file checkpoint (.safetensors/.ckpt) as a model: a local pipeline directory of the "
        "same architecture whose configs, tokenizer and scheduler are used (docs/serve-your-model.md)",
    )


def check_model_config(config: Path | None, *sources: str | None) -> None:
    """``--model-config`` only means something beside a single-file checkpoint."""
    from edgediff.runtime.single_file import is_single_file

    if config is not None and not any(s is not None and is_single_file(s) for s in sources):
        raise UsageError("--model-config applies only to a single-file checkpoint (.safetensors/.ckpt) as a model")


def load_model(source: str, device: str | None = None, config: Path | None = None, dtype: str = "float32", loras=()):
    """A runtime model (``tiny``, a folder, a single-file checkpoint read with the pipeline directory
    ``config``) with ``loras`` loaded; any failure to load it is the user's input."""
    from edgediff.runtime.models import ModelSpec, load_model
    from edgediff.runtime.single_file import is_single_file, load_single_file

    check_device(device)
    spec = ModelSpec(source, dtype=dtype, device=device or "cpu", loras=tuple(loras))
    try:
        return load_single_file(spec, config) if is_single_file(source) else load_model(spec)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None


def cache_policy(name: str) -> str:
    """An argparse type: an eviction rule the latent cache applies (drc is Part B's simulator only)."""
    from edgediff.cache.eviction import USAGE_RULES

    if name == "drc":
        raise argparse.ArgumentTypeError(
            "drc decides with Part B's learned actor and demand estimates in the slot simulator (cache-sim); "
            f"the service's latent cache evicts by {', '.join(USAGE_RULES)}"
        )
    if name not in USAGE_RULES:
        raise argparse.ArgumentTypeError(f"unknown cache policy {name!r}; choose from {', '.join(USAGE_RULES)}")
    return name
