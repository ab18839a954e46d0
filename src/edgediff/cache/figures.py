"""Seed 002's experiments (docs/caching-model.md, revision 3) as ``edgediff reproduce cache-fig*``:
PNG + CSV + Markdown.

Every comparison figure runs every policy on the same seeded environment per point and seed
(common random numbers) and adds two reference rows: offloading with no cache (``oo`` at 0 GB)
and the all-hit floor; it plots response time, hit rate, time saved per request and the edge
backlog. **(r3)** Every point is the mean over :data:`FIGURE_SEEDS` seeds, ``seed`` to
``seed + 4``, with its 95 % confidence interval (the ``*_ci`` columns, error bars); ``workers``
runs them in that many processes. ``quick`` shortens the runs (fewer slots, fewer points, one
seed) for smoke tests; its numbers are not the paper-scale results.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.policies import CLASSIC_POLICIES, COMPARED_POLICIES
from edgediff.cache.simulator import simulate
from edgediff.cache.sweep import FLOOR, OFFLOAD_ONLY, mean_ci, run_point
from edgediff.figure_io import Figure, markdown, markdown_table, pyplot

log = logging.getLogger(__name__)

METRICS = (
    ("mean_response_time_s", "response time (s)"),
    ("hit_rate", "cache hit rate"),
    ("time_saved_per_request_s", "time saved per request vs NCLDC (s)"),
    ("mean_backlog_s", "mean edge backlog (s of work)"),
)
FIGURE_SEEDS = 5  # seeds per point (at least 5: docs/caching-model.md, revision 3)
SUMMARY_KEYS = (
    "mean_response_time_s",
    "p95_response_time_s",
    "hit_rate",
    "time_saved_per_request_s",
    "mean_queue",
    "decision_time_ms",
    "mean_backlog_s",
    "p95_backlog_s",
    "final_backlog_s",
)


def figure_seeds(seed: int, quick: bool) -> list[int]:
    """The seeds of every point: ``seed`` alone when ``quick``, else ``seed .. seed + 4``."""
    return [seed] if quick else list(range(seed, seed + FIGURE_SEEDS))


def aggregate(per_seed: list[dict], **point) -> dict:
    """One figure row from one policy's per-seed summaries: means, ``*_ci`` (95 % half-widths) of the
    plotted metrics, p95 and final backlog of the worst seed, unstable runs counted."""
    row = {**point, "policy": per_seed[0]["policy"]}
    for key in SUMMARY_KEYS:
        values = [r.get(key, float("nan") if key in ("mean_queue", "decision_time_ms") else 0.0) for r in per_seed]
        row[key], ci = mean_ci(values)
        if key in dict(METRICS):
            row[f"{key}_ci"] = ci
    row["p95_backlog_s"] = max(r.get("p95_backlog_s", 0.0) for r in per_seed)
    row["final_backlog_s"] = max(r.get("final_backlog_s", 0.0) for r in per_seed)
    row["unstable"] = int(sum(bool(r.get("unstable", False)) for r in per_seed))
    full = [r.get("cache_full_slot", -1) for r in per_seed]
    row["cache_full_slot"] = float(np.mean(full)) if min(full) >= 0 else -1
    row["seeds"] = len(per_seed)
    return row


def _base(quick: bool, scenario: CacheConfig | None = None) -> CacheConfig:
    """The figures' configuration: the paper's defaults (10,000 slots), or a cache scenario's
    (with its own slots); ``quick``: 300 slots."""
    if scenario is None:
        return CacheConfig(slots=300 if quick else 10_000)
    return scenario.with_(slots=300) if quick else scenario


def sweep_policies(policies=None) -> tuple[str, ...]:
    """The policies a sweep figure draws: the compared set, or ``policies`` (your own among
    them) with ``oo`` (the per-slot optimum) and ``ncldc`` (no cache) always beside."""
    if not policies:
        return COMPARED_POLICIES
    return tuple(dict.fromkeys([*policies, "oo", "ncldc"]))


def draw_sweep(rows: list[dict], param: str, label: str):
    """The four panels of a comparison figure (response time, hit rate, time saved, edge backlog)
    from its rows, every policy and the two reference rows."""
    fig, axes = pyplot().subplots(1, 4, figsize=(20, 4.2))
    for ax, (key, ylabel) in zip(axes, METRICS):
        present = {r["policy"] for r in rows}
        for policy in [p for p in (*COMPARED_POLICIES, OFFLOAD_ONLY, FLOOR) if p in present]:
            if policy == FLOOR and key in ("hit_rate", "mean_backlog_s"):
                continue
            pts = [r for r in rows if r["policy"] == policy]
            style = (
                {"linestyle": "--", "color": "gray" if policy == FLOOR else "black"}
                if policy in (OFFLOAD_ONLY, FLOOR)
                else {}
            )
            err = [r.get(f"{key}_ci", 0.0) for r in pts]
            xs, ys = [r[param] for r in pts], [r[key] for r in pts]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=policy, **style)
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    # an unstable policy's latency and backlog grow with the run; keep the stable ones readable
    ncldc = max(r["mean_response_time_s"] for r in rows if r["policy"] == "ncldc")
    floor = [r for r in rows if r["policy"] == FLOOR]
    axes[0].set_ylim(0.95 * min(r["mean_response_time_s"] for r in floor), 1.1 * ncldc)
    axes[2].set_ylim(-0.5, 1.2 * max(r["time_saved_per_request_s"] for r in floor))
    axes[3].set_yscale("symlog", linthresh=1.0)
    axes[0].legend(fontsize=8)
    return fig


def _sweep(name, param, label, values, cfgs, seed, title, *, quick=False, workers=1, policies=None) -> Figure:
    rows = []
    seeds = figure_seeds(seed, quick)
    for value, cfg in zip(values, cfgs):
        runs = run_point(cfg, seeds, sweep_policies(policies), jobs=max(1, int(workers or 1)))
        for policy, per_seed in runs.items():
            rows.append(aggregate(per_seed, **{param: value}))
            log.info("%s %s=%s %s: %.3f s", name, param, value, policy, rows[-1]["mean_response_time_s"])
    fig = draw_sweep(rows, param, label)
    fig.suptitle(f"{title} ({cfgs[0].slots} slots, seeds {seeds}, 95 % CI)")
    unstable = sorted({f"{r['policy']} at {param} = {r[param]} ({r['unstable']} seeds)" for r in rows if r["unstable"]})
    lines = [
        f"{cfgs[0].slots} slots per run, means over seeds {seeds} with 95 % confidence intervals, "
        "every policy on the same requests per seed; backlog p95 and final: worst seed. "
        f"Reference rows: `{OFFLOAD_ONLY}` is the per-slot optimum with no cache (offloading only); "
        f"`{FLOOR}` serves every request from an output S* steps deep (or all local if faster).",
        "",
        *markdown_table(
            [param, "policy", "response time (s), 95% CI", "hit rate", "saved/request (s)",
             "edge backlog mean / p95 / final (s)", "cache full at slot", "mean Q (s)", "decision (ms)"],
            [
                [
                    r[param],
                    r["policy"],
                    f"{r['mean_response_time_s']:.3f} ± {r['mean_response_time_s_ci']:.3f}",
                    r["hit_rate"],
                    r["time_saved_per_request_s"],
                    f"{r['mean_backlog_s']:.2f} / {r['p95_backlog_s']:.2f} / {r['final_backlog_s']:.2f}"
                    + (" UNSTABLE" if r["unstable"] else ""),
                    f"{r['cache_full_slot']:.0f}" if r["cache_full_slot"] >= 0 else "never",
                    r["mean_queue"],
                    r["decision_time_ms"],
                ]
                for r in rows
            ],
            ["", "", "", ".3f", ".3f", "", "", ".1f", ".3f"],
        ),
        "",
        "Runs flagged unstable (edge backlog growing): " + (", ".join(unstable) if unstable else "none") + ".",
    ]  # fmt: skip
    for value in values:
        at = {r["policy"]: r["mean_response_time_s"] for r in rows if r[param] == value}
        lines.append(f"\n{param} = {value}: " + _margins(at))
    _note_never_filled(fig, lines, rows, param)
    return Figure(name, rows, fig, markdown(f"{name}: {title}", lines))


def _margins(at: dict[str, float]) -> str:
    """drc against the others (the paper's policies), or each policy you gave against the
    references beside it (a sweep with ``policies``)."""

    def pct(a: str, b: str) -> str:
        return f"{100 * (at[a] / at[b] - 1):+.2f} % vs {b}"

    if set(COMPARED_POLICIES) <= set(at):
        best = min(CLASSIC_POLICIES, key=lambda name: at[name])
        return (
            f"drc {pct('drc', 'ncldc')}, {pct('drc', best)} (best classic), {pct('drc', 'oo')}, "
            f"{pct('drc', OFFLOAD_ONLY)}, {pct('drc', 'dnn')}."
        )
    yours = [p for p in at if p not in ("oo", "ncldc", OFFLOAD_ONLY, FLOOR)]
    return "; ".join(f"{p} {pct(p, 'ncldc')}, {pct(p, 'oo')}, {pct(p, OFFLOAD_ONLY)}" for p in yours) + "."


def _note_never_filled(fig, lines: list[str], rows: list[dict], param: str) -> None:
    """Say so, in the figure and its summary, where a cache never filled: with no eviction,
    the eviction rules store the same (lru, lfu and lcbfu's lines overlap)."""
    caching = [r for r in rows if r["policy"] not in ("ncldc", OFFLOAD_ONLY, FLOOR)]
    classic = any(r["policy"] in CLASSIC_POLICIES for r in caching)
    never = sorted(
        {r[param] for r in caching if (r["policy"] in CLASSIC_POLICIES or not classic) and r["cache_full_slot"] < 0}
    )
    if not never:
        return
    alike = "lru, lfu and lcbfu coincide there (their lines overlap)" if classic else "eviction made no difference"
    text = (
        f"The cache never filled at {param} = {', '.join(map(str, never))}: no entry was evicted, so {alike}; "
        "longer runs or less capacity tell the rules apart."
    )
    lines.append(f"\n**{text}**")
    fig.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=8, color="tab:red")


def fig8(
    out_dir: Path, *, quick: bool = False, seed: int = 0, workers: int = 1, policies=None, scenario=None, **_
) -> Figure:
    users = [5, 15, 25] if quick else [5, 10, 15, 20, 25]
    base = _base(quick, scenario)
    cfgs = [base.with_(users=u) for u in users]
    return _sweep(
        "cache-fig8", "users", "number of users", users, cfgs, seed, "Impact of the number of users",
        quick=quick, workers=workers, policies=policies,
    )  # fmt: skip


def fig9(
    out_dir: Path,
    *,
    quick: bool = False,
    seed: int = 0,
    workers: int = 1,
    policies=None,
    scenario=None,
    s_star=None,
    **_,
) -> Figure:
    """``s_star``: the points (default 5..9; ``quick`` 5, 7, 9)."""
    s_star = list(s_star) if s_star else [5, 7, 9] if quick else [5, 6, 7, 8, 9]
    base = _base(quick, scenario).with_(users=20)
    cfgs = [base.with_(reusable_steps=s) for s in s_star]
    return _sweep(
        "cache-fig9",
        "reusable_steps",
        "maximum reusable step S*",
        s_star,
        cfgs,
        seed,
        "Impact of the maximum reusable step (20 users)",
        quick=quick,
        workers=workers,
        policies=policies,
    )


def fig10(
    out_dir: Path, *, quick: bool = False, seed: int = 0, workers: int = 1, policies=None, scenario=None, **_
) -> Figure:
    gb = [1, 3, 5] if quick else [1, 2, 3, 4, 5]
    base = _base(quick, scenario)
    cfgs = [base.with_(capacity_bytes=g * 1e9) for g in gb]
    return _sweep(
        "cache-fig10",
        "capacity_gb",
        "edge cache capacity (GB)",
        gb,
        cfgs,
        seed,
        "Impact of the cache capacity",
        quick=quick,
        workers=workers,
        policies=policies,
    )


def fig5(out_dir: Path, *, quick: bool = False, seed: int = 0, **_) -> Figure:
    cfg = CacheConfig(slots=600 if quick else 3000)
    seeds = figure_seeds(seed, quick)
    per_seed = [simulate(cfg, "drc", s).losses for s in seeds]
    steps = min(len(v) for v in per_seed)
    rows = []
    for i in range(steps):
        mean, ci = mean_ci(float(v[i]) for v in per_seed)
        rows.append({"training_step": i + 1, "bce_loss": mean, "bce_loss_ci": ci})
    fig, ax = pyplot().subplots(figsize=(6, 4))
    x = np.array([r["training_step"] for r in rows])
    y, band = np.array([r["bce_loss"] for r in rows]), np.array([r["bce_loss_ci"] for r in rows])
    ax.plot(x, y, label=f"DRC actor, BCE (eq. 38), mean of {len(seeds)} seeds")
    ax.fill_between(x, y - band, y + band, alpha=0.3, label="95 % CI")
    ax.set_xlabel("training step (one per 10 slots)")
    ax.set_ylabel("training loss")
    ax.set_title(f"DRC training loss ({cfg.slots} slots, seeds {seeds})")
    ax.legend()
    ax.grid(alpha=0.3)
    tails = [float(np.mean(v[-20:])) for v in per_seed if v]
    tail, tail_ci = mean_ci(tails)
    summary = markdown(
        "cache-fig5: DRC training loss",
        [
            f"{cfg.slots} slots, {steps} training steps, seeds {seeds}.",
            f"First loss {y[0] if steps else float('nan'):.4f}, mean of the last 20 {tail:.4f} ± {tail_ci:.4f} "
            "(95 % CI over seeds; the paper reports about 0.03 after 3000 iterations).",
        ],
    )
    return Figure("cache-fig5", rows or [{"training_step": 0, "bce_loss": float("nan")}], fig, summary)


def fig6(out_dir: Path, *, quick: bool = False, seed: int = 0, workers: int = 1, scenario=None, **_) -> Figure:
    # The paper's range 1000..2000, plus smaller V to show the direction of the trade-off.
    values = [1, 100, 1000, 2000] if quick else [1, 10, 100, 1000, 1200, 1400, 1600, 1800, 2000]
    base = _base(quick, scenario)
    seeds = figure_seeds(seed, quick)
    rows = []
    for V in values:
        runs = run_point(base.with_(V=float(V)), seeds, ["drc"], references=False, jobs=max(1, int(workers or 1)))
        row: dict[str, float] = {"V": V, "seeds": len(seeds)}
        for key in ("mean_queue", "system_cost", "mean_response_time_s", "mean_backlog_s"):
            row[key], row[f"{key}_ci"] = mean_ci(r[key] for r in runs["drc"])
        rows.append(row)
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    ax.errorbar(values, [r["mean_queue"] for r in rows], yerr=[r["mean_queue_ci"] for r in rows], fmt="o-",
                capsize=3, color="tab:blue", label="queue backlog Q")  # fmt: skip
    ax.set_xlabel("Lyapunov control parameter V (log scale)")
    ax.set_xscale("log")
    ax.set_ylabel("time-average queue backlog Q (s)")
    ax2 = ax.twinx()
    ax2.errorbar(values, [r["system_cost"] for r in rows], yerr=[r["system_cost_ci"] for r in rows], fmt="s--",
                 capsize=3, color="tab:red", label="system cost")  # fmt: skip
    ax2.set_ylabel("time-average system cost per slot (s)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="best")
    ax.set_title(f"DRC: impact of V ({base.slots} slots, L_bar = {base.L_bar} s, seeds {seeds})")
    table = [
        [r["V"]] + [f"{r[k]:.3f} ± {r[k + '_ci']:.3f}" for k in ("mean_queue", "system_cost", "mean_response_time_s",
                                                               "mean_backlog_s")]
        for r in rows
    ]  # fmt: skip
    summary = markdown(
        "cache-fig6: impact of V on DRC",
        [
            f"{base.slots} slots, {base.users} users, L_bar = {base.L_bar} s; means over seeds {seeds} with 95 % "
            "confidence intervals. System cost = time-average per-slot penalty: the predicted latency sum L(t) "
            "(with the delay added to the edge backlog) minus the future value of what was stored.",
            "",
            *markdown_table(
                ["V", "mean Q (s)", "system cost (s)", "response time (s)", "edge backlog (s)"],
                table,
                ["", "", "", "", ""],
            ),
        ],
    )
    return Figure("cache-fig6", rows, fig, summary)
