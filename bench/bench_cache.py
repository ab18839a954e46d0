"""Caching benchmark (issue 5): prints the figures, asserts nothing about wall time.

    OMP_NUM_THREADS=1 python bench/bench_cache.py [--slots 10000] [--seeds 0] [--policies ...]

1. Wall time of a 10,000-slot, 10-user ``drc`` run (target: <= 2 minutes), torch import
   excluded, training included; mean decision time per slot.
2. Every policy at the paper defaults (10 users, S = 20, S* = 6, 3 GB, V = 1800) on the same
   requests: response time, p95, hit rate, time saved per request, mean Q, decision time, and
   the issue's targets: drc vs ncldc (>= 20 % lower), vs oo (within 3 %, >= 10x faster
   decisions), vs lru/lfu/lcbfu (lower).
3. For scale: the per-slot optimum found by brute force (all 7^n stop-step vectors x 2^n store
   vectors, vectorized) on five 5-request slots, against ``oo``'s dynamic program.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import Slot, entry_value, make_catalog, objective, storable
from edgediff.cache.optimum import solve_slot
from edgediff.cache.policies import CACHE_POLICIES
from edgediff.cache.simulator import make_environment, simulate


def brute_force_vs_dp(cfg: CacheConfig, n: int = 5, slots: int = 5) -> tuple[float, float]:
    """Mean ms per slot of brute-force search and of the DP, on random cold-cache slots."""
    rng = np.random.default_rng(0)
    catalog = make_catalog(cfg, rng)
    s1 = cfg.reusable_steps + 1
    brute, dp = [], []
    for _ in range(slots):
        cls = rng.integers(0, 2000, n)
        slot = Slot(0, np.arange(n), cls, rng.uniform(cfg.f_min, cfg.f_max, n), rng.uniform(1.4e6, 1.7e6, n),
                    np.zeros((n, s1), dtype=np.int64), entry_value(cfg, catalog, cls[:, None], np.arange(s1)[None, :]),
                    0.0, 5.0)  # fmt: skip
        start = time.perf_counter()
        ms = np.array(list(itertools.product(range(s1), repeat=n)))
        best = np.inf
        for flags in itertools.product([False, True], repeat=n):
            store = np.broadcast_to(np.array(flags), ms.shape) & storable(slot, ms)
            best = min(best, float(objective(cfg, slot, ms, store).min()))
        brute.append(time.perf_counter() - start)
        start = time.perf_counter()
        m, store = solve_slot(cfg, slot)
        dp.append(time.perf_counter() - start)
        assert abs(float(objective(cfg, slot, m, store)) - best) <= 1e-9 * abs(best)
    return 1000 * float(np.mean(brute)), 1000 * float(np.mean(dp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=10_000)
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0])
    parser.add_argument("--policies", type=lambda s: s.split(","), default=list(CACHE_POLICIES))
    args = parser.parse_args()
    cfg = CacheConfig(slots=args.slots)
    import torch  # noqa: F401  (import time is not the policy's)

    rows: dict[str, list[dict]] = {p: [] for p in args.policies}
    for seed in args.seeds:
        env = make_environment(cfg, seed)
        for policy in args.policies:
            start = time.perf_counter()
            res = simulate(cfg, policy, seed, env=env)
            wall = time.perf_counter() - start
            rows[policy].append(res.summary() | {"wall_s": wall})
            if policy == "drc":
                print(
                    f"drc, {cfg.slots} slots x {cfg.users} users, seed {seed}: {wall:.1f} s wall "
                    f"(target <= 120 s), {len(res.losses)} training steps"
                )
    mean = {p: {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if k != "policy"} for p, rs in rows.items()}
    print(f"\npaper defaults, {cfg.slots} slots, seeds {args.seeds} (means over seeds)")
    head = ["policy", "resp_s", "p95_s", "hit_rate", "saved_s", "mean_Q", "decide_ms", "wall_s"]
    print("".join(f"{h:>11}" for h in head))
    for p, m in mean.items():
        vals = [
            m["mean_response_time_s"],
            m["p95_response_time_s"],
            m["hit_rate"],
            m["time_saved_per_request_s"],
            m["mean_queue"],
            m["decision_time_ms"],
            m["wall_s"],
        ]
        print(f"{p:>11}" + "".join(f"{v:>11.4f}" for v in vals))
    if "drc" in mean:
        d = mean["drc"]["mean_response_time_s"]
        print()
        for other in (p for p in ("ncldc", "oo", "lru", "lfu", "lcbfu", "dnn") if p in mean):
            o = mean[other]["mean_response_time_s"]
            print(f"drc vs {other:<6}: response time {100 * (d / o - 1):+.2f} %")
        if "oo" in mean:
            speed = mean["oo"]["decision_time_ms"] / mean["drc"]["decision_time_ms"]
            print(f"oo decision time / drc decision time: {speed:.2f}x (target >= 10x)")
        if "dnn" in mean:
            sd, sn = mean["drc"]["time_saved_per_request_s"], mean["dnn"]["time_saved_per_request_s"]
            print(
                f"time per request, drc vs dnn: {100 * (d / mean['dnn']['mean_response_time_s'] - 1):+.2f} %; "
                f"time saved per request {sd:.3f} s vs {sn:.3f} s"
            )

    b, d = brute_force_vs_dp(cfg)
    print(f"per-slot optimum, 5 requests: brute force {b:.1f} ms, oo's dynamic program {d:.2f} ms (same optimum)")


if __name__ == "__main__":
    main()
