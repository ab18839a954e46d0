"""``edgediff cache-sim``: simulate intermediate-output caching (docs/caching-model.md);
defaults are ``CacheConfig``'s, or a cache scenario file's (docs/formats.md)."""

from __future__ import annotations

import json
from pathlib import Path

from edgediff.cache.config import BANDWIDTH_UNITS, CacheConfig, CacheConfigError
from edgediff.cli._args import UsageError, defaults, listing, name_list, number, policy_option, positive_int

DEFAULT_POLICY = "lcbfu"
EXAMPLES = """
examples:
  edgediff cache-sim --slots 2000 --policy lru
  edgediff cache-sim --scenario campus.toml --policy oo --plot run.png
  edgediff cache-sim --slots 500 --policies oo,lcbfu,ncldc
  edgediff cache-sim --policy examples/policies/value_aware_cache.py:decide --policy-option margin=2
"""


def add_parsers(sub) -> None:
    from edgediff.cache.policies import REGISTRY

    d = defaults(CacheConfig)
    note = "\n  module:attr, file.py:attr  your own policy (docs/your-policy.md)\n" + EXAMPLES
    p = sub.add_parser(
        "cache-sim",
        help="simulate intermediate-output caching for T slots (docs/caching-model.md)",
        **listing("policies", {name: summary for name, (_, summary) in REGISTRY.items()}, 12, note),
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--policy",
        default=DEFAULT_POLICY,
        help="a policy name below, or your own as module:attr or file.py:attr; the default is fast, needs no "
        "torch and is the service's eviction rule",
    )
    which.add_argument(
        "--policies",
        type=name_list,
        help="several policies on the same requests, one table row each (a policy that fails gets n/a and the "
        "others run)",
    )
    p.add_argument(
        "--policy-option",
        dest="policy_options",
        metavar="KEY=VALUE",
        type=policy_option,
        action="append",
        default=[],
        help="an option of the policy (its class's or function's keyword parameters), e.g. margin=2 for the "
        "value-aware example of docs/your-policy.md; VALUE is JSON when it parses, else text; repeatable",
    )
    p.add_argument(
        "--scenario",
        type=Path,
        help="cache scenario file (JSON or .toml, docs/formats.md): the Part B parameters; the options below "
        "override it",
    )
    p.add_argument("--users", type=positive_int, help=f"users U (default: {d['users']}, or the scenario's)")
    p.add_argument("--slots", type=positive_int, help=f"time slots T (default: {d['slots']}, or the scenario's)")
    p.add_argument(
        "--capacity-gb",
        type=number(float, 0.0),
        help=f"edge cache capacity in GB (default: {d['capacity_bytes'] / 1e9:g}, or the scenario's)",
    )
    p.add_argument(
        "--reusable-steps",
        type=positive_int,
        help=f"reusable bound S*: steps whose latents can be reused (default: {d['reusable_steps']}, or the "
        "scenario's)",
    )
    p.add_argument(
        "--V",
        type=number(float, 0.0),
        help=f"Lyapunov control parameter V: weight of latency against the queue (default: {d['V']:g}, or the "
        "scenario's)",
    )
    p.add_argument(
        "--bandwidth-unit",
        choices=list(BANDWIDTH_UNITS),
        help="the unit of the paper's bandwidth [80, 100]: MHz (5G NR carriers, the default) or kHz (revision "
        "2's reading, a sensitivity case; docs/caching-model.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the requests and the policy")
    p.add_argument("--plot", type=Path, metavar="PNG", help="also draw the run slot by slot into this PNG")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=run)


def _config(args) -> CacheConfig:
    from edgediff.cache.scenario import load_cache_scenario

    cfg = CacheConfig() if args.scenario is None else load_cache_scenario(args.scenario)
    given = {
        "users": args.users,
        "slots": args.slots,
        "capacity_bytes": None if args.capacity_gb is None else args.capacity_gb * 1e9,
        "reusable_steps": args.reusable_steps,
        "V": args.V,
        "bandwidth_unit_hz": None if args.bandwidth_unit is None else BANDWIDTH_UNITS[args.bandwidth_unit],
    }
    try:
        return cfg.with_(**{k: v for k, v in given.items() if v is not None})
    except CacheConfigError as err:  # name the option, not the field
        message = str(err).replace("reusable_steps", "--reusable-steps").replace("capacity_bytes", "--capacity-gb")
        raise UsageError(message) from None


def run(args) -> None:
    from edgediff.cache.report import format_summary, format_table, never_filled_note, plot_runs, run_policies

    cfg = _config(args)
    policies = args.policies or [args.policy]
    if args.plot is not None and not args.plot.parent.is_dir():
        raise UsageError(f"--plot: no directory {str(args.plot.parent)!r}")
    results, failed, requests = run_policies(cfg, policies, args.seed, dict(args.policy_options))
    summaries = [r.summary() for r in results]
    if args.json:
        print(json.dumps(summaries if args.policies else summaries[0]))
    else:
        print(format_table(results, failed, policies) if args.policies else format_summary(summaries[0]))
        never = [r.policy for r in results if r.cache_full_slot < 0 and r.stores]
        if never and cfg.capacity_entries:
            print(f"note: {', '.join(never)}: {never_filled_note(-1, cfg.slots)}")
    if args.plot is not None:
        path = plot_runs(results, requests, args.plot)
        if not args.json:
            print(f"wrote {path}")
