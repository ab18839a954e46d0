"""DQN benchmark (issues 3, 18, 30): prints the figures, asserts nothing.

    python bench/bench_dqn.py --any-size [--cases 200] [--seed 2026] [--checkpoint DIR] [--beam-width W]
    python bench/bench_dqn.py [--cases 100] [--seed 2026] [--checkpoint DIR] [--no-baselines] [--timing-only]
    python bench/bench_dqn.py --bmax-sweep [--cases 20] [--checkpoint DIR] [--beam-width W]
    python bench/bench_dqn.py --twin [--seed 2026]

``--any-size`` (windows of any size, issue 30): for 5, 20, 50 and 100 users, without and with
cached steps, ``--cases`` windows each with G drawn in 1..16 and ``B_max`` in 1..50 (capped at the
users), from a seed stream of their own that no training draws from (training: ``SeedSequence([seed,
0xD0])``, held-out ``[10000 + seed, 0xE7A1]``; here ``[--seed, 0x5E7, users, cache]``); cached steps
as training draws them (``env.with_cached_steps``). Prints the mean and worst normalized score of the
``dqn`` policy per cell, then its decision time at 100 users (median and p95, ``B_max`` 20 and 50)
beside the paper-network model's at 20 users, the machine's load in the same minutes (2.8 ms when
quiet); ``--timing-only`` prints only the times.
Targets: mean >= 0.99 and worst >= 0.95 per cell, <= 10 ms at 100 users.

On ``--cases`` held-out instances for each user count 4, 8, 12, 16, 20 and G in 2, 8, 16
(instances from ``compare``'s per-case seeds, a stream the training never draws from):
the mean normalized score (1 = ``exact``, 0 = all-local) and mean decision time of the
``dqn`` policy (default: the shipped checkpoint), beside ``ga`` and ``milp`` on the same
instances; then the ``dqn`` decision time for 20 users (median and p95 of the cases).
Target: overall mean score >= 0.97 and <= 5 ms for 20 users.

``--twin`` (issue 30, point 4): the digital twin (``edgediff simulate``, one H100 site, G = 8,
``B_max`` 20, N = 50, 1 s windows, 600 s of arrivals) at 1, 10, 20 and 40 requests/s, without and
with a 3 GB latent cache, ``exact`` beside ``dqn``; prints failed requests, the largest window
and ``dqn``'s mean utility against ``exact``'s.

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
    parser.add_argument("--any-size", action="store_true", help="scores at 5-100 users with/without cached steps")
    parser.add_argument("--users", default=None, help="--any-size: comma-separated user counts (default 5,20,50,100)")
    parser.add_argument("--twin", action="store_true", help="the twin at 1-40 requests/s, dqn against exact")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.any_size:
        return print_any_size(args)
    if args.twin:
        return print_twin(args)
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


ANY_SIZE_USERS = [5, 20, 50, 100]


def any_size_windows(users: int, cached: bool, cases: int, seed: int) -> list:
    from edgediff.offload.dqn.env import with_cached_steps

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E7, users, int(cached)]))
    windows = []
    for _ in range(cases):
        gpus, bmax = int(rng.integers(1, 17)), int(rng.integers(1, 51))
        instance = random_instance(users, gpus, seed=rng, B_max=bmax)
        windows.append(with_cached_steps(instance, rng) if cached else instance)
    return windows


def print_any_size(args) -> None:
    from edgediff.core.model import Decision, evaluate
    from edgediff.offload.compare import normalized_score
    from edgediff.offload.exact import solve_exact

    policy = make_policy("dqn", checkpoint=args.checkpoint, **dqn_options(args))
    cases = args.cases if args.cases != 100 else 200
    print(f"dqn beam width {args.beam_width or DEFAULT_BEAM_WIDTH}; {cases} windows per cell, G 1-16, B_max 1-50")
    print(f"{'users':>5} {'cached':>6} {'mean':>7} {'worst':>7} {'< 0.99':>6} {'median ms':>9}")
    cells = []
    for users in () if args.timing_only else [int(u) for u in args.users.split(",")] if args.users else ANY_SIZE_USERS:
        for cached in (False, True):
            scores, times = [], []
            for instance in any_size_windows(users, cached, cases, args.seed):
                best = evaluate(instance, solve_exact(instance)).objective
                local = evaluate(instance, Decision.all_local(instance)).objective
                decision = policy.decide(instance)
                times.append(policy.last_decision_time_s)
                scores.append(float(normalized_score(evaluate(instance, decision).objective, best, local)))
            scores = np.array(scores)
            cells.append((scores.mean(), scores.min()))
            print(
                f"{users:>5} {'yes' if cached else 'no':>6} {scores.mean():>7.4f} {scores.min():>7.4f} "
                f"{int((scores < 0.99).sum()):>6} {np.median(times) * 1000:>9.2f}",
                flush=True,
            )
    means, worsts = np.array(cells or [(np.nan, np.nan)]).T
    print(f"lowest cell mean {means.min():.4f}, worst window {worsts.min():.4f} (targets: mean >= 0.99, worst >= 0.95)")
    for bmax in (20, 50) if not args.users or "100" in args.users.split(",") else ():
        windows = [random_instance(100, 8, seed=args.seed + 500 + c, B_max=bmax) for c in range(20)]
        times = time_decisions(policy, windows, args.passes)
        print(
            f"dqn decision time, 100 users, G 8, B_max {bmax}, {len(times)} decisions: median "
            f"{np.median(times):.2f} ms, p95 {np.percentile(times, 95):.2f} ms (target <= 10 ms)",
            flush=True,
        )
    # the machine's load, in the same minutes: the paper-network model at 20 users (2.8 ms when quiet)
    from edgediff.offload.dqn.checkpoint import PAPER

    windows = [random_instance(20, 8, seed=args.seed + c) for c in range(20)]
    times = time_decisions(make_policy("dqn", checkpoint=str(PAPER)), windows, args.passes)
    print(f"reference: the paper-network model (beam 8), 20 users: median {np.median(times):.2f} ms", flush=True)


def print_twin(args) -> None:
    import json
    import subprocess
    import sys
    import tempfile

    print(f"{'cache':>5} {'rate':>5} {'requests':>8} {'failed dqn':>10} {'largest window':>14} "
          f"{'utility exact':>13} {'utility dqn':>11} {'dqn vs exact':>12}")  # fmt: skip
    for cache_gb in (0, 3):
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run(
                [sys.executable, "-m", "edgediff", "simulate", "--sweep-rates", "1,10,20,40", "--sweep-policies",
                 "exact,dqn", "--duration", "600", "--cache-gb", str(cache_gb), "--seed", str(args.seed), "--out",
                 out, "--json"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
        rows = {(r["rate"], r["policy"]): r for r in json.loads(done.stdout)}
        for rate in (1.0, 10.0, 20.0, 40.0):
            exact, dqn = rows[(rate, "exact")], rows[(rate, "dqn")]
            gap = (dqn["utility_mean"] - exact["utility_mean"]) / abs(exact["utility_mean"])
            print(
                f"{cache_gb:>4}G {rate:>5g} {dqn['requests']:>8} {dqn['failed']:>10} "
                f"{dqn['queue_at_decision_max']:>14} {exact['utility_mean']:>13.4f} {dqn['utility_mean']:>11.4f} "
                f"{100 * gap:>11.2f}%",
                flush=True,
            )


def time_decisions(policy, windows, passes: int) -> np.ndarray:
    policy.decide(windows[0])
    times = []
    for _ in range(passes):
        for instance in windows:
            start = time.perf_counter()
            policy.decide(instance)
            times.append(time.perf_counter() - start)
    return np.array(times) * 1000


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
