"""Seed 000's experiments as ``edgediff reproduce fig8a ... table2`` (docs/offloading-model.md, "Figures").

Every comparison figure also shows ``exact``, the optimum the paper could not show, and runs
every policy on the same seeded instances (one seed stream per case, ``compare.case_seed``).
``quick`` gives the same figures from fewer points and cases. Figures that train Q-networks
(fig9, fig10) keep them under ``OUT/models`` and reuse them when asked for the same training.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from edgediff.core.generator import random_instance
from edgediff.core.instance import Instance
from edgediff.core.model import evaluate
from edgediff.core.profiles import PROFILE_TABLE
from edgediff.figure_io import Figure, markdown, markdown_table, pyplot
from edgediff.offload.compare import case_seed, compare_points, normalized_score
from edgediff.offload.policies import make_policy
from edgediff.offload.split import best_splits
from edgediff.parallel import run_tasks

log = logging.getLogger(__name__)

PAPER_SETTINGS = "N=200, N_hat=80, B_max=20, W_max=1 MHz, eta=10, a_F=0.0413, b_F=71.44"
PERFORMANCE_LABEL = "average performance per user (alpha F - latency, s)"


# --- Fig. 8: optimal offloaded steps against alpha ----------------------------------------


def _single_users(rows: list[int], alphas: np.ndarray, gpus: int) -> tuple[Instance, np.ndarray, np.ndarray]:
    """One user per (local GPU row, alpha) pair, on the paper's defaults."""
    template = random_instance(1, gpus, seed=0)
    row, alpha = (a.ravel() for a in np.meshgrid(rows, alphas, indexing="ij"))
    count = row.size
    instance = replace(
        template,
        ids=tuple(f"u{i}" for i in range(count)),
        k=PROFILE_TABLE[row, 0],
        h=PROFILE_TABLE[row, 1],
        alpha=alpha,
        request_time=np.zeros(count),
        prompt_bits=np.full(count, template.prompt_bits[0]),
        intermediate_bits=np.full(count, template.intermediate_bits[0]),
        # no cache hits; the template's array has the wrong length (None: Instance.__post_init__ fills zeros)
        cached_steps=None,  # type: ignore[arg-type]
    )
    return instance, row, alpha


ALPHAS = np.round(np.logspace(0.5, 3.5, 31), 3)


def fig8a(out_dir: Path, *, quick: bool = False, seed: int = 0, **_) -> Figure:
    """Optimal offloaded steps against alpha: batch sizes at the edge x local GPUs (G = 8)."""
    gpus, batches, local_rows = 8, [1, 5, 10, 20], [3, 6, 10]
    instance, row, alpha = _single_users(local_rows, ALPHAS, gpus)
    split = best_splits(instance, batches)[0]
    rows = [
        {"alpha": a, "local_row": int(r), "batch_size": b, "gpus": gpus, "offloaded_steps": int(instance.N - n)}
        for j, b in enumerate(batches)
        for a, r, n in zip(alpha, row, split[:, j])
    ]
    return _fig8("fig8a", rows, "local_row", local_rows, "batch_size", batches, "local GPU row", gpus=gpus)


def fig8b(out_dir: Path, *, quick: bool = False, seed: int = 0, **_) -> Figure:
    """Optimal offloaded steps against alpha: edge GPUs G x batch sizes (a mid-range local GPU)."""
    local_row, batches, gpu_counts = 6, [5, 20], [1, 2, 4, 8, 16]
    rows = []
    for gpus in gpu_counts:
        instance, _row, alpha = _single_users([local_row], ALPHAS, gpus)
        split = best_splits(instance, batches)[0]
        rows += [
            {"alpha": a, "local_row": local_row, "batch_size": b, "gpus": gpus, "offloaded_steps": int(instance.N - n)}
            for j, b in enumerate(batches)
            for a, n in zip(alpha, split[:, j])
        ]
    return _fig8("fig8b", rows, "batch_size", batches, "gpus", gpu_counts, "batch size")


