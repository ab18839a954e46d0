"""``edgediff generate``: one image, split between an edge model and the device's model, locally
or through the edge service (``--server``)."""

from __future__ import annotations

import os
from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    add_model_config,
    check_model_config,
    defaults,
    load_model,
    non_negative_int,
    number,
    positive_float,
    positive_int,
    profile,
)
from edgediff.cli._generation import add_generation_options, generation_fields
from edgediff.cli._lora import add_lora
from edgediff.runtime.request import GenerationRequest


def add_parsers(sub) -> None:
    request = defaults(GenerationRequest)
    p = sub.add_parser("generate", help="generate an image, split between an edge model and a local model")
    p.add_argument("--prompt", required=True, help="the text prompt")
    p.add_argument(
        "--model",
        help="the device's model: a built-in one (tiny, tiny-italic, tiny-bold, tiny-small), a pipeline directory "
        "or a .safetensors file (default: tiny; with --server: the edge's model, if this machine can load it)",
    )
    add_model_config(p)
    add_generation_options(p)
    add_lora(p, "the device's model only (the edge runs the plain model)")
    p.add_argument("--edge-model", help="the edge's cluster-wide model (default: --model, without --lora)")
    p.add_argument(
        "--split",
        type=non_negative_int,
        help="split n: denoiser calls N..n+1 at the edge, N the calls of the scheduler's schedule for "
        "--steps (default N: all local)",
    )
    p.add_argument("--steps", type=positive_int, default=request["steps"], help="denoising steps N")
    p.add_argument("--seed", type=non_negative_int, default=request["seed"], help="seed of the initial noise")
    p.add_argument(
        "--guidance-scale",
        type=number(float, 0.0),
        default=request["guidance_scale"],
        help="classifier-free guidance; > 1 enables it",
    )
    p.add_argument(
        "--negative-prompt", default=request["negative_prompt"], help="what the image should not show (with guidance)"
    )
    p.add_argument(
        "--payload-dtype",
        choices=["float32", "float16"],
        default="float32",
        help="dtype of the latent sent from the edge part to the device part",
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument(
        "--native-size",
        action="store_true",
        help="write the model's own resolution (default: small images enlarged to >= 256 px, nearest neighbour)",
    )
    # the edge service (docs/service.md): the edge decides the split and runs the first steps
    p.add_argument(
        "--server",
        help="edge service URL with its scheme, e.g. http://127.0.0.1:8000: the edge decides the split and "
        "runs the first steps",
    )
    p.add_argument(
        "--api-key",
        help="with --server: the service's API key if it needs one (default: environment variable EDGEDIFF_API_KEY)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        help="with --server: seconds to wait for the edge's decisions and latents (all images); past it, exit code 4",
    )
    p.add_argument(
        "--alpha",
        type=positive_float,
        default=1.0,
        help="with --server: α, the emphasis on quality in s of latency per unit of PAI (docs/glossary.md)",
    )
    p.add_argument(
        "--profile",
        type=profile,
        help="with --server: this device's k,h in s per step, or a calibrate profile JSON file (default: measured)",
    )
    p.add_argument("--preset", help="with --server: a profile preset (row3..row10, edge-h100) instead of --profile")
    p.set_defaults(handler=run)


def _request(args) -> GenerationRequest:
    return GenerationRequest(
        args.prompt,
        steps=args.steps,
        seed=args.seed,
        guidance_scale=args.guidance_scale,
        negative_prompt=args.negative_prompt,
        **generation_fields(args),
    )


def run(args) -> None:
    check_model_config(args.model_config, args.model, args.edge_model)
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {str(args.out)!r}")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out directory {str(args.out.parent)!r} does not exist")
    if args.server is not None:
        return _run_remote(args)
    import time

    started = time.perf_counter()
    if args.profile is not None or args.preset is not None:
        raise UsageError("--profile and --preset need --server")
    from edgediff.runtime.images import image_path, save_image
    from edgediff.runtime.split import generate, image_requests

    request = _request(args)
    args.model = args.model or "tiny"
    model = load_model(args.model, args.device, args.model_config, args.dtype, args.lora)
    from edgediff.runtime.executor import request_calls

    model.check_steps(request.steps)  # one line naming steps if its scheduler cannot run them
    calls = request_calls(model, request)
    if args.split is not None and args.split > calls:
        raise UsageError(
            f"--split must be in [0, {calls}] (the denoiser calls of {request.steps} steps with the request's "
            f"scheduler), got {args.split}"
        )
    edge_model = model
    if args.split is not None and (args.lora or args.edge_model not in (None, args.model)):
        edge_model = load_model(args.edge_model or args.model, args.device, args.model_config, args.dtype)
    loaded_s = time.perf_counter() - started
    for i, one in enumerate(image_requests(request, args.images)):  # seeds s, s+1, ...: one image each
        out = image_path(args.out, args.images, i)
        result = generate(one, model, args.split, edge_model, args.payload_dtype)
        size = save_image(result.image, out, args.native_size)
        where = (
            "all local"
            if result.offloaded_steps == 0
            else (f"{result.offloaded_steps} at the edge on {edge_model.name}, payload {result.payload_bits} bits")
        )
        print(
            f"wrote {out}: {size}, {one.steps} steps = {result.steps} denoiser calls "
            f"({where}; {result.split} local on {model.name}) in {result.edge_s + result.local_s:.2f} s "
            f"(denoising, payload and decoding; importing torch and loading the model took {loaded_s:.2f} s before)"
        )


