"""Policy comparison over random instances or instance files (``edgediff compare``, the paper's Fig. 11)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgediff import figure_io
from edgediff.core.instance import Instance
from edgediff.core.model import evaluate
from edgediff.core.scenario import PAPER_SCENARIO, Scenario, draw_instance
from edgediff.offload.policies import UnknownPolicyOption, make_policy, policy_option_names

CSV_COLUMNS = (
    "users",
    "gpus",
    "policy",
    "cases",
    "mean_objective",
    "mean_score",
    "mean_decision_time_s",
    "note",
    "score_p10",
    "score_p90",
    "decision_time_p10_s",
    "decision_time_p90_s",
)
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
    note: str = ""  # why a policy has no figures here (n/a): it could not decide a case
    # the spread over cases: 10th and 90th percentiles (NaN where the policy has no figures)
    score_p10: float = float("nan")
    score_p90: float = float("nan")
    decision_time_p10_s: float = float("nan")
    decision_time_p90_s: float = float("nan")

    @property
    def mean_decision_ms(self) -> float:
        return self.mean_decision_time_s * 1000


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


def _solvers(policies, seed: int, checkpoint, policy_options) -> dict:
    """Each policy made once, with the ``policy_options`` it takes (``population`` goes to ga only)."""
    options = dict(policy_options or {})
    return {
        name: make_policy(
            name, {k: v for k, v in options.items() if k in policy_option_names(name)}, seed=seed, checkpoint=checkpoint
        )
        for name in policies
    }


Results = tuple[dict[str, np.ndarray], dict[str, str]]


def _decide(solvers: Mapping, instances: Sequence[Instance]) -> Results:
    """``{policy: array shaped (2, len(instances))}`` (row 0 the objective, row 1 the decision
    seconds; NaN where the policy could not decide) and ``{policy: why}`` for the policies that
    failed on a case. The score's references (``exact``, ``b3``) must decide every case."""
    out = {name: np.empty((2, len(instances))) for name in solvers}
    failed: dict[str, str] = {}
    for j, instance in enumerate(instances):
        for name, policy in solvers.items():
            try:
                decision = policy.decide(instance)
            except Exception as err:  # one policy that cannot decide a case does not stop the others
                if name in SCORE_REFERENCES:
                    raise
                failed.setdefault(name, f"case of {instance.num_users} users: {type(err).__name__}: {err}")
                out[name][:, j] = np.nan
                continue
            out[name][:, j] = evaluate(instance, decision).objective, policy.last_decision_time_s
    return out, failed


def run_cases(
    num_users: int,
    gpus: int,
    cases: Sequence[int],
    policies: Sequence[str],
    seed: int,
    B_max: int | None,
    checkpoint: str | None,
    policy_options: Mapping[str, Any] | None = None,
    scenario: Scenario | None = None,
) -> Results:
    """Objective and decision time of every policy on the given cases of one point.

    Returns ``{policy: array shaped (2, len(cases))}`` (row 0 objective, row 1 seconds) and the
    policies that failed (:func:`_decide`). A module-level function of plain arguments, so a
    sweep can run it in another process. Cases are drawn from ``scenario`` (default: the
    paper's) with its ``G`` replaced by ``gpus``, and its ``B_max`` by ``B_max`` if given.
    """
    scenario = scenario or PAPER_SCENARIO
    drawn = replace(scenario, G=gpus, B_max=scenario.B_max if B_max is None else B_max)
    instances = [draw_instance(drawn, num_users, case_seed(seed, num_users, gpus, case)) for case in cases]
    return _decide(_solvers(policies, seed, checkpoint, policy_options), instances)


def _check_options(policies: Sequence[str], policy_options: Mapping[str, Any] | None) -> None:
    for key in policy_options or {}:  # each option must reach at least one policy
        if not any(key in policy_option_names(name) for name in policies):
            raise UnknownPolicyOption(f"no policy of {','.join(policies)} takes the option {key!r}")


def _rows(users: int, gpus: int, policies: Sequence[str], results: Results) -> list[CompareRow]:
    """One row per policy from the merged ``(2, cases)`` results of one point (references
    included); a policy that failed on a case has no figures (NaN) and says why."""
    merged, failed = results
    objective = {name: merged[name][0] for name in merged}
    rows = []
    for name in policies:
        score = normalized_score(objective[name], objective["exact"], objective["b3"])
        means = (float(objective[name].mean()), float(score.mean()), float(merged[name][1].mean()))
        low, high = np.percentile(np.stack([score, merged[name][1]]), [10, 90], axis=1)
        spread = {
            "score_p10": float(low[0]),
            "score_p90": float(high[0]),
            "decision_time_p10_s": float(low[1]),
            "decision_time_p90_s": float(high[1]),
        }
        row = CompareRow(users, gpus, name, objective[name].size, *means, note=failed.get(name, ""), **spread)
        rows.append(row)
    return rows


