"""``edgediff compare``: policies side by side on random instances, a scenario's, or instance files."""

from __future__ import annotations

import json
from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    add_policy_options,
    int_list,
    make_directory,
    name_list,
    non_negative_int,
    positive_int,
)


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare policies on random instances, a scenario's, or a directory of instance files",
        description="Mean objective (s), normalized score (1 = exact, 0 = all local, below 0 = worse than all"
        " local) and decision time of each policy; docs/glossary.md explains the words.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--scenario", type=Path, help="scenario file (JSON or .toml, docs/formats.md) to draw the instances from"
    )
    source.add_argument(
        "--instances", type=Path, metavar="DIR", help="compare on every *.json instance file in DIR instead"
    )
    p.add_argument(
        "--users", type=int_list, help="user counts, e.g. 4,8,12 (default 4,8,12,16,20, or the scenario's users)"
    )
    p.add_argument("--gpus", type=positive_int, help="edge GPUs G (default 8, or the scenario's G)")
    p.add_argument("--bmax", type=non_negative_int, help="max granted users B_max (default 20, or the scenario's)")
    p.add_argument("--cases", type=positive_int, default=100, help="instances per user count")
    p.add_argument(
        "--policies",
        type=name_list,
        default=["exact", "ga", "milp", "b1", "b2", "b3"],
        help="comma-separated policy names (see edgediff solve --help), your own among them as module:function "
        "or file.py:function (docs/your-policy.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the instances (each case has its own stream)")
    p.add_argument("--checkpoint", type=Path, help="dqn checkpoint directory (default: the shipped one)")
    add_policy_options(p, "every listed policy that takes KEY (at least one must)")
    p.add_argument("--out", type=Path, help="directory for compare.csv (decision time in seconds there)")
    p.add_argument(
        "--plot",
        action="store_true",
        help="also draw compare.png beside compare.csv (needs --out): score and decision time against users",
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(handler=run)


def run(args) -> None:
    from dataclasses import asdict

    from edgediff.offload.compare import compare, write_csv
    from edgediff.offload.policies import policy_spec
    from edgediff.offload.report import format_table

    for name in args.policies:  # fail before any work
        policy_spec(name)
    if args.plot and args.out is None:
        raise UsageError("--plot draws compare.png beside compare.csv: give --out DIR")
    if args.instances is not None:
        rows = _compare_directory(args)
    else:
        from dataclasses import replace

        from edgediff.core.scenario import PAPER_SCENARIO, load_scenario

        scenario = PAPER_SCENARIO if args.scenario is None else load_scenario(args.scenario)
        scenario = replace(
            scenario, G=args.gpus or scenario.G, B_max=scenario.B_max if args.bmax is None else args.bmax
        )
        if args.out is not None:
            make_directory(args.out)
        rows = compare(
            args.users or scenario.users,
            scenario.G,
            args.cases,
            args.policies,
            seed=args.seed,
            B_max=scenario.B_max,
            checkpoint=args.checkpoint,
            policy_options=dict(args.policy_options),
            scenario=scenario,
        )
    if args.out is not None:
        write_csv(args.out / "compare.csv", rows)
    if args.plot:
        from edgediff.offload.compare import plot_rows

        plot_rows(rows, args.out / "compare.png")
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
        return
    for users, gpus, cases in dict.fromkeys((r.users, r.gpus, r.cases) for r in rows):
        print(f"\n{users} users, G = {gpus}, {cases} case{'s' if cases != 1 else ''} (decision time in ms)")
        print(
            format_table(
                ["policy", "mean_objective", "mean_score", "mean_decision_ms"],
                [
                    [
                        r.policy,
                        *(["n/a"] * 3 if r.note else [r.mean_objective, r.mean_score, r.mean_decision_time_s * 1000]),
                    ]
                    for r in rows
                    if (r.users, r.gpus) == (users, gpus)
                ],
            )
        )
        for r in rows:
            if r.note and (r.users, r.gpus) == (users, gpus):
                print(f"n/a {r.policy}: {r.note}")
    if args.out is not None:
        print(f"\nwrote {args.out / 'compare.csv'} (mean_decision_time_s in seconds)")
    if args.plot:
        print(f"wrote {args.out / 'compare.png'}")


def _compare_directory(args):
    """``--instances DIR``: every ``*.json`` file in DIR, each an instance file; no drawing options."""
    from edgediff.core.instance import InstanceError, load_instance
    from edgediff.offload.compare import compare_instances

    given = [f"--{name}" for name in ("users", "gpus", "bmax") if getattr(args, name) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} draw instances; with --instances the files say it all")
    if not args.instances.is_dir():
        raise UsageError(f"--instances: {str(args.instances)!r} is not a directory")
    files = sorted(args.instances.glob("*.json"))
    if not files:
        raise UsageError(f"--instances: no *.json files in {str(args.instances)!r}")
    instances = []
    for path in files:
        try:
            instances.append(load_instance(path))
        except InstanceError as err:
            raise InstanceError(f"{path.name}: {err}") from None
    if args.out is not None:
        make_directory(args.out)
    return compare_instances(
        instances,
        args.policies,
        seed=args.seed,
        checkpoint=args.checkpoint,
        policy_options=dict(args.policy_options),
    )
