"""``edgediff simulate``: the digital twin of the edge service (docs/results-twin.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgediff.cli._args import (
    UsageError,
    add_policy_options,
    defaults,
    make_directory,
    name_list,
    non_negative_int,
    number,
    positive_float,
    positive_int,
)
from edgediff.service.config import ServiceConfig


def float_list(text: str) -> list[float]:
    values = []
    for part in (v for v in text.split(",") if v.strip()):
        values.append(positive_float(part))
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return values


def add_parsers(sub) -> None:
    d = defaults(ServiceConfig)
    p = sub.add_parser(
        "simulate",
        help="simulate edge sites running the service's decisions at city scale (docs/results-twin.md)",
        description="A discrete-event simulation of one or many edge sites running the service's own "
        "window decisions, policies and cache rules, with batched steps taking L(b) = k b / G + h.",
    )
    load = p.add_argument_group("workload")
    load.add_argument(
        "--scenario",
        type=Path,
        help="a scenario file (docs/formats.md): its edge, G, B_max, K, link, PAI, N, N_hat, devices and alpha "
        "distribution; the options below that are given override it",
    )
    load.add_argument("--trace", type=Path, help="a trace CSV: time,user,prompt_or_class,alpha,device")
    load.add_argument("--rate", type=positive_float, default=10.0, help="requests per second, all sites")
    load.add_argument("--duration", type=positive_float, default=600.0, help="seconds of arrivals")
    load.add_argument("--diurnal", help="'city' or a file of 24 hourly rate multipliers (hour 0 at time 0)")
    load.add_argument("--users", type=positive_int, default=1000, help="users")
    load.add_argument("--steps", type=positive_int, help="denoising steps N per request (default: 50)")
    load.add_argument(
        "--alpha", type=float_list, help="lo,hi: alpha (s) uniform in [lo, hi] (default: the paper's draw)"
    )
    load.add_argument("--device-mix", help="devices and weights, e.g. row3=1,row10=2 (default: the paper's rows 3-10)")
    load.add_argument("--classes", type=positive_int, default=20_000, help="content classes (Zipf)")
    edge = p.add_argument_group("sites")
    edge.add_argument("--sites", type=positive_int, default=1, help="identical sites")
    edge.add_argument(
        "--sites-file", type=Path, help="a JSON list of sites (docs/results-twin.md); overrides the options below"
    )
    edge.add_argument(
        "--edge-profile",
        help="the edge's L(b) = k b + h: a preset (edge-h100, row0..row10), 'k,h', or a calibrate JSON "
        "(default: edge-h100)",
    )
    edge.add_argument("--gpus", type=positive_int, help="G per site (default: 8)")
    edge.add_argument("--bmax", type=non_negative_int, help=f"B_max per window (default: {d['b_max']})")
    edge.add_argument("--window", type=positive_float, help="window K in seconds (default: 1)")
    edge.add_argument("--policy", default=d["policy"], help="a Part A policy, or your own: file.py:function")
    add_policy_options(edge)
    edge.add_argument(
        "--cache-gb",
        type=number(float, 0.0),
        default=d["cache_gb"],
        help="latent cache per site (0: off)",
    )
    edge.add_argument("--eviction", default=d["cache_eviction"], help="cache eviction rule")
    edge.add_argument(
        "--decide-when-idle",
        action="store_true",
        help="adaptive windows: a request that finds the edge idle is decided at once (docs/results-twin.md)",
    )
    sweep = p.add_argument_group("sweep (one run per combination; identical sites, generated arrivals)")
    sweep.add_argument("--sweep-rates", type=float_list, help="rates, e.g. 5,10,20")
    sweep.add_argument("--sweep-windows", type=float_list, help="window lengths, e.g. 0.25,0.5,1")
    sweep.add_argument("--sweep-policies", type=name_list, help="policies, e.g. exact,timeline,b1")
    sweep.add_argument("--sweep-sites", type=float_list, help="site counts, e.g. 1,10,100")
    sweep.add_argument("--workers", type=positive_int, default=1, help="local processes for a sweep")
    sweep.add_argument("--ray", metavar="ADDRESS", help="run a sweep on an existing Ray cluster")
    p.add_argument("--bin", type=positive_float, default=3600.0, help="seconds per time bin of the outputs")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the arrivals, users and policies")
    p.add_argument("--out", type=Path, default=Path("twin-out"), help="output directory")
    p.add_argument("--requests-csv", action="store_true", help="also write one row per request")
    p.add_argument("--json", action="store_true", help="print the summary (or the sweep rows) as JSON")
    p.set_defaults(handler=run)


def _device_mix(text: str | None):
    if text is None:
        return None
    mix = {}
    for part in (v for v in text.split(",") if v.strip()):
        name, sep, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight) if sep else 1.0
        except ValueError:
            raise UsageError(f"--device-mix: expected NAME=WEIGHT, got {part!r}") from None
    if not mix:
        raise UsageError("--device-mix: no devices given")
    return mix


def _site_and_workload(args) -> tuple[dict, dict]:
    """``make_site`` and ``WorkloadConfig`` fields: the built-in defaults, then the scenario's
    values, then the options given on the command line."""
    from edgediff.core.scenario import load_scenario
    from edgediff.twin.config import scenario_site, scenario_workload

    site = {"profile": "edge-h100", "gpus": 8, "b_max": defaults(ServiceConfig)["b_max"], "window_s": 1.0}
    workload: dict = {"steps": 50}
    if args.scenario is not None:
        scenario = load_scenario(args.scenario)
        site.update(scenario_site(scenario))
        workload.update(scenario_workload(scenario))
    given = {"profile": args.edge_profile, "gpus": args.gpus, "b_max": args.bmax, "window_s": args.window}
    site.update({name: value for name, value in given.items() if value is not None})
    if args.steps is not None:
        workload["steps"] = args.steps
    if args.alpha is not None:
        if len(args.alpha) != 2:
            raise UsageError("--alpha: expected lo,hi")
        workload["alpha"] = tuple(args.alpha)
    if args.device_mix is not None:
        workload["device_mix"] = _device_mix(args.device_mix)
    return site, workload


def run(args) -> None:
    from edgediff.offload.policies import policy_spec
    from edgediff.twin import TwinConfig, WorkloadConfig, generate, load_sites, load_trace, simulate, uniform_sites
    from edgediff.twin.config import diurnal_curve

    sweeping = any(v is not None for v in (args.sweep_rates, args.sweep_windows, args.sweep_policies, args.sweep_sites))
    for name in args.sweep_policies or [args.policy]:  # fail before any work
        policy_spec(name)
    site, workload = _site_and_workload(args)
    if sweeping:
        if args.trace is not None or args.sites_file is not None or args.scenario is not None:
            raise UsageError(
                "a sweep generates its arrivals over identical sites: drop --trace, --sites-file and --scenario"
            )
        return _sweep(args, site, workload["steps"])
    if args.sites_file is not None:
        sites = load_sites(args.sites_file)
    else:
        sites = uniform_sites(
            args.sites,
            **site,
            policy=args.policy,
            policy_options=dict(args.policy_options),
            cache_gb=args.cache_gb,
            cache_eviction=args.eviction,
            decide_when_idle=args.decide_when_idle,
            seed=args.seed,
        )
    if args.trace is not None:
        arrivals = load_trace(args.trace, steps=workload["steps"])
    else:
        config = WorkloadConfig(
            rate=args.rate,
            duration_s=args.duration,
            diurnal=None if args.diurnal is None else diurnal_curve(args.diurnal),
            users=args.users,
            classes=args.classes,
            topics=min(500, args.classes),
            **workload,
        )
        arrivals = generate(config, sites[0], args.seed)
    config = TwinConfig(sites, seed=args.seed, bin_s=args.bin)
    make_directory(args.out)
    result = simulate(config, arrivals, progress=not args.json)
    paths = result.write(args.out, requests=args.requests_csv)
    total = result.site_rows()[-1]
    if args.json:
        print(json.dumps(total))
        return
    print(
        f"{total['requests']} requests over {len(sites)} site(s), {result.end:.0f} s simulated: "
        f"grant rate {total['grant_rate']:.3f}, failed {total['failed']}, rejected (queue full) {total['rejected']}, "
        f"latency p50/p90/p99 {total['latency_p50_s']:.2f}/"
        f"{total['latency_p90_s']:.2f}/{total['latency_p99_s']:.2f} s, mean utility {total['utility_mean']:.3f}, "
        f"mean PAI {total['pai_mean']:.3f}, edge utilization {total['edge_utilization']:.3f}, "
        f"cache hit rate {total['cache_hit_rate']:.3f}"
    )
    for path in paths:
        print(f"wrote {path}")


def _sweep(args, site: dict, steps: int) -> None:
    from itertools import product

    from edgediff.figure_io import write_csv
    from edgediff.twin.sweep import SweepCase, run_sweep

    cases = [
        SweepCase(
            sites=int(sites),
            rate=rate,
            duration_s=args.duration,
            steps=steps,
            window_s=window,
            policy=policy,
            profile=site["profile"],
            gpus=site["gpus"],
            b_max=site["b_max"],
            cache_gb=args.cache_gb,
            decide_when_idle=args.decide_when_idle,
        )
        for sites, rate, window, policy in product(
            args.sweep_sites or [args.sites],
            args.sweep_rates or [args.rate],
            args.sweep_windows or [site["window_s"]],
            args.sweep_policies or [args.policy],
        )
    ]
    cases[0].site_list()  # a bad profile or parameter fails before any work
    make_directory(args.out)
    rows = run_sweep(cases, seed=args.seed, workers=args.workers, ray_address=args.ray)
    path = write_csv(args.out / "twin-sweep.csv", rows)
    if args.json:
        print(json.dumps(rows))
        return
    for r in rows:
        print(
            f"sites {r['sites']:>4} rate {r['rate']:>8g} window {r['window_s']:>5g} {r['policy']:>9}: "
            f"grant {r['grant_rate']:.3f}  p50 {r['latency_p50_s']:.2f} s  p90 {r['latency_p90_s']:.2f} s  "
            f"utility {r['utility_mean']:.3f}  utilization {r['edge_utilization']:.3f}"
        )
    print(f"wrote {path}")