def _run_remote(args) -> None:
    if not args.server.startswith(("http://", "https://")):
        raise UsageError(f"--server needs a URL with its scheme, e.g. http://{args.server}; got {args.server!r}")
    if args.split is not None or args.edge_model is not None:
        raise UsageError("with --server the edge decides the split and runs its own model: drop --split/--edge-model")
    if args.profile is not None and args.preset is not None:
        raise UsageError("give --profile or --preset, not both")
    from edgediff.core.profiles import PRESETS

    if args.preset is not None and args.preset not in PRESETS:
        raise UsageError(f"unknown --preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    from edgediff.service import client as edge

    request = _request(args)
    try:
        with edge.EdgeClient(args.server, api_key=args.api_key or os.environ.get("EDGEDIFF_API_KEY") or None) as client:
            info = client.info()  # the edge's latent space: checked before anything runs
            if args.model is None:
                model = edge.load_edge_model(
                    info, args.device, lambda src: load_model(src, args.device, dtype=args.dtype, loras=args.lora)
                )
            else:
                model = load_model(args.model, args.device, args.model_config, args.dtype, args.lora)
            edge.check_edge_model(info, model)
            device_profile = args.profile
            if device_profile is None and args.preset is None:  # measure this device: batch 1 and 2, median of 5
                from edgediff.runtime.calibrate import CalibrationConfig, calibrate

                measured = calibrate(model, CalibrationConfig(batches=(1, 2), repeats=5, warmup=1))
                device_profile = (max(measured.k + measured.h, 1e-6), 0.0)
            results = edge.generate_remote_images(
                client,
                request,
                model,
                images=args.images,
                alpha=args.alpha,
                profile=device_profile,
                preset=args.preset,
                timeout=args.timeout,
            )
    except edge.ServiceTimeout:  # its own exit code (4), not bad input
        raise
    except edge.ServiceError as err:  # the service refused or failed: reported like bad input, in one line
        if err.status_code == 401:
            raise UsageError(f"{err}: pass --api-key KEY or set EDGEDIFF_API_KEY") from None
        raise UsageError(str(err)) from None
    from edgediff.runtime.images import image_path, save_image
    from edgediff.runtime.split import image_requests

    for i, (one, result) in enumerate(zip(image_requests(request, args.images), results)):  # as in-process
        out = image_path(args.out, args.images, i)
        size = save_image(result.image, out, args.native_size)
        print(f"wrote {out}: {size}, {one.steps} steps = {result.steps} denoiser calls " + edge.describe(result, model))
    told = sum(device_profile) if device_profile is not None else PRESETS[args.preset].local_step_latency
    calibrated = args.profile is None and args.preset is None
    local_s, split = sum(r.local_s for r in results), sum(r.split for r in results)
    print(_step_time_note(told, local_s, split, calibrated))


def _step_time_note(told_s: float, local_s: float, local_steps: int, calibrated: bool = False) -> str:
    """The device step time the edge was told against the one this run measured: the edge's
    prediction is only as good as the profile. ``calibrated``: the profile was measured here
    before submitting (no --profile/--preset), so it is called measured, not declared."""
    told = f"calibrated {told_s:.3f} s (measured before submitting)" if calibrated else f"declared {told_s:.3f} s"
    if local_steps == 0:
        return f"device step: {told} (no step ran on the device)"
    measured = local_s / local_steps
    note = f"device step: {told}, {'this run ' if calibrated else ''}measured {measured:.3f} s"
    note += f" (local time incl. decoding / {local_steps} steps)"
    if not 0.5 <= measured / told_s <= 2.0:
        what = "calibrated" if calibrated else "declared"
        note += f"; the {what} profile does not fit this device: pass --profile from `edgediff calibrate --out FILE`"
    return note
