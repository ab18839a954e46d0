"""``edgediff demo``: one 20-user window on the paper defaults, every policy side by side."""

from __future__ import annotations

from edgediff.core.generator import random_instance
from edgediff.core.model import evaluate
from edgediff.offload.compare import normalized_score
from edgediff.offload.policies import POLICY_NAMES, make_policy
from edgediff.offload.report import decision_report, format_decision, format_table


def run_demo(users: int = 20, gpus: int = 8, seed: int = 0) -> str:
    """Run every policy on one random instance; return the text to show."""
    instance = random_instance(users, gpus, seed=seed)
    results = {}
    for name in POLICY_NAMES:
        policy = make_policy(name, seed=seed)
        decision = policy.decide(instance)
        results[name] = (decision, evaluate(instance, decision), policy.last_decision_time_s)

    exact_decision, exact_eval, exact_time = results["exact"]
    best, all_local = exact_eval.objective, results["b3"][1].objective
    rows = [
        [
            name,
            ev.objective,
            float(normalized_score(ev.objective, best, all_local)),
            d.granted_count,
            float(ev.latency.mean()),
            float(ev.pai.mean()),
            t * 1000,
        ]
        for name, (d, ev, t) in results.items()
    ]
    return "\n\n".join(
        [
            f"edgediff demo: {users} users, G = {gpus} edge GPUs, B_max = {instance.B_max}, "
            f"N = {instance.N}, N_hat = {instance.N_hat}, seed {seed} (paper defaults, docs/offloading-model.md)",
            "The optimal decision (exact):\n"
            + format_decision(decision_report(instance, "exact", exact_decision, exact_eval, exact_time)),
            "All policies on this window (score: 1 = optimal, 0 = all local):\n"
            + format_table(
                ["policy", "objective", "score", "granted", "mean_latency_s", "mean_pai", "decision_ms"], rows
            ),
        ]
    )
