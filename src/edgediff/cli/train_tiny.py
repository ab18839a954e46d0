"""``edgediff train-tiny``: train the embedded cluster-wide and personalized digit models."""

from __future__ import annotations

from pathlib import Path

from edgediff.cli._args import UsageError, make_directory


def add_parsers(sub) -> None:
    p = sub.add_parser("train-tiny", help="train the embedded cluster-wide and personalized digit models")
    p.add_argument("--out", type=Path, required=True, help="directory for the weights, classifier and report")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of every training stage")
    p.add_argument("--quick", action="store_true", help="a few steps of each stage (a smoke test, not usable weights)")
    p.add_argument(
        "--lora",
        action="store_true",
        help="instead: LoRA personalizations (same users, images and identifiers) of a trained cluster-wide tiny, "
        "written to OUT/lora/tiny-<style>.safetensors (needs the peft extra)",
    )
    p.add_argument(
        "--base",
        type=Path,
        metavar="DIR",
        help="with --lora: a train-tiny --out folder whose tiny model the LoRAs adapt (default: the shipped one)",
    )
    p.set_defaults(handler=run)


def run(args) -> None:
    if args.base is not None and not args.lora:
        raise UsageError("--base applies only with --lora")
    if args.base is not None and not (args.base / "tiny" / "unet.safetensors").is_file():
        raise UsageError(f"--base {str(args.base)!r} is not a train-tiny output (no tiny/unet.safetensors)")
    make_directory(args.out)
    if args.lora:
        return _run_lora(args)
    from edgediff.personalize.train import TrainConfig, train_tiny

    config = TrainConfig.quick(args.seed) if args.quick else TrainConfig(seed=args.seed)
    report = train_tiny(args.out, config)
    print(
        f"wrote {args.out}: cluster-wide samples recognized {100 * report['cluster_recognition']:.1f} %, "
        + ", ".join(f"{name} {100 * r['recognition']:.1f} %" for name, r in report["personal"].items())
        + f"; {report['wall_s']:.0f} s wall, {report['cpu_s']:.0f} s cpu"
    )


def _run_lora(args) -> None:
    from edgediff.personalize.lora import LORA_FOLDER, train_tiny_lora
    from edgediff.personalize.train import TrainConfig

    config = TrainConfig.quick(args.seed) if args.quick else TrainConfig(seed=args.seed)
    report = train_tiny_lora(args.out, config, args.base)
    print(
        f"wrote {args.out / LORA_FOLDER}: "
        + ", ".join(
            f"{name} {100 * r['recognition']:.1f} % recognized ({r['bytes'] / 1024:.0f} KiB)"
            for name, r in report["personal"].items()
        )
        + f"; {report['wall_s']:.0f} s wall, {report['cpu_s']:.0f} s cpu"
    )
