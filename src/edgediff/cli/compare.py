"""``edgediff compare``: policies side by side on random instances."""

from __future__ import annotations

import json
from pathlib import Path

from edgediff.cli._args import add_policy_options, int_list, make_directory, name_list, non_negative_int, positive_int


def add_parsers(sub) -> None:
    p = sub.add_parser("compare", help="compare policies on random instances")
    p.add_argument("--users", type=int_list, default=[4, 8, 12, 16, 20], help="user counts, e.g. 4,8,12")
    p.add_argument("--gpus", type=positive_int, default=8)
    p.add_argument("--bmax", type=non_negative_int, default=20)
    p.add_argument("--cases", type=positive_int, default=100, help="instances per user count")
    p.add_argument("--policies", type=name_list, default=["exact", "ga", "milp", "b1", "b2", "b3"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, help="dqn checkpoint directory (default: the shipped one)")
    add_policy_options(p, "every listed policy that takes KEY (at least one must)")
    p.add_argument("--out", type=Path, help="directory for compare.csv")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(handler=run)


def run(args) -> None:
    from dataclasses import asdict

    from edgediff.offload.compare import compare, write_csv
    from edgediff.offload.policies import policy_spec
    from edgediff.offload.report import format_table

    for name in args.policies:  # fail before any work
        policy_spec(name)
    if args.out is not None:
        make_directory(args.out)
    rows = compare(
        args.users,
        args.gpus,
        args.cases,
        args.policies,
        seed=args.seed,
        B_max=args.bmax,
        checkpoint=args.checkpoint,
        policy_options=dict(args.policy_options),
    )
    if args.out is not None:
        write_csv(args.out / "compare.csv", rows)
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
