"""``edgediff generate``: one image, split between an edge model and the device's model, locally
or through the edge service (``--server``)."""

from __future__ import annotations

from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    defaults,
    load_model,
    non_negative_int,
    number,
    positive_float,
    positive_int,
    profile,
)
from edgediff.runtime.request import GenerationRequest


def add_parsers(sub) -> None:
    request = defaults(GenerationRequest)
    p = sub.add_parser("generate", help="generate an image, split between an edge model and a local model")
    p.add_argument("--prompt", required=True)
    p.add_argument("--model", default="tiny", help="the device's model: 'tiny' (default) or a pipeline directory")
    p.add_argument("--edge-model", help="the edge's cluster-wide model (default: --model)")
    p.add_argument("--split", type=non_negative_int, help="split n: steps N..n+1 at the edge (default N: all local)")
    p.add_argument(
        "--steps", type=positive_int, default=request["steps"], help=f"denoising steps N (default {request['steps']})"
    )
    p.add_argument("--seed", type=non_negative_int, default=request["seed"])
    p.add_argument(
        "--guidance-scale",
        type=number(float, 0.0),
        default=request["guidance_scale"],
        help=f"> 1 enables guidance ({request['guidance_scale']:g})",
    )
    p.add_argument("--negative-prompt", default=request["negative_prompt"])
    p.add_argument("--payload-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    # the edge service (docs/service.md): the edge decides the split and runs the first steps
    p.add_argument("--server", help="edge service URL: the edge decides the split and runs the first steps")
    p.add_argument("--alpha", type=positive_float, default=1.0, help="with --server: emphasis on quality α (1)")
    p.add_argument("--profile", type=profile, help="with --server: this device's k,h in s (default: measured)")
    p.add_argument("--preset", help="with --server: a profile preset (row3..row10, edge-h100) instead of --profile")
    p.set_defaults(handler=run)


def _request(args) -> GenerationRequest:
    return GenerationRequest(
        args.prompt,
        steps=args.steps,
        seed=args.seed,
        guidance_scale=args.guidance_scale,
        negative_prompt=args.negative_prompt,
    )


def _save(image, out: Path) -> None:
    from PIL import Image

    try:
        Image.fromarray(image).save(out)
    except OSError as err:
        raise UsageError(f"cannot write {str(out)!r}: {err.strerror or err}") from None


def run(args) -> None:
    if args.split is not None and args.split > args.steps:
        raise UsageError(f"--split must be in [0, --steps = {args.steps}], got {args.split}")
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {str(args.out)!r}")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out directory {str(args.out.parent)!r} does not exist")
    if args.server is not None:
        return _run_remote(args)
    if args.profile is not None or args.preset is not None:
        raise UsageError("--profile and --preset need --server")
    from edgediff.runtime.split import generate

    request = _request(args)
    model = load_model(args.model, args.device)
    edge_model = model
    if args.edge_model is not None and args.edge_model != args.model and args.split is not None:
        edge_model = load_model(args.edge_model, args.device)
    result = generate(request, model, args.split, edge_model, args.payload_dtype)
    _save(result.image, args.out)
    where = (
        "all local"
        if result.offloaded_steps == 0
        else (f"{result.offloaded_steps} at the edge on {edge_model.name}, payload {result.payload_bits} bits")
    )
    print(
        f"wrote {args.out}: {result.image.shape[1]}x{result.image.shape[0]}, {result.steps} steps "
        f"({where}; {result.split} local on {model.name}) in {result.edge_s + result.local_s:.2f} s"
    )


def _run_remote(args) -> None:
    if args.split is not None or args.edge_model is not None:
        raise UsageError("with --server the edge decides the split and runs its own model: drop --split/--edge-model")
    if args.profile is not None and args.preset is not None:
        raise UsageError("give --profile or --preset, not both")
    from edgediff.core.profiles import PRESETS

    if args.preset is not None and args.preset not in PRESETS:
        raise UsageError(f"unknown --preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    from edgediff.service.client import EdgeClient, ServiceError, generate_remote

    request = _request(args)
    model = load_model(args.model, args.device)
    device_profile = args.profile
    if device_profile is None and args.preset is None:  # measure this device: batch 1 and 2 steps, median of 5
        from edgediff.runtime.calibrate import CalibrationConfig, calibrate

        measured = calibrate(model, CalibrationConfig(batches=(1, 2), repeats=5, warmup=1))
        device_profile = (max(measured.k + measured.h, 1e-6), 0.0)
    try:
        with EdgeClient(args.server) as client:
            result = generate_remote(
                client, request, model, alpha=args.alpha, profile=device_profile, preset=args.preset
            )
    except ServiceError as err:  # the service refused or failed: reported like bad input, in one line
        raise UsageError(str(err)) from None
    _save(result.image, args.out)
    st = result.status
    if st["status"] == "done":
        hit = f", cache hit at step {st['cache_hit_step']}" if st["cache_hit_step"] else ""
        where = f"granted: {st['offloaded_steps']} steps at the edge{hit}, payload {result.payload_bits} bits"
    elif st["status"] == "denied":
        where = "denied: all steps local"
    else:
        where = f"edge failed ({st.get('reason')}): all steps local"
    predicted = st.get("predicted_latency_s")
    print(
        f"wrote {args.out}: {request.steps} steps ({where}; {result.split} local on {model.name}); "
        f"latency predicted {'n/a' if predicted is None else f'{predicted:.2f} s'}, "
        f"measured {result.measured_latency_s:.2f} s"
    )
