"""Offloading benchmark (issues 2 and 18): prints the figures, asserts nothing about wall time.

    python bench/bench_offload.py [--cases 100] [--seed 0] [--repeats 50]

1. ``exact`` decision time for 20, 100 and 1,000 users (targets: <= 2, 10, 100 ms),
   median and max over repeated decisions on different instances (G = 8, B_max = 20).
2. City-scale windows: ``exact`` at 2,000 / 5,000 / 10,000 users with B_max = I / 5
   (target for 10,000 users: <= 100 ms) and ``timeline`` at 1,000 users with B_max 20, 200
   and 1,000 (target: <= 100 ms), same statistics.
3. For 20 users over ``--cases`` instances: normalized score and decision time of
   ``ga`` and ``milp`` (and ``exact`` for reference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgediff.core.generator import random_instance
from edgediff.offload.compare import compare
from edgediff.offload.exact import solve_exact
from edgediff.offload.timeline import solve_timeline

TARGET_MS = {20: 2.0, 100: 10.0, 1000: 100.0}
CITY_SCALE = [  # (policy, solver, users, B_max, target ms or None)
    ("exact", solve_exact, 2000, 400, None),
    ("exact", solve_exact, 5000, 1000, None),
    ("exact", solve_exact, 10000, 2000, 100.0),
    ("timeline", solve_timeline, 1000, 20, 100.0),
    ("timeline", solve_timeline, 1000, 200, 100.0),
    ("timeline", solve_timeline, 1000, 1000, 100.0),
]


def time_decisions(solver, users: int, repeats: int, seed: int, B_max: int = 20) -> np.ndarray:
    instances = [random_instance(users, 8, seed=seed + r, B_max=B_max) for r in range(repeats)]
    solver(instances[0])  # warm-up
    out = np.empty(repeats)
    for r, inst in enumerate(instances):
        start = time.perf_counter()
        solver(inst)
        out[r] = time.perf_counter() - start
    return out * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=50, help="decisions timed per row of the timing tables")
    args = parser.parse_args()

    print("exact decision time (G = 8, B_max = 20)")
    print(f"{'users':>6} {'median_ms':>10} {'max_ms':>8} {'target_ms':>10}  met")
    for users, target in TARGET_MS.items():
        ms = time_decisions(solve_exact, users, args.repeats, args.seed)
        median = float(np.median(ms))
        met = "yes" if median <= target else "NO"
        print(f"{users:>6} {median:>10.3f} {ms.max():>8.3f} {target:>10.1f}  {met}")

    print("\ncity-scale windows: decision time (G = 8)")
    print(f"{'policy':>8} {'users':>6} {'B_max':>6} {'median_ms':>10} {'max_ms':>8} {'target_ms':>10}  met")
    for policy, solver, users, b_max, target in CITY_SCALE:
        ms = time_decisions(solver, users, args.repeats, args.seed, B_max=b_max)
        median = float(np.median(ms))
        goal, met = ("-", "-") if target is None else (f"{target:.1f}", "yes" if median <= target else "NO")
        print(f"{policy:>8} {users:>6} {b_max:>6} {median:>10.3f} {ms.max():>8.3f} {goal:>10}  {met}")

    print(f"\n20 users, G = 8, {args.cases} cases (score: 1 = exact, 0 = all local)")
    rows = compare([20], 8, args.cases, ["exact", "ga", "milp"], seed=args.seed)
    print(f"{'policy':>6} {'mean_score':>11} {'mean_objective':>15} {'mean_decision_ms':>17}")
    for r in rows:
        print(f"{r.policy:>6} {r.mean_score:>11.4f} {r.mean_objective:>15.3f} {r.mean_decision_time_s * 1000:>17.2f}")


if __name__ == "__main__":
    main()