def _fig8(name, rows, panel_key, panels, line_key, lines, panel_label, gpus=None) -> Figure:
    fig, axes = pyplot().subplots(1, len(panels), figsize=(4.5 * len(panels), 4), sharey=True)
    for ax, panel in zip(axes, panels):
        for line in lines:
            pts = [r for r in rows if r[panel_key] == panel and r[line_key] == line]
            ax.plot(
                [r["alpha"] for r in pts], [r["offloaded_steps"] for r in pts], marker=".", label=f"{line_key} {line}"
            )
        ax.set(xscale="log", xlabel="user emphasis alpha (s per unit PAI)", title=f"{panel_label} {panel}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("optimal offloaded steps N - n*")
    axes[0].legend()
    where = f"G = {gpus}, " if gpus else ""
    fig.suptitle(f"{name}: optimal offloaded steps vs alpha ({where}{PAPER_SETTINGS})", fontsize=9)
    # Summary: offloaded steps at three reference alphas, and the smallest alpha that keeps all steps local.
    reference = [10.0, 100.0, 1000.0]
    table = []
    for panel in panels:
        for line in lines:
            steps = {r["alpha"]: r["offloaded_steps"] for r in rows if r[panel_key] == panel and r[line_key] == line}
            at = [steps[min(steps, key=lambda a: abs(a - ref))] for ref in reference]
            local = min((a for a, m in steps.items() if m == 0), default=float("nan"))
            table.append([panel, line, *at, local])
    summary = markdown(
        f"{name}: optimal offloaded steps against alpha",
        [
            f"Closed-form inner split (docs/offloading-model.md), {where}{PAPER_SETTINGS}. alpha from "
            f"{ALPHAS[0]} to {ALPHAS[-1]} (log grid); local GPU rows are the paper's profile table.",
            "",
            *markdown_table(
                [panel_key, line_key, *(f"steps at alpha {r:g}" for r in reference), "all local from alpha"], table
            ),
        ],
    )
    return Figure(name, rows, fig, summary)


# --- Fig. 11 and the other comparison figures ----------------------------------------------


MARKERS = ("s", "^", "v", "D", "P", "X", "*")  # one per policy, so overlapping lines stay apart
# The paper's figures show the paper's agent: one greedy episode (no beam) of the paper's network
# (20 user slots; checkpoints/general), not the dqn policy's default any-size model
PAPER_DQN = {"beam_width": 1}


def paper_checkpoint() -> str:
    from edgediff.offload.dqn.checkpoint import PAPER

    return str(PAPER)


def _policies(default: list[str], options) -> list[str]:
    """The figure's policies: ``options["policies"]`` (``reproduce --policies``, your own among
    them) with ``exact`` always beside them, else the paper's ``default``."""
    given = options.get("policies")
    return default if not given else list(dict.fromkeys([*given, "exact"]))


def _settings(options) -> str:
    scenario = options.get("scenario")
    return PAPER_SETTINGS if scenario is None else f"scenario {scenario.name or '(unnamed)'}, B_max={scenario.B_max}"


def _comparison(name: str, points, policies, cases, x_key, x_label, title, seed, options) -> Figure:
    rows = compare_points(
        points,
        cases,
        policies,
        seed=seed,
        workers=options.get("workers"),
        ray_address=options.get("ray"),
        progress=options.get("progress"),
        checkpoint=paper_checkpoint() if "dqn" in policies else None,
        policy_options=PAPER_DQN if "dqn" in policies else None,
        scenario=options.get("scenario"),
    )
    records = [{**asdict(r), "mean_objective_per_user": r.mean_objective / r.users} for r in rows]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4.2))
    for i, policy in enumerate(policies):
        pts = sorted((r for r in records if r["policy"] == policy), key=lambda r: r[x_key])
        style = dict(marker=MARKERS[i % len(MARKERS)], markersize=5, linestyle="-", zorder=3, label=policy)
        if policy == "exact":  # the optimum: a wide hollow dashed line below, so a policy that matches it shows
            style.update(marker="o", markersize=10, markerfacecolor="none", linestyle="--", linewidth=2.5, zorder=2)
        left.plot([r[x_key] for r in pts], [r["mean_objective_per_user"] for r in pts], **style)
        right.plot([r[x_key] for r in pts], [r["mean_score"] for r in pts], **style)
    left.set(xlabel=x_label, ylabel=PERFORMANCE_LABEL)
    right.set(xlabel=x_label, ylabel="normalized score (1 = exact, 0 = all local, < 0 worse)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend()
    fig.suptitle(f"{name}: {title} ({cases} cases per point, seed {seed}; {_settings(options)})", fontsize=9)
    exact = {r[x_key]: r["mean_objective"] for r in records if r["policy"] == "exact"}
    excess = max(r["mean_objective"] - exact[r[x_key]] for r in records)
    table = [
        [r[x_key], r["policy"], r["mean_objective_per_user"], r["mean_score"], 1e3 * r["mean_decision_time_s"]]
        for r in records
    ]
    summary = markdown(
        f"{name}: {title}",
        [
            f"{cases} random instances per point ({_source(options)}), seed {seed}; every policy on the same "
            "instances."
            + (" `dqn` is the paper's agent: one greedy episode (`beam_width` 1)." if "dqn" in policies else ""),
            f"Largest mean objective above `exact` over all points and policies: {excess:.3g} "
            "(exact is the optimum under the paper model, so this is never positive beyond rounding).",
            "",
            *markdown_table([x_key, "policy", "performance per user", "normalized score", "decision (ms)"], table),
        ],
    )
    return Figure(name, records, fig, summary)


def _source(options) -> str:
    scenario = options.get("scenario")
    return "docs/offloading-model.md" if scenario is None else f"drawn from scenario {scenario.name or '(unnamed)'}"


def _user_points(paper: list[int], options) -> tuple[list[int], int]:
    """User counts and G of a figure against users: the paper's at G = 8, or a scenario's."""
    scenario = options.get("scenario")
    return (paper, 8) if scenario is None else (sorted(scenario.users), scenario.G)


def fig11a(out_dir: Path, *, quick: bool = False, seed: int = 0, **options) -> Figure:
    users, gpus = _user_points([4, 12, 20] if quick else [4, 6, 8, 10, 12, 14, 16, 18, 20], options)
    return _comparison(
        "fig11a",
        [(u, gpus) for u in users],
        _policies(["dqn", "b1", "b2", "b3", "exact"], options),
        10 if quick else 100,
        "users",
        "number of users",
        f"average performance vs users, G = {gpus}",
        seed,
        options,
    )


def fig11b(out_dir: Path, *, quick: bool = False, seed: int = 0, **options) -> Figure:
    gpus = [1, 8, 16] if quick else [1, 2, 4, 6, 8, 10, 12, 14, 16]
    users = 20 if options.get("scenario") is None else max(options["scenario"].users)
    return _comparison(
        "fig11b",
        [(users, g) for g in gpus],
        _policies(["dqn", "b1", "b2", "b3", "exact"], options),
        10 if quick else 100,
        "gpus",
        "GPUs at the edge G",
        f"average performance vs edge GPUs, {users} users",
        seed,
        options,
    )


def fig11c(out_dir: Path, *, quick: bool = False, seed: int = 0, **options) -> Figure:
    users, gpus = _user_points([4, 12, 20] if quick else [4, 8, 12, 16, 20], options)
    return _comparison(
        "fig11c",
        [(u, gpus) for u in users],
        _policies(["dqn", "milp", "ga", "exact"], options),
        5 if quick else 100,
        "users",
        "number of users",
        f"DRL-convex hybrid vs B&B (milp) vs GA, G = {gpus}",
        seed,
        options,
    )


# --- Table II: decision time against user count --------------------------------------------


def _time_policy(name: str, users: int, repeats: int, seed: int, time_limit: float) -> dict:
    dqn = name == "dqn"
    checkpoint = paper_checkpoint() if dqn else None
    policy = make_policy(name, PAPER_DQN if dqn else None, seed=seed, time_limit=time_limit, checkpoint=checkpoint)
    instances = [
        random_instance(users, 8, seed=np.random.default_rng(case_seed(seed, users, 8, c))) for c in range(repeats)
    ]
    if name != "milp":
        policy.decide(instances[0])  # warm-up: lazy imports and caches are not decision time
    times = []
    for instance in instances:
        policy.decide(instance)
        times.append(policy.last_decision_time_s)
    median = float(np.median(times))
    return {
        "policy": name,
        "users": users,
        "repeats": repeats,
        "median_decision_time_s": median,
        "max_decision_time_s": float(np.max(times)),
        "time_limited": bool(name == "milp" and np.max(times) >= 0.95 * time_limit),
    }


def table2(out_dir: Path, *, quick: bool = False, seed: int = 0, **_) -> Figure:
    """Measured decision time against user count (serial, so that timings are not shared)."""
    from edgediff.offload.dqn.policy import max_users

    user_counts = [4, 20, 100] if quick else [4, 10, 20, 50, 100, 200, 500, 1000]
    repeats, time_limit = (2, 2.0) if quick else (5, 10.0)
    dqn_max = max_users(paper_checkpoint())
    assert dqn_max is not None  # the paper's network pads its input to a fixed user count
    rows = []
    for name in ("exact", "timeline", "dqn", "ga", "milp"):
        for users in user_counts:
            if name == "dqn" and users > dqn_max:
                continue  # the network's input is padded to a fixed user count, as in the paper
            log.info("table2: %s at %d users", name, users)
            rows.append(_time_policy(name, users, repeats, seed, time_limit))
    fig, ax = pyplot().subplots(figsize=(6.5, 4.5))
    for name in dict.fromkeys(r["policy"] for r in rows):
        pts = [r for r in rows if r["policy"] == name]
        ax.plot([r["users"] for r in pts], [r["median_decision_time_s"] for r in pts], marker="o", label=name)
        limited = [r for r in pts if r["time_limited"]]
        if limited:
            ax.scatter(
                [r["users"] for r in limited],
                [r["median_decision_time_s"] for r in limited],
                s=120,
                facecolors="none",
                edgecolors="red",
                label=f"{name}: time limit {time_limit:g} s reached",
            )
    ax.set(xscale="log", yscale="log", xlabel="number of users I", ylabel="decision time (s, median)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"table2: decision time vs users (G = 8, {repeats} instances per point, this CPU)", fontsize=9)
    table = [
        [r["policy"], r["users"], 1e3 * r["median_decision_time_s"], "yes" if r["time_limited"] else ""] for r in rows
    ]
    summary = markdown(
        "table2: decision time against user count (measured, not asserted)",
        [
            f"Median of {repeats} random instances per point (G = 8, seed {seed}), run one at a time on this "
            f"machine. `milp` has a time limit of {time_limit:g} s per solve; a point marked as time-limited "
            "returned HiGHS's best incumbent, not a proven optimum of its split-fixed problem. `dqn` stops at "
            f"{dqn_max} users: its network's input is padded to that many users (the paper's design).",
            "",
            *markdown_table(["policy", "users", "median decision (ms)", "time limit reached"], table),
        ],
    )
    return Figure("table2", rows, fig, summary)


# --- Fig. 9 and Fig. 10: the three applicability scopes ------------------------------------

SCOPE_EPISODES = {"general": 20_000, "gpu": 10_000, "specific": 3_000}
QUICK_EPISODES = 300


def _specific_instance_seed(seed: int, users: int, gpus: int) -> int:
    return int(np.random.SeedSequence([seed, users, gpus]).generate_state(1)[0])


def _train_scope(directory: str | Path, scope: str, gpus: int, users: int, episodes: int, seed: int) -> dict:
    """Train one scope into ``directory`` unless the same training is already there."""
    from edgediff.offload.dqn.session import train_to_directory

    directory = Path(directory)
    wanted = {"scope": scope, "gpus": gpus, "users": users, "episodes": episodes, "seed": seed}
    stamp = directory / "reproduce.json"
    if stamp.exists() and json.loads(stamp.read_text()) == wanted and (directory / "model.safetensors").exists():
        return json.loads((directory / "summary.json").read_text())
    directory.mkdir(parents=True, exist_ok=True)
    summary = train_to_directory(
        directory,
        scope=scope,
        gpus=gpus,
        users=users,
        instance_seed=_specific_instance_seed(seed, users, gpus),
        episodes=episodes,
        seed=seed,
        progress=False,
    )
    (directory / "summary.json").write_text(json.dumps(summary))
    stamp.write_text(json.dumps(wanted))
    return summary


def _scope_jobs(out_dir: Path, quick: bool, seed: int, specific_users: list[int]) -> list[tuple]:
    episodes = {s: QUICK_EPISODES if quick else e for s, e in SCOPE_EPISODES.items()}
    jobs = [(str(out_dir / "models" / s), s, 8, 20, episodes[s], seed) for s in ("general", "gpu")]
    jobs += [
        (str(out_dir / "models" / f"specific-{u}"), "specific", 8, u, episodes["specific"], seed)
        for u in specific_users
    ]
    return jobs


def fig9(out_dir: Path, *, quick: bool = False, seed: int = 0, **options) -> Figure:
    """Learning curves of the three scopes (general, GPU-constrained at G = 8, specific 20 users)."""
    import csv

    jobs = _scope_jobs(out_dir, quick, seed, [20])
    log.info("fig9: training %s (episodes %s)", ", ".join(Path(j[0]).name for j in jobs), [j[4] for j in jobs])
    summaries = run_tasks(
        [(_train_scope, job) for job in jobs], workers=options.get("workers"), ray_address=options.get("ray")
    )
    fig, axes = pyplot().subplots(2, 3, figsize=(14, 7))
    rows = []
    for column, job in enumerate(jobs):
        directory, scope = Path(job[0]), job[1]
        with open(directory / "learning_curve.csv") as fh:
            curve = list(csv.DictReader(fh))
        with open(directory / "evaluation.csv") as fh:
            evaluations = list(csv.DictReader(fh))
        episodes = [int(r["episode"]) for r in curve if r["smoothed_objective"]]
        smoothed = [float(r["smoothed_objective"]) for r in curve if r["smoothed_objective"]]
        axes[0, column].plot(episodes, smoothed)
        axes[0, column].set(xlabel="episode", ylabel="episode objective (smoothed over 100)", title=f"{scope} scope")
        axes[1, column].plot(
            [int(e["episode"]) for e in evaluations], [float(e["mean_score"]) for e in evaluations], "o-"
        )
        axes[1, column].axhline(1.0, color="gray", linestyle="--", label="exact")
        axes[1, column].set(xlabel="episode", ylabel="held-out normalized score")
        axes[1, column].legend()
        rows += [{"scope": scope, "episode": e["episode"], "held_out_mean_score": e["mean_score"]} for e in evaluations]
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"fig9: PER-DQN learning curves, three scopes (preset tuned, seed {seed}; {PAPER_SETTINGS})", fontsize=9
    )
    table = [
        [job[1], job[4], summary["train_time_s"], summary["held_out_mean_score"]]
        for job, summary in zip(jobs, summaries)
    ]
    summary = markdown(
        "fig9: learning curves of the three applicability scopes",
        [
            "General: G in 1..16 and 4..20 users per episode; GPU-constrained: G = 8, 4..20 users; specific: one "
            "20-user instance at G = 8. Held-out: 100 instances of the scope never trained on, scored against "
            "`exact` (1 = optimum, 0 = all local). Checkpoints are under `models/`.",
            "",
            *markdown_table(["scope", "episodes", "train time (s)", "final held-out score"], table),
        ],
    )
    return Figure("fig9", rows, fig, summary)


def _evaluate_scope_models(users: int, gpus: int, seed: int, checkpoints: dict[str, str]) -> list[dict]:
    instance = random_instance(users, gpus, seed=_specific_instance_seed(seed, users, gpus))
    policies = {label: make_policy("dqn", PAPER_DQN, checkpoint=path) for label, path in checkpoints.items()}
    policies["exact"] = make_policy("exact")
    rows = []
    for label, policy in policies.items():
        result = evaluate(instance, policy.decide(instance))
        rows.append(
            {
                "users": users,
                "gpus": gpus,
                "policy": label,
                "objective_per_user": result.objective / users,
                "mean_pai": float(result.pai.mean()),
                "mean_latency_s": float(result.latency.mean()),
            }
        )
    return rows


def fig10(out_dir: Path, *, quick: bool = False, seed: int = 0, **options) -> Figure:
    """The three scopes on one specific instance per user count (G = 8): performance, PAI, latency."""
    user_counts = [4, 12, 20] if quick else [4, 8, 12, 16, 20]
    jobs = _scope_jobs(out_dir, quick, seed, user_counts)
    log.info("fig10: training the models fig9 has not left in %s/models", out_dir)
    run_tasks([(_train_scope, job) for job in jobs], workers=options.get("workers"), ray_address=options.get("ray"))
    models = {Path(job[0]).name: job[0] for job in jobs}
    rows = []
    for u in user_counts:
        scopes = {"general": models["general"], "gpu": models["gpu"], "specific": models[f"specific-{u}"]}
        rows += _evaluate_scope_models(u, 8, seed, scopes)
    labels = ["general", "gpu", "specific", "exact"]
    fig, axes = pyplot().subplots(1, 3, figsize=(15, 4.2))
    width = 0.8 / len(labels)
    metrics = [
        ("objective_per_user", PERFORMANCE_LABEL),
        ("mean_pai", "average PAI F(n)"),
        ("mean_latency_s", "average end-to-end latency (s)"),
    ]
    x = np.arange(len(user_counts))
    for ax, (key, ylabel) in zip(axes, metrics):
        for j, label in enumerate(labels):
            values = [next(r[key] for r in rows if r["users"] == u and r["policy"] == label) for u in user_counts]
            ax.bar(x + (j - (len(labels) - 1) / 2) * width, values, width, label=label)
        ax.set(
            xticks=x,
            xticklabels=[str(u) for u in user_counts],
            xlabel="users (one specific instance each)",
            ylabel=ylabel,
        )
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend()
    fig.suptitle(f"fig10: three scopes on specific instances (G = 8, seed {seed}; {PAPER_SETTINGS})", fontsize=9)
    table = [[r["users"], r["policy"], r["objective_per_user"], r["mean_pai"], r["mean_latency_s"]] for r in rows]
    summary = markdown(
        "fig10: the three scopes on specific instances",
        [
            "Each user count is one specific random instance at G = 8; the specific model was trained on exactly "
            "that instance, the general and GPU-constrained models on their scopes (fig9).",
            "",
            *markdown_table(["users", "policy", "performance per user", "average PAI", "average latency (s)"], table),
        ],
    )
    return Figure("fig10", rows, fig, summary)


# --- Beyond the paper: the timeline latency model ------------------------------------------

GRID = (80, 140, 200)


def _timeline_cases(users: int, gpus: int, cases: tuple[int, ...], seed: int) -> np.ndarray:
    """Per case: exact's objective under the paper and timeline models, the timeline optimum, all-local."""
    from edgediff.offload.exact import solve_exact
    from edgediff.offload.timeline import solve_timeline

    out = np.empty((4, len(cases)))
    for j, case in enumerate(cases):
        instance = random_instance(users, gpus, seed=np.random.default_rng(case_seed(seed, users, gpus, case)))
        exact = solve_exact(instance)
        out[:, j] = (
            evaluate(instance, exact).objective,
            evaluate(instance, exact, "timeline").objective,
            evaluate(instance, solve_timeline(instance), "timeline").objective,
            evaluate(instance, make_policy("b3").decide(instance)).objective,
        )
    return out


def _grid_check(users: int, seed: int) -> float:
    """|timeline optimum on the split grid - brute force| on one random instance."""
    from edgediff.offload.timeline import brute_force_timeline, solve_timeline

    instance = random_instance(users, 8, seed=np.random.SeedSequence([seed, users, 0xB]), B_max=max(1, users - 2))
    best, _ = brute_force_timeline(instance, GRID)
    return abs(evaluate(instance, solve_timeline(instance, split_grid=GRID), "timeline").objective - best)


def timeline(out_dir: Path, *, quick: bool = False, seed: int = 0, **options) -> Figure:
    """What the paper-model optimum loses when the edge batch really shrinks as members leave."""
    cases = 10 if quick else 100
    points = [(u, 8) for u in ([4, 12, 20] if quick else [4, 8, 12, 16, 20])]
    points += [(20, g) for g in ([1, 16] if quick else [1, 2, 4, 16])]
    check_users = [4, 6] if quick else [4, 6, 8, 10]
    workers, ray = options.get("workers"), options.get("ray")
    results = run_tasks(
        [(_timeline_cases, (u, g, tuple(range(cases)), seed)) for u, g in points], workers=workers, ray_address=ray
    )
    gaps = run_tasks([(_grid_check, (u, seed)) for u in check_users], workers=workers, ray_address=ray)
    rows = []
    for (users, gpus), (paper, exact, best, local) in zip(points, results):
        rows.append(
            {
                "users": users,
                "gpus": gpus,
                "cases": cases,
                "exact_paper_model_per_user": float(paper.mean() / users),
                "exact_timeline_model_per_user": float(exact.mean() / users),
                "timeline_optimum_per_user": float(best.mean() / users),
                "loss_per_user_s": float((best - exact).mean() / users),
                "exact_score_under_timeline": float(normalized_score(exact, best, local).mean()),
            }
        )
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4.2))
    for ax, (key, label, fixed) in zip(
        axes, [("users", "number of users (G = 8)", 8), ("gpus", "GPUs at the edge G (20 users)", 20)]
    ):
        other = "gpus" if key == "users" else "users"
        pts = sorted((r for r in rows if r[other] == fixed), key=lambda r: r[key])  # lines run left to right
        x = [r[key] for r in pts]
        ax.plot(x, [r["exact_paper_model_per_user"] for r in pts], "o:", label="exact, as the paper model predicts")
        ax.plot(x, [r["exact_timeline_model_per_user"] for r in pts], "o-", label="exact's decision, timeline model")
        ax.plot(x, [r["timeline_optimum_per_user"] for r in pts], "s--", label="timeline optimum")
        ax.set(xlabel=label, ylabel=PERFORMANCE_LABEL)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"timeline: the paper-model optimum under a shrinking batch ({cases} cases per point, seed {seed})", fontsize=9
    )
    table = [
        [
            r["users"],
            r["gpus"],
            r["exact_paper_model_per_user"],
            r["exact_timeline_model_per_user"],
            r["timeline_optimum_per_user"],
            r["loss_per_user_s"],
            r["exact_score_under_timeline"],
        ]
        for r in rows
    ]
    summary = markdown(
        "timeline: what the paper-model optimum loses when the batch shrinks",
        [
            "Under the timeline model a member leaves the edge batch at its split point, so later "
            "steps run in smaller, faster batches. `exact` optimizes the paper's fixed-batch model; `timeline` "
            "is the exact optimum of the timeline model (a rank assignment, docs/offloading-model.md).",
            "",
            *markdown_table(
                [
                    "users",
                    "G",
                    "exact (paper model)",
                    "exact (timeline)",
                    "timeline optimum",
                    "loss per user (s)",
                    "exact's score under timeline",
                ],
                table,
            ),
            "",
            f"Brute-force check on the split grid {GRID} (every grant vector and grid split, one instance per user "
            f"count {check_users}): largest |timeline - brute force| = {max(gaps):.3g}.",
        ],
    )
    return Figure("timeline", rows, fig, summary)
