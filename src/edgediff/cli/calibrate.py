"""``edgediff calibrate``: time batched denoising steps and fit the edge profile L(b) = k*b + h."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    add_model_config,
    check_model_config,
    int_list,
    load_model,
    positive_int,
    refuse_overwrite,
)


def add_parsers(sub) -> None:
    # Part C runtime (docs/runtime.md). CalibrationConfig's module imports the runtime (torch),
    # so its defaults are written here.
    p = sub.add_parser("calibrate", help="time batched denoising steps and fit L(b) = k*b + h")
    p.add_argument("--model", default="tiny", help="'tiny' (embedded), a pipeline directory or a .safetensors file")
    add_model_config(p)
    p.add_argument("--batches", type=int_list, default=[1, 2, 4, 8, 16], help="batch sizes")
    p.add_argument("--repeats", type=positive_int, default=7, help="timed steps per batch size (their median is used)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--out", type=Path, help="write the profile JSON here (an existing file needs --force)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--json", action="store_true", help="print the profile JSON")
    p.set_defaults(handler=run)


def run(args) -> None:
    if args.out is not None:
        refuse_overwrite([args.out], args.force)
    from edgediff.runtime.calibrate import CalibrationConfig, calibrate

    check_model_config(args.model_config, args.model)
    try:
        config = CalibrationConfig(batches=tuple(args.batches), repeats=args.repeats)
    except ValueError as err:
        raise UsageError(str(err)) from None
    profile = calibrate(load_model(args.model, args.device, args.model_config), config)
    if profile.k < 0:
        print(
            f"edgediff calibrate: warning: fitted k = {profile.k:.3g} s < 0 (timings too noisy); "
            "rerun with more --repeats on an idle machine before using this profile",
            file=sys.stderr,
        )
    if args.out is not None:
        try:
            profile.save(args.out)
        except OSError as err:
            raise UsageError(f"cannot write {str(args.out)!r}: {err.strerror}") from None
    if args.json:
        print(json.dumps(profile.to_dict()))
        return
    print(f"model {profile.model}, device {profile.device}, {profile.threads} threads, guidance {profile.guidance}")
    for b, seconds in zip(profile.batches, profile.step_latency_s):
        print(f"  batch {b:>3}: {seconds * 1000:9.3f} ms per step")
    print(f"L(b) = k*b + h: k = {profile.k:.6g} s, h = {profile.h:.6g} s, R^2 = {profile.r2:.4f}")
    if args.out is not None:
        print(f"wrote {args.out}")
