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
from edgediff.cli._lora import add_lora
from edgediff.runtime.request import GenerationRequest


def add_parsers(sub) -> None:
    request = defaults(GenerationRequest)
    p = sub.add_parser("generate", help="generate an image, split between an edge model and a local model")
    p.add_argument("--prompt", required=True, help="the text prompt")
    p.add_argument(
        "--model",
        default="tiny",
        help="the device's model: a built-in one (tiny, tiny-italic, tiny-bold, tiny-small), a pipeline directory "
        "or a .safetensors file",
    )
    add_model_config(p)
    add_lora(p, "the device's model only (the edge runs the plain model)")
    p.add_argument("--edge-model", help="the edge's cluster-wide model (default: --model, without --lora)")
    p.add_argument("--split", type=non_negative_int, help="split n: steps N..n+1 at the edge (default N: all local)")
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
        "runs the first steps (API key, if the service needs one: the EDGEDIFF_API_KEY environment variable)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        help="with --server: seconds to wait for the edge's decision and latent; past it, exit code 4",
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
    )


def _save(image, out: Path, native: bool) -> str:
    """Write ``image`` (enlarged to a viewable size unless ``native``); return what was written."""
    from PIL import Image

    from edgediff.runtime.images import enlarge

    picture = Image.fromarray(image) if native else enlarge(image)
    try:
        picture.save(out)
    except OSError as err:
        raise UsageError(f"cannot write {str(out)!r}: {err.strerror or err}") from None
    h, w = image.shape[:2]
    size = f"{picture.width}x{picture.height}"
    return size if picture.width == w else f"{size} (the model's {w}x{h}, enlarged {picture.width // w}x)"


def run(args) -> None:
    if args.split is not None and args.split > args.steps:
        raise UsageError(f"--split must be in [0, --steps = {args.steps}], got {args.split}")
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
    from edgediff.runtime.split import generate

    request = _request(args)
    model = load_model(args.model, args.device, args.model_config, args.lora)
    edge_model = model
    if args.split is not None and (args.lora or args.edge_model not in (None, args.model)):
        edge_model = load_model(args.edge_model or args.model, args.device, args.model_config)
    loaded_s = time.perf_counter() - started
    result = generate(request, model, args.split, edge_model, args.payload_dtype)
    size = _save(result.image, args.out, args.native_size)
    where = (
        "all local"
        if result.offloaded_steps == 0
        else (f"{result.offloaded_steps} at the edge on {edge_model.name}, payload {result.payload_bits} bits")
    )
    print(
        f"wrote {args.out}: {size}, {result.steps} steps "
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
    from edgediff.service.client import EdgeClient, ServiceError, ServiceTimeout, generate_remote

    request = _request(args)
    model = load_model(args.model, args.device, args.model_config, args.lora)
    device_profile = args.profile
    if device_profile is None and args.preset is None:  # measure this device: batch 1 and 2 steps, median of 5
        from edgediff.runtime.calibrate import CalibrationConfig, calibrate

        measured = calibrate(model, CalibrationConfig(batches=(1, 2), repeats=5, warmup=1))
        device_profile = (max(measured.k + measured.h, 1e-6), 0.0)
    try:
        with EdgeClient(args.server, api_key=os.environ.get("EDGEDIFF_API_KEY") or None) as client:
            result = generate_remote(
                client,
                request,
                model,
                alpha=args.alpha,
                profile=device_profile,
                preset=args.preset,
                timeout=args.timeout,
            )
    except ServiceTimeout:  # its own exit code (4), not bad input
        raise
    except ServiceError as err:  # the service refused or failed: reported like bad input, in one line
        raise UsageError(str(err)) from None
    size = _save(result.image, args.out, args.native_size)
    st = result.status
    if st["status"] == "done":
        hit = f", cache hit at step {st['cache_hit_step']}" if st["cache_hit_step"] else ""
        where = f"granted: {st['offloaded_steps']} steps at the edge{hit}, payload {result.payload_bits} bits"
    elif st["status"] == "denied":
        where = f"denied ({st.get('reason')}): all steps local"
    else:
        where = f"edge failed ({st.get('reason')}): all steps local"
    predicted = st.get("predicted_latency_s")
    print(
        f"wrote {args.out}: {size}, {request.steps} steps ({where}; {result.split} local on {model.name}); "
        f"latency predicted {'n/a' if predicted is None else f'{predicted:.2f} s'}, "
        f"measured {result.measured_latency_s:.2f} s (submit to decoded image)"
    )
    declared = sum(device_profile) if device_profile is not None else PRESETS[args.preset].local_step_latency
    print(_step_time_note(declared, result.local_s, result.split))


def _step_time_note(declared_s: float, local_s: float, local_steps: int) -> str:
    """The device step time the edge was told against the one this run measured: the edge's
    prediction is only as good as the declared profile."""
    if local_steps == 0:
        return f"device step: declared {declared_s:.3f} s (no step ran on the device)"
    measured = local_s / local_steps
    note = (
        f"device step: declared {declared_s:.3f} s, measured {measured:.3f} s"
        f" (local time incl. decoding / {local_steps} steps)"
    )
    if not 0.5 <= measured / declared_s <= 2.0:
        note += "; the declared profile does not fit this device: pass --profile from `edgediff calibrate --out FILE`"
    return note
