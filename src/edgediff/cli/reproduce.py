"""``edgediff reproduce``: a paper figure as PNG, CSV and a Markdown summary."""

from __future__ import annotations

import logging
from pathlib import Path

from edgediff.cli._args import UsageError, listing, name_list, positive_int


def add_parsers(sub) -> None:
    from edgediff.reproduce import REGISTRY

    p = sub.add_parser(
        "reproduce",
        help="reproduce a paper figure (PNG, CSV, Markdown summary)",
        **listing("figures", {name: spec.summary for name, spec in REGISTRY.items()}, 12),
    )
    p.add_argument("name", help="a figure name below")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (fewer slots and points)")
    p.add_argument("--seed", type=int, default=0, help="seed of every instance and run")
    p.add_argument("--workers", type=positive_int, help="local processes for sweeps (default: one per CPU)")
    p.add_argument("--ray", metavar="ADDRESS", help="run sweeps on an existing Ray cluster (pip install edgediff[ray])")
    p.add_argument(
        "--policies",
        type=name_list,
        help="fig11a-c: these policies (names, module:function or file.py:function) instead of the paper's, "
        "exact always beside; cache-fig8-10: these cache policies, oo and ncldc always beside",
    )
    p.add_argument(
        "--scenario",
        type=Path,
        help="fig11a-c: draw the instances from this scenario file (docs/formats.md): its users, G and B_max; "
        "cache-fig6 and cache-fig8-10: a cache scenario file, the parameters the sweep starts from",
    )
    p.set_defaults(handler=run)


def run(args) -> None:
    from edgediff.parallel import SweepError
    from edgediff.reproduce import check_figure_options, figure_names, reproduce

    given = [key for key in ("policies", "scenario") if getattr(args, key)]
    part = check_figure_options(figure_names(args.name), given)  # UnknownFigure before any work
    options = {"workers": args.workers, "ray": args.ray}
    if part == "cache":
        from edgediff.cache.policies import cache_policy_spec
        from edgediff.cache.scenario import load_cache_scenario as load
    else:
        from edgediff.core.scenario import load_scenario as load
        from edgediff.offload.policies import policy_spec
    for name in args.policies or ():
        (cache_policy_spec if part == "cache" else policy_spec)(name)
    if args.policies:
        options["policies"] = args.policies
    if args.scenario is not None:
        options["scenario"] = load(args.scenario)
    logging.getLogger("edgediff").setLevel(logging.INFO)  # long runs show which figure and step they are on
    try:
        paths = reproduce(args.name, args.out, quick=args.quick, seed=args.seed, options=options)
    except OSError as err:
        raise UsageError(f"cannot write to {str(args.out)!r}: {err.strerror}") from None
    except SweepError as err:  # a sweep worker failed: one line, exit 2 as before
        raise UsageError(str(err)) from None
    for path in paths:
        print(path)
