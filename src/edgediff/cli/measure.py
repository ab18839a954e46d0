"""``edgediff measure-pai`` and ``measure-reuse``: measure the PAI curve and the reusable bound S*
on real models (docs/runtime.md)."""

from __future__ import annotations

import json
from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    defaults,
    load_model,
    make_directory,
    name_list,
    non_negative_int,
    number,
    positive_int,
)
from edgediff.personalize.reuse import OUTPUTS, ReuseConfig


def add_parsers(sub) -> None:
    # PaiConfig's module imports SciPy, so measure-pai's defaults are written here.
    p = sub.add_parser("measure-pai", help="hybrid inference at many splits: accuracy, personalization, PAI fit")
    p.add_argument("--cluster", required=True, help="cluster-wide (edge) model: 'tiny' or a model directory")
    p.add_argument("--personal", type=name_list, help="personalized models P1,P2,P3 (>= 2)")
    p.add_argument(
        "--personal-lora",
        type=name_list,
        metavar="L1,L2,...",
        help="instead of --personal: LoRA personalizations (files or shipped names, e.g. tiny-italic-lora); "
        "user i's model is --cluster with Li loaded",
    )
    p.add_argument(
        "--splits",
        help="split points START:STOP:STEP (STOP = N included) or a comma list (default 0:200:20; 0:50:5 with --quick)",
    )
    p.add_argument("--prompts", type=Path, help="file with one prompt per line (default: 'a handwritten digit 0..9')")
    p.add_argument("--samples", type=positive_int, help="samples per prompt (default 4; 2 with --quick)")
    p.add_argument("--guidance-scale", type=number(float, 0.0), default=3.0, help="classifier-free guidance")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the samples")
    p.add_argument("--quick", action="store_true", help="N = 50, splits 0:50:5, 2 samples per prompt")
    p.add_argument("--out", type=Path, help="directory for pai.json, pai.csv, fig6_grid.png, fig7_pai.png")
    p.add_argument("--json", action="store_true", help="print the summary JSON")
    p.set_defaults(handler=run_pai)

    d = defaults(ReuseConfig)
    p = sub.add_parser("measure-reuse", help="MSE/PSNR between consecutive denoising outputs and the bound S*")
    p.add_argument("--model", default="tiny", help="a built-in model or a model directory")
    p.add_argument("--steps", type=positive_int, default=d["steps"], help="denoising steps S")
    p.add_argument(
        "--pmax",
        type=number(float, 0.0, strict=True),
        default=d["pmax_db"],
        help="P_max in dB: PSNR above it means consecutive outputs are alike",
    )
    p.add_argument("--samples", type=positive_int, default=d["samples"], help="requests averaged")
    p.add_argument(
        "--output",
        choices=list(OUTPUTS),
        default=d["output"],
        help="D_m: the step's clean-image estimate (x0) or the intermediate latent itself, decoded",
    )
    p.add_argument("--seed", type=non_negative_int, default=d["seed"], help="seed of the requests")
    p.add_argument("--json", action="store_true", help="print the result JSON")
    p.set_defaults(handler=run_reuse)


def _read_prompts(path: Path | None) -> list[str]:
    from edgediff.personalize.pai import default_prompts

    if path is None:
        return default_prompts()
    try:
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise UsageError(f"cannot read --prompts {str(path)!r}: {reason}") from None
    if not prompts:
        raise UsageError(f"--prompts {str(path)!r} has no prompts")
    return prompts


def run_pai(args) -> None:
    from edgediff.personalize.pai import DEFAULT_SPLITS, QUICK_SPLITS, PaiConfig, parse_splits

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
    if (args.personal is None) == (args.personal_lora is None):
        raise UsageError("give --personal or --personal-lora (one of them)")
    if len(args.personal or args.personal_lora) < 2:
        raise UsageError("--personal needs at least two models (personalization compares users' images)")
    from edgediff.runtime.lora import LoraWeights, lora_file

    loras = [LoraWeights.parse(name) for name in args.personal_lora or ()]
    for lora in loras:  # a missing or wrong file is named before any model loads
        lora_file(lora.path)
    prompts = _read_prompts(args.prompts)
    from edgediff.personalize.data import prompt_digit

    for prompt in prompts:
        try:
            prompt_digit(prompt)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.out is not None:
        make_directory(args.out)
    from edgediff.personalize.classifier import shipped_classifier
    from edgediff.personalize.pai import measure_pai, write_outputs

    classifier = shipped_classifier(args.cluster)
    cluster = load_model(args.cluster)
    if args.personal is not None:
        personal = [load_model(name) for name in args.personal]
    else:  # the edge's model with one user's adapter each
        personal = [load_model(args.cluster, loras=[lora]) for lora in loras]
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
    fit, N = summary["pai"], summary["N"]
    print(f'fit (n in steps of an N = {N}-step run; for instance and scenario files with "N": {N}): '
          f'"pai": {{"a": {fit["a"]:.4f}, "b": {fit["b"]:.2f}}}, R^2 = {summary["r2"]:.3f}')  # fmt: skip
    if N != 200:
        at200 = summary["pai_at_N200"]
        print(f'the same curve for "N": 200: "pai": {{"a": {at200["a"]:.4f}, "b": {at200["b"]:.2f}}}')
    for path in paths:
        print(f"wrote {path}")


def run_reuse(args) -> None:
    from edgediff.personalize.reuse import measure_reuse

    config = ReuseConfig(steps=args.steps, pmax_db=args.pmax, samples=args.samples, seed=args.seed, output=args.output)
    result = measure_reuse(load_model(args.model), config)
    if args.json:
        print(json.dumps(result))
        return
    print(f"model {result['model']}, S = {result['steps']} steps, {result['samples']} requests, D_m = {args.output}")
    for m, (mse, db) in enumerate(zip(result["mse"], result["psnr_db"]), start=1):
        print(f"  step {m:>3}: MSE {mse:10.3f}  PSNR {db:6.2f} dB")
    print(f"S* = {result['reusable_steps']} (largest step with PSNR below P_max = {result['pmax_db']} dB)")