def compare_points(
    points: Iterable[tuple[int, int]],
    cases: int,
    policies: Iterable[str],
    *,
    seed: int = 0,
    B_max: int | None = None,
    checkpoint: str | None = None,
    policy_options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    workers: int | None = 1,
    ray_address: str | None = None,
    chunk: int = 10,
    scenario: Scenario | None = None,
) -> list[CompareRow]:
    """Mean objective, normalized score and decision time of each policy at each ``(users, gpus)``.

    Cases are split into chunks that run in parallel (:func:`edgediff.parallel.run_tasks`);
    every case has its own seed, so the numbers do not depend on ``workers`` (the times do).
    Each policy gets the ``policy_options`` it takes; an option no policy takes is an error.
    Instances are drawn from ``scenario`` (default: the paper's distribution) at each point's
    ``gpus`` and at ``B_max`` (default: the scenario's). A policy that cannot decide a case
    (it raises) gets a row without figures whose ``note`` says why; the others still run.
    """
    from tqdm.auto import tqdm

    from edgediff.parallel import run_tasks

    points, policies = list(points), list(policies)
    _check_options(policies, policy_options)
    everyone = list(dict.fromkeys([*policies, *SCORE_REFERENCES]))
    chunks = [range(start, min(start + chunk, cases)) for start in range(0, cases, chunk)]
    tasks = [
        (run_cases, (users, gpus, tuple(part), everyone, seed, B_max, checkpoint, policy_options, scenario))
        for users, gpus in points
        for part in chunks
    ]
    bar = tqdm(total=len(tasks), desc="compare", unit="task", disable=None if progress is None else not progress)
    results = run_tasks(tasks, workers=workers, ray_address=ray_address, progress=lambda k: bar.update(k - bar.n))
    bar.close()
    rows: list[CompareRow] = []
    for p, (users, gpus) in enumerate(points):
        parts = results[p * len(chunks) : (p + 1) * len(chunks)]
        merged = {name: np.concatenate([part[0][name] for part in parts], axis=1) for name in everyone}
        failed: dict[str, str] = {}
        for part in parts:
            failed = {**part[1], **failed}  # the first failure of each policy
        rows += _rows(users, gpus, policies, (merged, failed))
    return rows


def compare(users: Iterable[int], gpus: int, cases: int, policies: Iterable[str], **options) -> list[CompareRow]:
    """:func:`compare_points` over user counts at a fixed ``gpus`` (``edgediff compare``)."""
    return compare_points([(num_users, gpus) for num_users in users], cases, policies, **options)


def compare_instances(
    instances: Sequence[Instance],
    policies: Iterable[str],
    *,
    seed: int = 0,
    checkpoint: str | None = None,
    policy_options: Mapping[str, Any] | None = None,
) -> list[CompareRow]:
    """Every policy on the given instances (``edgediff compare --instances DIR``), serially.

    The instances are grouped by ``(users, G)``, one row per policy and group, groups in
    increasing order. A case's normalized score is computed against ``exact`` and ``b3`` on that
    same instance, then averaged over the group, exactly as for drawn instances.
    """
    policies = list(policies)
    _check_options(policies, policy_options)
    everyone = list(dict.fromkeys([*policies, *SCORE_REFERENCES]))
    solvers = _solvers(everyone, seed, checkpoint, policy_options)
    rows: list[CompareRow] = []
    for users, gpus in sorted({(inst.num_users, inst.G) for inst in instances}):
        group = [inst for inst in instances if (inst.num_users, inst.G) == (users, gpus)]
        rows += _rows(users, gpus, policies, _decide(solvers, group))
    return rows


def write_csv(path: str | Path, rows: Sequence[CompareRow]) -> Path:
    """``rows`` as CSV (``edgediff compare --out``), in :data:`CSV_COLUMNS` order."""
    return figure_io.write_csv(path, [asdict(r) for r in rows], CSV_COLUMNS)


def plot_rows(rows: Sequence[CompareRow], path: str | Path) -> Path:
    """``edgediff compare --plot``: normalized score and decision time against users, one line
    per policy (and per ``G`` when the rows have several), the mean over the cases and a band
    from their 10th to 90th percentile; a policy without figures at a point (n/a) has a gap there."""
    plt = figure_io.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    several_g = len({r.gpus for r in rows}) > 1
    lines = dict.fromkeys((r.policy, r.gpus) for r in rows)
    for policy, gpus in lines:
        pts = sorted((r for r in rows if (r.policy, r.gpus) == (policy, gpus)), key=lambda r: r.users)
        users = np.array([r.users for r in pts])
        label = f"{policy} (G = {gpus})" if several_g else policy
        for ax, keys, scale in (
            (left, ("mean_score", "score_p10", "score_p90"), 1.0),
            (right, ("mean_decision_time_s", "decision_time_p10_s", "decision_time_p90_s"), 1e3),
        ):
            mean, low, high = (np.array([getattr(r, k) for r in pts]) * scale for k in keys)
            (line,) = ax.plot(users, mean, marker="o", label=label)
            ax.fill_between(users, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    left.set(xlabel="users", ylabel="normalized score (1 = exact, 0 = all local)")
    right.set(xlabel="users", ylabel="decision time (ms)", yscale="log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_xticks(sorted({r.users for r in rows}))
    left.legend(fontsize=8)
    cases = sorted({r.cases for r in rows})
    title = f"compare: mean over {'/'.join(map(str, cases))} cases per point, band: 10th to 90th percentile"
    fig.suptitle(title, fontsize=9)
    return figure_io.write_png(fig, path)
