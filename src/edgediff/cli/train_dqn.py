"""``edgediff train-dqn``: train the PER-DQN offloading policy and write a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgediff.cli._args import UsageError, make_directory, positive_int, refuse_overwrite


def int_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (integers), got {text!r}") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI, got {text!r}")
    return lo, hi


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


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
        type=int_range,
        help="LO,HI: draw B_max per episode in [LO, HI] (general and gpu scopes; default: B_max = 20)",
    )
    p.add_argument(
        "--users-range", type=int_range, help="LO,HI: user counts of the general and gpu scopes (default: 4,20)"
    )
    p.add_argument("--gpus-range", type=int_range, help="LO,HI: G of the general scope (default: 1,16)")
    p.add_argument(
        "--scenario",
        type=Path,
        help="draw the windows from a scenario file (its users, B_max, G, devices and alpha; docs/formats.md)",
    )
    p.add_argument(
        "--cached-share", type=share, default=0.0, help="share of the windows with random cached steps (0 to 1)"
    )
    p.add_argument(
        "--curriculum",
        type=positive_int,
        default=1,
        help="stages: stage k of S draws from the smallest k/S of the user counts (1: no curriculum)",
    )
    p.add_argument("--episodes", type=positive_int, default=20000, help="training episodes E")
    p.add_argument(
        "--preset",
        choices=["paper", "tuned", "set"],
        default="tuned",
        help="hyper-parameters: the paper's; tuned (the paper's network, the paper figures' model); set (a network "
        "for windows of any size, the dqn policy's default model)",
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
    scenario = None
    if args.scenario is not None:
        from edgediff.core.scenario import load_scenario

        if args.scope != "general" or args.users_range or args.gpus_range or args.bmax_range:
            raise UsageError("--scenario sets the users, B_max and G: give no --scope, --users-range, "
                             "--gpus-range or --bmax-range with it")  # fmt: skip
        scenario = load_scenario(args.scenario)
        if scenario.B_max < 1:
            raise UsageError(f"scenario {args.scenario}: B_max must be >= 1 to train (B_max 0 is all-local)")
    from edgediff.offload.dqn.session import train_to_directory

    make_directory(args.out)
    summary = train_to_directory(
        args.out,
        scope=args.scope,
        gpus=args.gpus,
        users=args.users,
        bmax_range=args.bmax_range,
        users_range=args.users_range,
        gpus_range=args.gpus_range,
        scenario=scenario,
        cached_share=args.cached_share,
        curriculum=args.curriculum,
        episodes=args.episodes,
        preset=args.preset,
        seed=args.seed,
        eval_every=args.eval_every,
        held_out=args.held_out,
    )
    print(json.dumps(summary, indent=2))
