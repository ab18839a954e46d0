"""DQN benchmark (issue 3): prints the figures, asserts nothing.

    python bench/bench_dqn.py [--cases 100] [--seed 2026] [--checkpoint DIR] [--no-baselines] [--timing-only]

On ``--cases`` held-out instances for each user count 4, 8, 12, 16, 20 and G in 2, 8, 16
(instances from ``compare``'s per-case seeds, a stream the training never draws from):
the mean normalized score (1 = ``exact``, 0 = all-local) and mean decision time of the
``dqn`` policy (default: the shipped checkpoint), beside ``ga`` and ``milp`` on the same
instances; then the ``dqn`` decision time for 20 users (median and p95 of the cases).
Target: overall mean score >= 0.97 and <= 5 ms for 20 users.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from edgediff.core.generator import random_instance
from edgediff.offload.compare import compare
from edgediff.offload.policies import make_policy

USERS = [4, 8, 12, 16, 20]
GPUS = [2, 8, 16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--no-baselines", action="store_true", help="dqn only (skip ga and milp)")
    parser.add_argument("--timing-only", action="store_true", help="only the 20-user decision time")
    parser.add_argument("--passes", type=int, default=5, help="timing passes over the cases")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policies = ["dqn"] if args.no_baselines else ["dqn", "ga", "milp"]

    if not args.timing_only:
        print_scores(args, policies)
    print_timing(args)


def print_scores(args, policies: list[str]) -> None:
    scores: dict[str, list[float]] = {p: [] for p in policies}
    print(f"{'G':>3} {'users':>5} " + " ".join(f"{p + ' score':>11} {p + ' ms':>9}" for p in policies))
    for gpus in GPUS:
        rows = compare(USERS, gpus, args.cases, policies, seed=args.seed, checkpoint=args.checkpoint, progress=False)
        for users in USERS:
            cells = []
            for p in policies:
                row = next(r for r in rows if r.users == users and r.policy == p)
                scores[p].append(row.mean_score)
                cells.append(f"{row.mean_score:>11.4f} {row.mean_decision_time_s * 1000:>9.2f}")
            print(f"{gpus:>3} {users:>5} " + " ".join(cells), flush=True)
    for p in policies:
        print(f"overall mean score {p}: {np.mean(scores[p]):.4f} (min cell {np.min(scores[p]):.4f})")


def print_timing(args) -> None:
    policy = make_policy("dqn", checkpoint=args.checkpoint)
    instances = [random_instance(20, 8, seed=args.seed + c) for c in range(args.cases)]
    policy.decide(instances[0])  # load the checkpoint once
    times = []
    for _ in range(args.passes):
        for instance in instances:
            start = time.perf_counter()
            policy.decide(instance)
            times.append(time.perf_counter() - start)
    times = np.array(times) * 1000
    print(
        f"dqn decision time, 20 users, {len(times)} decisions: median {np.median(times):.2f} ms, "
        f"p95 {np.percentile(times, 95):.2f} ms (target <= 5 ms)"
    )


if __name__ == "__main__":
    main()
