"""``edgediff train-tiny``: train the embedded cluster-wide and personalized digit models."""

from __future__ import annotations

from pathlib import Path

from edgediff.cli._args import make_directory


def add_parsers(sub) -> None:
    p = sub.add_parser("train-tiny", help="train the embedded cluster-wide and personalized digit models")
    p.add_argument("--out", type=Path, required=True, help="directory for the weights, classifier and report")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of every training stage")
    p.add_argument("--quick", action="store_true", help="a few steps of each stage (a smoke test, not usable weights)")
    p.set_defaults(handler=run)


def run(args) -> None:
    make_directory(args.out)
    from edgediff.personalize.train import TrainConfig, train_tiny

    config = TrainConfig.quick(args.seed) if args.quick else TrainConfig(seed=args.seed)
    report = train_tiny(args.out, config)
    print(
        f"wrote {args.out}: cluster-wide samples recognized {100 * report['cluster_recognition']:.1f} %, "
        + ", ".join(f"{name} {100 * r['recognition']:.1f} %" for name, r in report["personal"].items())
        + f"; {report['wall_s']:.0f} s wall, {report['cpu_s']:.0f} s cpu"
    )
