"""``edgediff instance`` writes a random instance; ``edgediff solve`` decides one with a policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgediff.cli._args import UsageError, add_policy_options, listing, non_negative_int, positive_float, positive_int


def add_parsers(sub) -> None:
    p = sub.add_parser("instance", help="write a random instance (instance JSON, docs/formats.md)")
    p.add_argument(
        "--scenario",
        type=Path,
        help="scenario file (JSON or .toml, docs/formats.md) to draw from (default: the paper's distribution)",
    )
    p.add_argument(
        "--users", type=positive_int, help="number of users I (required without --scenario; default: its first count)"
    )
    p.add_argument("--gpus", type=positive_int, help="edge GPUs G (default 8, or the scenario's G)")
    p.add_argument("--bmax", type=non_negative_int, help="max granted users B_max (default 20, or the scenario's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random instance (same seed, same file)")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    p.set_defaults(handler=run_instance)

    from edgediff.core.model import LATENCY_MODELS
    from edgediff.offload.policies import REGISTRY

    p = sub.add_parser(
        "solve",
        help="decide one instance with a policy (decision JSON, docs/formats.md)",
        **listing(
            "policies",
            {name: spec.summary for name, spec in REGISTRY.items()},
            8,
            "\n\nan option a policy does not take is an error that lists the ones it takes",
        ),
    )
    p.add_argument("file", type=Path, help="instance JSON (docs/formats.md)")
    p.add_argument(
        "--policy", default="exact", help="a policy name below, or your own: module:function, file.py:function"
    )
    p.add_argument(
        "--latency-model",
        choices=LATENCY_MODELS,
        default="paper",
        help="score under the paper's fixed batch or the shrinking batch of a real executor (docs/offloading-model.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of randomized policies (ga)")
    p.add_argument("--time-limit", type=positive_float, help="solver time limit in seconds (milp)")
    p.add_argument("--checkpoint", type=Path, help="dqn checkpoint directory (default: the shipped one)")
    add_policy_options(p)
    p.add_argument("--json", action="store_true", help="print the decision JSON object (docs/formats.md)")
    p.set_defaults(handler=run_solve)


def run_instance(args) -> None:
    from dataclasses import replace

    from edgediff.core.instance import dumps_instance
    from edgediff.core.scenario import PAPER_SCENARIO, draw_instance, load_scenario

    if args.scenario is None and args.users is None:
        raise UsageError("give --users (or a --scenario with user counts)")
    scenario = PAPER_SCENARIO if args.scenario is None else load_scenario(args.scenario)
    scenario = replace(scenario, G=args.gpus or scenario.G, B_max=scenario.B_max if args.bmax is None else args.bmax)
    instance = draw_instance(scenario, args.users or scenario.users[0], args.seed)
    text = dumps_instance(instance)
    if args.output is None:
        sys.stdout.write(text)
        return
    try:
        args.output.write_text(text)
    except OSError as err:
        raise UsageError(f"cannot write {str(args.output)!r}: {err.strerror}") from None
    print(
        f"wrote {args.output}: {instance.num_users} users, G = {instance.G}, B_max = {instance.B_max}, "
        f"N = {instance.N}, seed {args.seed}"
    )


def run_solve(args) -> None:
    from edgediff.core.instance import load_instance
    from edgediff.core.model import evaluate
    from edgediff.offload.policies import make_policy
    from edgediff.offload.report import decision_report, format_decision

    run_settings = {"seed": args.seed, "time_limit": args.time_limit, "checkpoint": args.checkpoint}
    policy = make_policy(args.policy, {**run_settings, **dict(args.policy_options)})
    instance = load_instance(args.file)
    decision = policy.decide(instance)
    report = decision_report(
        instance, args.policy, decision, evaluate(instance, decision, args.latency_model), policy.last_decision_time_s
    )
    print(json.dumps(report) if args.json else format_decision(report))
