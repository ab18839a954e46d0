"""Decisions as the decision JSON object (docs/formats.md) and as readable tables."""

from __future__ import annotations

from edgediff.core.instance import Instance
from edgediff.core.model import Decision, Evaluation
from edgediff.figure_io import text_table as format_table  # the name the commands import


def decision_report(
    instance: Instance, policy: str, decision: Decision, evaluation: Evaluation, decision_time_s: float
) -> dict:
    """The decision JSON object (docs/formats.md): keys are a contract, add but never rename."""
    offloaded = decision.offloaded_steps(instance)
    return {
        "policy": policy,
        "latency_model": evaluation.latency_model,
        "objective": evaluation.objective,
        "granted": decision.granted_count,
        "decision_time_s": decision_time_s,
        "users": [
            {
                "id": instance.ids[i],
                "granted": bool(decision.granted[i]),
                "split": int(decision.split[i]),
                "offloaded_steps": int(offloaded[i]),
                "latency": float(evaluation.latency[i]),
                "pai": float(evaluation.pai[i]),
                "utility": float(evaluation.utility[i]),
            }
            for i in range(instance.num_users)
        ],
    }


def format_decision(report: dict) -> str:
    head = (
        f"policy {report['policy']} ({report['latency_model']} latency model): objective "
        f"{report['objective']:.4f}, {report['granted']}/{len(report['users'])} granted, "
        f"decided in {report['decision_time_s'] * 1000:.2f} ms"
    )
    keys = ["id", "granted", "split", "offloaded_steps", "latency", "pai", "utility"]
    table = format_table(
        ["id", "granted", "split", "offloaded", "latency_s", "pai", "utility"],
        [[u[k] for k in keys] for u in report["users"]],
    )
    return f"{head}\n{table}"
