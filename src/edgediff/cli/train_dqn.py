"""``edgediff train-dqn``: train the PER-DQN offloading policy and write a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgediff.cli._args import make_directory, positive_int, refuse_overwrite


def bmax_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (integers), got {text!r}") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI, got {text!r}")
    return lo, hi


def add_parsers(sub) -> None:
    # The defaults are train_to_directory's; it imports torch, so they are not read from it here.
    p = sub.add_parser("train-dqn", help="train the PER-DQN policy and write a checkpoint")
    p.add_argument(
        "--scope",
        choices=["general", "gpu", "specific"],
        default="general",
        help="general: random G in 1..16 and 4..20 users; gpu: G = --gpus; specific: one instance",
    )
    p.add_argument("--gpus", type=positive_int, default=8, help="G of the gpu and specific scopes")
    p.add_argument("--users", type=positive_int, default=20, help="users of the specific scope")
    p.add_argument(
        "--bmax-range",
        type=bmax_range,
        help="LO,HI: draw B_max per episode in [LO, HI] (general and gpu scopes; default: B_max = 20)",
    )
    p.add_argument("--episodes", type=positive_int, default=20000, help="training episodes E")
    p.add_argument(
        "--preset",
        choices=["paper", "tuned"],
        default="tuned",
        help="hyper-parameters: the paper's, or tuned (the shipped model's)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of training and of the specific instance")
    p.add_argument("--eval-every", type=positive_int, help="episodes between held-out evaluations (default E/20)")
    p.add_argument("--held-out", type=positive_int, default=100, help="held-out instances")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="directory for the checkpoint and learning curve (an existing checkpoint there needs --force)",
    )
    p.add_argument("--force", action="store_true", help="overwrite a checkpoint (and learning curve) already in --out")
    p.set_defaults(handler=run)


def run(args) -> None:
    from edgediff.offload.dqn.checkpoint import CONFIG, WEIGHTS

    refuse_overwrite([args.out / WEIGHTS, args.out / CONFIG], args.force)
    from edgediff.offload.dqn.session import train_to_directory

    make_directory(args.out)
    summary = train_to_directory(
        args.out,
        scope=args.scope,
        gpus=args.gpus,
        users=args.users,
        bmax_range=args.bmax_range,
        episodes=args.episodes,
        preset=args.preset,
        seed=args.seed,
        eval_every=args.eval_every,
        held_out=args.held_out,
    )
    print(json.dumps(summary, indent=2))
