"""``edgediff calibrate``: time batched denoising steps and fit the edge profile L(b) = k*b + h
(with ``--workers``: through worker pools, and the law L_e(b, G) = k_e*b/G + h_e)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    add_model_config,
    check_model_config,
    check_worker_devices,
    int_list,
    load_model,
    positive_int,
    refuse_overwrite,
)
from edgediff.cli._generation import add_dtype


def add_parsers(sub) -> None:
    # Part C runtime (docs/runtime.md). CalibrationConfig's module imports the runtime (torch),
    # so its defaults are written here.
    p = sub.add_parser("calibrate", help="time batched denoising steps and fit L(b) = k*b + h")
    p.add_argument(
        "--model",
        default="tiny",
        help="'tiny' (embedded), a diffusers pipeline directory, a .safetensors file (with --model-config), "
        "or arch:sd15 / arch:sdxl (the real architecture with seeded random weights)",
    )
    add_model_config(p)
    add_dtype(p)
    p.add_argument("--batches", type=int_list, default=[1, 2, 4, 8, 16], help="batch sizes")
    p.add_argument("--repeats", type=positive_int, default=7, help="timed steps per batch size (their median is used)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument(
        "--workers",
        type=int_list,
        help="time through a pool of G denoiser workers (serve --workers G), for each G of a list (1,2): "
        "k_e, h_e of L_e(b, G) = k_e*b/G + h_e, fitted jointly, with R^2",
    )
    p.add_argument("--worker-threads", type=positive_int, default=1, help="with --workers: torch threads per worker")
    p.add_argument("--out", type=Path, help="write the profile JSON here (an existing file needs --force)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("--json", action="store_true", help="print the profile JSON")
    p.set_defaults(handler=run)


def run(args) -> None:
    if args.out is not None:
        refuse_overwrite([args.out], args.force)
    from edgediff.runtime.calibrate import CalibrationConfig, calibrate, calibrate_workers

    check_model_config(args.model_config, args.model)
    try:
        config = CalibrationConfig(batches=tuple(args.batches), repeats=args.repeats)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.workers is None and args.worker_threads != 1:
        raise UsageError("--worker-threads needs --workers")
    if args.workers is not None:
        if len(set(args.workers)) != len(args.workers):
            raise UsageError(f"--workers: each count once, got {','.join(map(str, args.workers))}")
        check_worker_devices(args.device, max(args.workers))
        model = load_model(args.model, args.device, args.model_config, args.dtype)
        return _report_workers(args, calibrate_workers(model, args.workers, config, args.worker_threads))
    profile = calibrate(load_model(args.model, args.device, args.model_config, args.dtype), config)
    if profile.k < 0:
        print(
            f"edgediff calibrate: warning: fitted k = {profile.k:.3g} s < 0 (timings too noisy); "
            "rerun with more --repeats on an idle machine before using this profile",
            file=sys.stderr,
        )
    _save(args, profile)
    if args.json:
        print(json.dumps(profile.to_dict()))
        return
    print(f"model {profile.model}, device {profile.device}, {profile.threads} threads, guidance {profile.guidance}")
    for b, seconds in zip(profile.batches, profile.step_latency_s):
        print(f"  batch {b:>3}: {seconds * 1000:9.3f} ms per step")
    print(f"L(b) = k*b + h: k = {profile.k:.6g} s, h = {profile.h:.6g} s, R^2 = {profile.r2:.4f}")
    if args.out is not None:
        print(f"wrote {args.out}")


def _report_workers(args, fit) -> None:
    """Each worker count's timings and fit, then the joint law (or the JSON)."""
    if fit.k < 0:
        print(f"edgediff calibrate: warning: fitted k_e = {fit.k:.3g} s < 0 (timings too noisy)", file=sys.stderr)
    _save(args, fit)
    if args.json:
        print(json.dumps(fit.to_dict()))
        return
    first = fit.profiles[0]
    print(f"model {first.model}, device {first.device}, {fit.worker_threads} thread(s) per worker")
    for count, profile in zip(fit.workers, fit.profiles):
        print(f"G = {count} worker(s):")
        for b, seconds in zip(profile.batches, profile.step_latency_s):
            print(f"  batch {b:>3}: {seconds * 1000:9.3f} ms per step")
        print(
            f"  L(b) = k*b + h: k = {profile.k:.6g} s (k*G = {profile.k * count:.6g} s), "
            f"h = {profile.h:.6g} s, R^2 = {profile.r2:.4f}"
        )
    counts = ",".join(map(str, fit.workers))
    print(f"L_e(b, G) = k_e*b/G + h_e over G = {counts}: k_e = {fit.k:.6g} s, h_e = {fit.h:.6g} s, R^2 = {fit.r2:.4f}")
    if args.out is not None:
        print(f"wrote {args.out}")


def _save(args, profile) -> None:
    if args.out is not None:
        try:
            profile.save(args.out)
        except OSError as err:
            raise UsageError(f"cannot write {str(args.out)!r}: {err.strerror}") from None
