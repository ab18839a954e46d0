"""``edgediff demo``: a 20-user window under every policy, then the edge service end to end."""

from __future__ import annotations

from pathlib import Path

from edgediff.cli._args import UsageError, positive_int


def add_parsers(sub) -> None:
    p = sub.add_parser("demo", help="a 20-user window on the paper defaults, every policy; then the edge service")
    p.add_argument("--users", type=positive_int, default=20, help="users in the window")
    p.add_argument("--gpus", type=positive_int, default=8, help="edge GPUs G")
    p.add_argument("--seed", type=int, default=0, help="seed of the window's instance and of the service demo")
    p.add_argument("--out", type=Path, default=Path("edgediff-demo.png"), help="PNG grid of the service demo's images")
    p.add_argument("--no-service", action="store_true", help="only the policies, not the service demo")
    p.set_defaults(handler=run)


def run(args) -> None:
    from edgediff.offload.demo import run_demo

    print(run_demo(args.users, args.gpus, args.seed))
    if args.no_service:
        return
    if args.out.suffix.lower() != ".png" or not args.out.parent.is_dir():
        raise UsageError(f"--out must be a .png file in an existing directory, got {str(args.out)!r}")
    from edgediff.service.demo import run_service_demo

    print()
    print(run_service_demo(args.out, seed=args.seed))
