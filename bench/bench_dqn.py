"""DQN benchmark (issue 3): prints the figures, asserts nothing.

    python bench/bench_dqn.py [--cases 100] [--seed 2026] [--checkpoint DIR] [--no-baselines] [--timing-only]
    python bench/bench_dqn.py --bmax-sweep [--cases 20] [--checkpoint DIR] [--beam-width W]

On ``--cases`` held-out instances for each user count 4, 8, 12, 16, 20 and G in 2, 8, 16
(instances from ``compare``'s per-case seeds, a stream the training never draws from):
the mean normalized score (1 = ``exact``, 0 = all-local) and mean decision time of the
``dqn`` policy (default: the shipped checkpoint), beside ``ga`` and ``milp`` on the same
instances; then the ``dqn`` decision time for 20 users (median and p95 of the cases).
Target: overall mean score >= 0.97 and <= 5 ms for 20 users.

``--bmax-sweep`` (windows of any shape, issue 18): for every ``B_max`` in 1..20, ``--cases``
instances of 12-20 users with G drawn in 1..16 (their own seed stream); prints the dqn
score's mean and worst per ``B_max`` and overall, for the paper's greedy agent
(``beam_width=1``) beside the policy's default beam width. Target: mean >= 0.99 and
worst >= 0.95.

``--beam-width W`` sets the dqn policy's beam width everywhere (default: the policy's
default; 1 is the paper's greedy agent).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from edgediff.core.generator import random_instance
from edgediff.offload.compare import compare
from edgediff.offload.dqn.policy import DEFAULT_BEAM_WIDTH
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
    parser.add_argument("--bmax-sweep", action="store_true", help="scores for every B_max in 1..20")
    parser.add_argument("--beam-width", type=int, default=None, help="dqn beam width (1: the paper's greedy agent)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.bmax_sweep:
        return print_bmax_sweep(args)
    policies = ["dqn"] if args.no_baselines else ["dqn", "ga", "milp"]
    print(f"dqn beam width: {args.beam_width or DEFAULT_BEAM_WIDTH}")

    if not args.timing_only:
        print_scores(args, policies)
    print_timing(args)


def print_scores(args, policies: list[str]) -> None:
    scores: dict[str, list[float]] = {p: [] for p in policies}
    print(f"{'G':>3} {'users':>5} " + " ".join(f"{p + ' score':>11} {p + ' ms':>9}" for p in policies))
    for gpus in GPUS:
        rows = compare(
            USERS,
            gpus,
            args.cases,
            policies,
            seed=args.seed,
            checkpoint=args.checkpoint,
            progress=False,
            policy_options=dqn_options(args),
        )
        for users in USERS:
            cells = []
            for p in policies:
                row = next(r for r in rows if r.users == users and r.policy == p)
                scores[p].append(row.mean_score)
                cells.append(f"{row.mean_score:>11.4f} {row.mean_decision_time_s * 1000:>9.2f}")
            print(f"{gpus:>3} {users:>5} " + " ".join(cells), flush=True)
    for p in policies:
        print(f"overall mean score {p}: {np.mean(scores[p]):.4f} (min cell {np.min(scores[p]):.4f})")


def print_bmax_sweep(args) -> None:
    from edgediff.core.model import Decision, evaluate
    from edgediff.offload.compare import normalized_score
    from edgediff.offload.exact import solve_exact

    widths = sorted({1, args.beam_width or DEFAULT_BEAM_WIDTH})
    policies = {k: make_policy("dqn", checkpoint=args.checkpoint, beam_width=k) for k in widths}
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 0xB3A7]))
    means, worsts = {k: [] for k in widths}, {k: [] for k in widths}
    print(f"{'B_max':>5} " + " ".join(f"{f'mean W={k}':>10} {f'worst W={k}':>11}" for k in widths))
    for bmax in range(1, 21):
        scores = {k: [] for k in widths}
        for _ in range(args.cases):
            users, gpus = int(rng.integers(12, 21)), int(rng.integers(1, 17))
            instance = random_instance(users, gpus, seed=rng, B_max=bmax)
            best = evaluate(instance, solve_exact(instance)).objective
            local = evaluate(instance, Decision.all_local(instance)).objective
            for k, policy in policies.items():
                value = evaluate(instance, policy.decide(instance)).objective
                scores[k].append(float(normalized_score(value, best, local)))
        for k in widths:
            means[k].append(np.mean(scores[k]))
            worsts[k].append(np.min(scores[k]))
        print(f"{bmax:>5} " + " ".join(f"{means[k][-1]:>10.4f} {worsts[k][-1]:>11.4f}" for k in widths), flush=True)
    for k in widths:
        print(
            f"beam width {k}: over B_max 1..20 mean {np.mean(means[k]):.4f} (lowest per-B_max mean "
            f"{np.min(means[k]):.4f}), worst {np.min(worsts[k]):.4f} (target: mean >= 0.99, worst >= 0.95)"
        )


def dqn_options(args) -> dict:
    return {} if args.beam_width is None else {"beam_width": args.beam_width}


def print_timing(args) -> None:
    policy = make_policy("dqn", checkpoint=args.checkpoint, **dqn_options(args))
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
