"""``edgediff cache-sim``: simulate intermediate-output caching (docs/caching-model.md);
defaults are ``CacheConfig``'s."""

from __future__ import annotations

import json

from edgediff.cache.config import BANDWIDTH_UNITS, CacheConfig, CacheConfigError
from edgediff.cli._args import UsageError, add_policy_options, defaults, listing, number, positive_int

DEFAULT_POLICY = "lcbfu"


def add_parsers(sub) -> None:
    from edgediff.cache.policies import REGISTRY

    d = defaults(CacheConfig)
    p = sub.add_parser(
        "cache-sim",
        help="simulate intermediate-output caching for T slots (docs/caching-model.md)",
        **listing("policies", {name: summary for name, (_, summary) in REGISTRY.items()}, 6),
    )
    p.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        help="a policy name below; the default is fast, needs no torch and is the service's eviction rule",
    )
    add_policy_options(p, "the policy (its constructor's keyword parameters)")
    p.add_argument("--users", type=positive_int, default=d["users"], help="users U")
    p.add_argument("--slots", type=positive_int, default=d["slots"], help="time slots T")
    p.add_argument(
        "--capacity-gb",
        type=number(float, 0.0),
        default=d["capacity_bytes"] / 1e9,
        help="edge cache capacity in GB",
    )
    p.add_argument(
        "--reusable-steps",
        type=positive_int,
        default=d["reusable_steps"],
        help="reusable bound S*: steps whose latents can be reused",
    )
    p.add_argument(
        "--V",
        type=number(float, 0.0),
        default=d["V"],
        help="Lyapunov control parameter V: weight of latency against the queue",
    )
    p.add_argument(
        "--bandwidth-unit",
        choices=list(BANDWIDTH_UNITS),
        default="MHz",
        help="the unit of the paper's bandwidth [80, 100]: MHz (5G NR carriers) or kHz (revision 2's reading, "
        "a sensitivity case; docs/caching-model.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the requests and the policy")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=run)


def run(args) -> None:
    from edgediff.cache.policies import cache_policy_spec

    try:
        cfg = CacheConfig(
            users=args.users,
            slots=args.slots,
            capacity_bytes=args.capacity_gb * 1e9,
            reusable_steps=args.reusable_steps,
            V=args.V,
            bandwidth_unit_hz=BANDWIDTH_UNITS[args.bandwidth_unit],
        )
    except CacheConfigError as err:  # name the option, not the field
        message = str(err).replace("reusable_steps", "--reusable-steps").replace("capacity_bytes", "--capacity-gb")
        raise UsageError(message) from None
    cache_policy_spec(args.policy)  # UnknownCachePolicy before any work, without loading torch
    from edgediff.cache.simulator import simulate

    result = simulate(cfg, args.policy, args.seed, **dict(args.policy_options)).summary()
    if args.json:
        print(json.dumps(result))
    else:
        print(
            "\n".join(
                f"{key:<26} {value:.4f}" if isinstance(value, float) else f"{key:<26} {value}"
                for key, value in result.items()
            )
        )
