"""Caching benchmark (issue 29, Part B revision 3): prints the target table; asserts nothing.

    OMP_NUM_THREADS=1 python bench/bench_cache.py [--slots 10000] [--seeds 1,2,3,4,5] [--capacities 1,3,5]
        [--policies drc,oo,lru,lfu,lcbfu,ncldc] [--jobs 2] [--save runs.json | --load runs.json] [--timings]

1. Per capacity, every policy on the same requests per seed (common random numbers): mean response
   time with its 95 % confidence interval over the seeds (Student t), p95, hit rate, time saved per
   request against ``ncldc``, edge backlog (mean; p95 and final, worst seed), runs flagged unstable;
   plus the reference rows "0 GB (oo)" (offloading only) and "all-hit floor".
2. The targets (docs/results-caching.md, revision 3), each from per-seed paired ratios (mean and 95 % CI, and every
   seed): drc <= the best fair classic cache (lru, lfu, lcbfu with oo's offloading); drc within 2 %
   of oo on every seed; drc >= 20 % below ncldc at 3 GB and 17 % at 1 GB; no seed overloads the
   edge; caching's share of the gap from the 0 GB row to the all-hit floor.
3. With ``--timings``: decision times of drc and oo at 10 and 25 users, and a brute-force per-slot
   optimum against oo's dynamic program on the same slots.

``--save`` writes every run's summary (per seed) as JSON; ``--load`` prints the tables from such a
file without running anything.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import Slot, backlog_wait, objective, storable
from edgediff.cache.optimum import solve_slot
from edgediff.cache.policies import CLASSIC_POLICIES
from edgediff.cache.simulator import make_environment, simulate
from edgediff.cache.sweep import FLOOR, OFFLOAD_ONLY, mean_ci, paired_ratio, run_point

DEFAULT_POLICIES = ["drc", "oo", "lru", "lfu", "lcbfu", "ncldc"]
NCLDC_TARGETS = {1.0: -17.0, 3.0: -20.0}  # drc against ncldc, % (issue 29)


def _pm(values, fmt=".3f") -> str:
    mean, ci = mean_ci(values)
    return f"{mean:{fmt}} ± {ci:{fmt}}"


def print_table(runs: dict[str, list[dict]]) -> None:
    head = ["policy", "response (s), 95% CI", "p95 (s)", "hit rate", "saved/req (s)", "backlog mean",
            "bl p95 (worst)", "bl final (worst)", "unstable", "full at"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for p, rs in runs.items():
        col = {k: [r[k] for r in rs] for k in rs[0] if k not in ("policy",)}
        backlog = "mean_backlog_s" in col
        cells = [
            p,
            _pm(col["mean_response_time_s"]),
            f"{np.mean(col['p95_response_time_s']):.2f}",
            _pm(col["hit_rate"]),
            f"{np.mean(col['time_saved_per_request_s']):.3f}",
            f"{np.mean(col['mean_backlog_s']):.2f}" if backlog else "-",
            f"{np.max(col['p95_backlog_s']):.2f}" if backlog else "-",
            f"{np.max(col['final_backlog_s']):.2f}" if backlog else "-",
            f"{sum(col['unstable'])}/{len(rs)}" if backlog else "-",
            (f"{np.mean(col['cache_full_slot']):.0f}" if min(col["cache_full_slot"]) >= 0 else "never")
            if backlog
            else "-",
        ]
        print("| " + " | ".join(cells) + " |")


def resp(runs: dict[str, list[dict]], p: str) -> np.ndarray:
    return np.array([r["mean_response_time_s"] for r in runs[p]])


def targets(gb: float, runs: dict[str, list[dict]]) -> None:
    if "drc" not in runs:
        return
    d = resp(runs, "drc")
    seeds = [r["seed"] for r in runs["drc"]]

    def line(what, ratio, ok):
        mean, ci, per_seed = ratio
        seeds_text = ", ".join(f"{v:+.2f}" for v in per_seed)
        print(f"| {what} | {mean:+.2f} ± {ci:.2f} % | {seeds_text} | {'met' if ok else '**NOT met**'} |")

    print(f"\ntargets at {gb:g} GB, seeds {seeds} (per seed: drc / other - 1)")
    print("| target | mean ± 95% CI | per seed (%) | met? |")
    print("| --- | --- | --- | --- |")
    classic = [p for p in CLASSIC_POLICIES if p in runs]
    if classic:
        best = min(classic, key=lambda p: resp(runs, p).mean())
        line(
            f"drc <= best fair classic ({best})", paired_ratio(d, resp(runs, best)), d.mean() <= resp(runs, best).mean()
        )
    if "oo" in runs:
        r = paired_ratio(d, resp(runs, "oo"))
        line("drc within 2 % of oo, every seed", r, bool(np.all(r[2] <= 2.0)))
    if "ncldc" in runs:
        goal = NCLDC_TARGETS.get(gb)
        r = paired_ratio(d, resp(runs, "ncldc"))
        line(f"drc vs ncldc{f', target <= {goal:g} %' if goal is not None else ' (no target)'}", r,
             goal is None or r[0] <= goal)  # fmt: skip
    if "dnn" in runs:
        r = paired_ratio(d, resp(runs, "dnn"))
        line("drc vs dnn (paper: -28.57 % at 5 GB)", r, r[0] < 0)
    unstable = sum(r["unstable"] for r in runs["drc"])
    p95 = max(r["p95_backlog_s"] for r in runs["drc"])
    final = max(r["final_backlog_s"] for r in runs["drc"])
    print(f"| drc: no seed overloads the edge | backlog p95 {p95:.2f} s, final {final:.2f} s (worst seed) | "
          f"unstable in {unstable} of {len(d)} | {'met' if unstable == 0 else '**NOT met**'} |")  # fmt: skip
    if OFFLOAD_ONLY in runs and FLOOR in runs:
        zero, floor = resp(runs, OFFLOAD_ONLY), resp(runs, FLOOR)
        share = 100 * (zero - d) / (zero - floor)
        mean, ci = mean_ci(share)
        print(f"| caching's share of the gap from 0 GB to the all-hit floor (drc) | {mean:.1f} ± {ci:.1f} % | "
              + ", ".join(f"{v:.1f}" for v in share) + " | (reported) |")  # fmt: skip
        for p in classic + ["oo"]:
            if p in runs:
                s = 100 * (zero - resp(runs, p)) / (zero - floor)
                print(f"|   the same for {p} | {mean_ci(s)[0]:.1f} ± {mean_ci(s)[1]:.1f} % | | |")


def draw_capacity_figure(saved: dict, path: str) -> None:
    """Fig. 10's four panels against the capacity, every point a mean over the seeds with its 95 % CI."""
    from edgediff.cache.figures import aggregate, draw_sweep

    rows = [
        aggregate(per_seed, capacity_gb=float(gb)) for gb, runs in saved["points"].items() for per_seed in runs.values()
    ]
    fig = draw_sweep(rows, "capacity_gb", "edge cache capacity (GB)")
    fig.suptitle(f"Impact of the cache capacity ({saved['slots']} slots, seeds {saved['seeds']}, 95 % CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def decision_times(slots: int) -> None:
    for users in (10, 25):
        cfg = CacheConfig(slots=slots, users=users)
        env = make_environment(cfg, 0)
        ms = {p: simulate(cfg, p, 0, env=env).summary()["decision_time_ms"] for p in ("drc", "oo")}
        print(f"decision time at {users} users ({slots} slots): drc {ms['drc']:.3f} ms, oo {ms['oo']:.3f} ms, "
              f"oo / drc = {ms['oo'] / ms['drc']:.1f}x")  # fmt: skip


def brute_force_vs_dp(cfg: CacheConfig, n: int = 5, slots: int = 3) -> tuple[float, float]:
    """Mean ms per slot of exhaustive search over every (stop step, stored step) of ``n`` requests
    (the mean request count at 10 users) and of oo's dynamic program, on random slots with a warm
    cache and a backlog; asserts they find the same optimum."""
    rng = np.random.default_rng(0)
    s1 = cfg.reusable_steps + 1
    brute, dp = [], []
    for _ in range(slots):
        usable = rng.random((n, s1)) < 0.3
        usable[:, 0] = False
        value = rng.uniform(0, 2e-3, (n, s1))
        value[:, 0] = 0
        slot = Slot(0, np.arange(n), rng.integers(0, 100, n), rng.uniform(cfg.f_min, cfg.f_max, n),
                    rng.uniform(1.4e6, 1.7e6, n), np.maximum.accumulate(np.where(usable, np.arange(s1), 0), axis=1),
                    value, 0.0, 50.0, backlog_wait(cfg, rng.uniform(0, 0.5, 4)), edge_jobs=4)  # fmt: skip
        start = time.perf_counter()
        per_request = []
        for r in range(n):
            opts = []
            for m in range(s1):
                ok = storable(slot, np.full(n, m))[r]
                opts += [(m, k) for k in range(s1) if k == 0 or ok[k]]
            per_request.append(opts)
        best = np.inf
        tails = list(itertools.product(*per_request[-2:]))
        for head in itertools.product(*per_request[:-2]):  # chunks: the last two requests vectorized
            combos = np.array([(*head, *tail) for tail in tails])
            best = min(best, float(objective(cfg, slot, combos[..., 0], combos[..., 1]).min()))
        brute.append(time.perf_counter() - start)
        start = time.perf_counter()
        m, stored = solve_slot(cfg, slot)
        dp.append(time.perf_counter() - start)
        assert abs(float(objective(cfg, slot, m, stored)) - best) <= 1e-9 * abs(best)
    return 1000 * float(np.mean(brute)), 1000 * float(np.mean(dp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=10_000)
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3, 4, 5])
    parser.add_argument("--capacities", type=lambda s: [float(v) for v in s.split(",")], default=[1.0, 3.0, 5.0])
    parser.add_argument("--policies", type=lambda s: s.split(","), default=DEFAULT_POLICIES)
    parser.add_argument("--bandwidth-unit-hz", type=float, default=CacheConfig().bandwidth_unit_hz)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--save", help="write every run's per-seed summary to this JSON file")
    parser.add_argument("--load", help="print the tables of a --save file; run nothing")
    parser.add_argument("--figure", help="draw the capacity figure (Fig. 10 panels, 95 %% CIs) to this PNG")
    parser.add_argument("--no-references", action="store_true", help="skip the 0 GB and all-hit floor rows")
    parser.add_argument("--timings", action="store_true", help="also time decisions (drc, oo, brute force)")
    args = parser.parse_args()

    if args.load:
        with open(args.load) as f:
            saved = json.load(f)
    else:
        import torch  # noqa: F401  (import time is not the policy's)

        saved = {"slots": args.slots, "seeds": args.seeds, "bandwidth_unit_hz": args.bandwidth_unit_hz, "points": {}}
        references = {} if args.no_references else None
        for gb in args.capacities:
            cfg = CacheConfig(slots=args.slots, capacity_bytes=gb * 1e9, bandwidth_unit_hz=args.bandwidth_unit_hz)
            start = time.perf_counter()
            runs = run_point(cfg, args.seeds, args.policies, references=references is None, jobs=args.jobs)
            if references is None:  # the reference rows do not depend on the capacity
                references = {p: runs.pop(p) for p in (OFFLOAD_ONLY, FLOOR)}
            saved["points"][f"{gb:g}"] = runs | references
            print(f"({gb:g} GB: {time.perf_counter() - start:.0f} s)", flush=True)
            if args.save:
                with open(args.save, "w") as f:
                    json.dump(saved, f)
    for gb, runs in saved["points"].items():
        print(f"\n## {gb} GB, {saved['slots']} slots, seeds {saved['seeds']}, bandwidth unit "
              f"{saved['bandwidth_unit_hz']:g} Hz: means over seeds, 95 % CIs")  # fmt: skip
        print_table(runs)
        targets(float(gb), runs)
    if args.figure:
        draw_capacity_figure(saved, args.figure)
    if args.timings:
        print()
        decision_times(1000)
        b, d = brute_force_vs_dp(CacheConfig())
        print(f"per-slot optimum, 5 requests: brute force {b:.0f} ms, oo's dynamic program {d:.2f} ms (same optimum)")


if __name__ == "__main__":
    main()
