"""Policy comparison over random instances (``edgediff compare``, the paper's Fig. 11)."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from edgediff.core.generator import random_instance
from edgediff.core.model import evaluate
from edgediff.offload.policies import make_policy

CSV_COLUMNS = ("users", "gpus", "policy", "cases", "mean_objective", "mean_score", "mean_decision_time_s")
SCORE_REFERENCES = ("exact", "b3")


@dataclass(frozen=True)
class CompareRow:
    users: int
    gpus: int
    policy: str
    cases: int
    mean_objective: float
    mean_score: float
    mean_decision_time_s: float


def normalized_score(objective, exact_objective, all_local_objective):
    """``(obj - obj_b3) / (obj_exact - obj_b3)``: 1 is optimal, 0 is all-local.

    Where the optimum is all-local (no head-room) a policy scores 1 if it reaches the
    optimum and 0 otherwise, so a case without head-room cannot blow up the mean.
    """
    objective, exact_objective, all_local_objective = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (objective, exact_objective, all_local_objective))
    )
    headroom = exact_objective - all_local_objective
    flat = headroom <= 1e-9 * np.maximum(1.0, np.abs(exact_objective))
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (objective - all_local_objective) / headroom
    return np.where(flat, (objective >= exact_objective - 1e-9).astype(float), score)


def case_seed(seed: int, users: int, gpus: int, case: int) -> np.random.SeedSequence:
    """Each (point, case) gets its own stream, so adding points never changes others."""
    return np.random.SeedSequence([seed, users, gpus, case])


def compare(
    users: Iterable[int],
    gpus: int,
    cases: int,
    policies: Iterable[str],
    *,
    seed: int = 0,
    B_max: int = 20,
    checkpoint: str | None = None,
    progress: bool | None = None,
) -> list[CompareRow]:
    """Mean objective, normalized score and decision time of each policy per user count."""
    from tqdm.auto import tqdm

    users, policies = list(users), list(policies)
    solvers = {
        name: make_policy(name, seed=seed, checkpoint=checkpoint)
        for name in dict.fromkeys([*policies, *SCORE_REFERENCES])
    }
    rows: list[CompareRow] = []
    bar = tqdm(
        total=len(users) * cases, desc="compare", unit="case", disable=None if progress is None else not progress
    )
    for num_users in users:
        objective = {name: np.empty(cases) for name in solvers}
        elapsed = {name: np.empty(cases) for name in solvers}
        for case in range(cases):
            ss = case_seed(seed, num_users, gpus, case)
            instance = random_instance(num_users, gpus, seed=np.random.default_rng(ss), B_max=B_max)
            for name, policy in solvers.items():
                decision = policy.decide(instance)
                objective[name][case] = evaluate(instance, decision).objective
                elapsed[name][case] = policy.last_decision_time_s
            bar.update()
        scores = {n: normalized_score(objective[n], objective["exact"], objective["b3"]) for n in policies}
        rows += [
            CompareRow(
                num_users, gpus, n, cases, float(objective[n].mean()), float(scores[n].mean()), float(elapsed[n].mean())
            )
            for n in policies
        ]
    bar.close()
    return rows


def write_csv(rows: list[CompareRow], path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
