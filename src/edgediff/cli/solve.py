"""``edgediff instance`` writes a random instance; ``edgediff solve`` decides one with a policy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgediff.cli._args import UsageError, add_policy_options, listing, non_negative_int, positive_float, positive_int


def add_parsers(sub) -> None:
    p = sub.add_parser("instance", help="write a random instance (instance JSON, docs/formats.md)")
    p.add_argument("--users", type=positive_int, required=True, help="number of users I")
    p.add_argument("--gpus", type=positive_int, default=8, help="edge GPUs G (default 8)")
    p.add_argument("--bmax", type=non_negative_int, default=20, help="max granted users B_max (default 20)")
    p.add_argument("--seed", type=int, required=True)
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
    p.add_argument("--policy", default="exact", help="a policy name below (default exact)")
    p.add_argument("--latency-model", choices=LATENCY_MODELS, default="paper")
    p.add_argument("--seed", type=int, default=0, help="seed of randomized policies (ga)")
    p.add_argument("--time-limit", type=positive_float, help="solver time limit in seconds (milp)")
    p.add_argument("--checkpoint", type=Path, help="dqn checkpoint directory (default: the shipped one)")
    add_policy_options(p)
    p.add_argument("--json", action="store_true", help="print the decision JSON object (docs/formats.md)")
    p.set_defaults(handler=run_solve)


def run_instance(args) -> None:
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
