"""The online question, measured in the twin (``edgediff reproduce twin-online``,
docs/results-twin.md): per-window policies under rising load, and the window length's effect."""

from __future__ import annotations

from edgediff.figure_io import Figure, markdown, markdown_table, pyplot
from edgediff.twin.sweep import SweepCase, run_sweep

POLICIES = ("exact", "timeline", "dqn", "b1")
COLUMNS = (
    "policy", "decide_when_idle", "rate", "window_s", "requests", "grant_rate", "latency_p50_s", "latency_p90_s",
    "utility_mean", "pai_mean", "edge_utilization", "predicted_error_mean", "failed",
    "utility_bound_windowed", "utility_bound_free",
)  # fmt: skip


def online(out_dir, quick: bool = False, seed: int = 0, workers: int | None = 1, ray: str | None = None, **_):
    """One H100 site (G = 8, B_max = 20, N = 50, cache off): (a) ``exact``, ``timeline``,
    ``dqn`` and ``b1`` (first come) at rising Poisson rates, window 1 s; (b) ``exact`` and
    ``b1`` at 6 requests/s over window lengths, and ``exact`` with the adaptive rule (decide at
    once when the edge is idle). Same arrivals for every policy and window."""
    duration = 120.0 if quick else 900.0
    rates = (2.0, 6.0, 12.0) if quick else (1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0)
    windows = (0.25, 1.0, 4.0) if quick else (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
    load = [SweepCase(rate=r, duration_s=duration, policy=p, window_s=1.0) for r in rates for p in POLICIES]
    length = [SweepCase(rate=6.0, duration_s=duration, policy=p, window_s=w) for w in windows for p in ("exact", "b1")]
    idle = [SweepCase(rate=6.0, duration_s=duration, window_s=w, decide_when_idle=True) for w in windows]
    rows = run_sweep(load + length + idle, seed=seed, workers=workers, ray_address=ray)
    load_rows, length_rows = rows[: len(load)], rows[len(load) : len(load) + len(length)]
    idle_rows = rows[len(load) + len(length) :]
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for policy in POLICIES:
        mine = [r for r in load_rows if r["policy"] == policy]
        x = [r["rate"] for r in mine]
        axes[0].plot(x, [r["utility_mean"] for r in mine], marker="o", label=policy)
        axes[1].plot(x, [r["latency_p90_s"] for r in mine], marker="o", label=policy)
    bounds = [r for r in load_rows if r["policy"] == POLICIES[0]]  # the same arrivals for every policy
    x = [r["rate"] for r in bounds]
    axes[0].plot(x, [r["utility_bound_windowed"] for r in bounds], "k--", label="bound: windowed")
    axes[0].plot(x, [r["utility_bound_free"] for r in bounds], "k:", label="bound: free")
    axes[0].set(xlabel="arrival rate (req/s)", ylabel="mean utility (s)", title="utility under load (K = 1 s)")
    axes[1].set(xlabel="arrival rate (req/s)", ylabel="p90 latency (s)", title="p90 latency under load")
    for policy in ("exact", "b1"):
        mine = [r for r in length_rows if r["policy"] == policy]
        x = [r["window_s"] for r in mine]
        axes[2].plot(x, [r["utility_mean"] for r in mine], marker="o", label=policy)
        axes[3].plot(x, [r["latency_p50_s"] for r in mine], marker="o", label=policy)
    x = [r["window_s"] for r in idle_rows]
    axes[2].plot(x, [r["utility_mean"] for r in idle_rows], marker="s", label="exact, decide when idle")
    axes[3].plot(x, [r["latency_p50_s"] for r in idle_rows], marker="s", label="exact, decide when idle")
    bounds = [r for r in length_rows if r["policy"] == "exact"]
    x = [r["window_s"] for r in bounds]
    axes[2].plot(x, [r["utility_bound_windowed"] for r in bounds], "k--", label="bound: windowed")
    axes[2].plot(x, [r["utility_bound_free"] for r in bounds], "k:", label="bound: free")
    axes[2].set(xscale="log", xlabel="window K (s)", ylabel="mean utility (s)", title="window length (6 req/s)")
    axes[3].set(xscale="log", xlabel="window K (s)", ylabel="p50 latency (s)", title="window length (6 req/s)")
    for ax in axes[2:]:
        ax.set_xticks(windows, [f"{w:g}" for w in windows])
        ax.minorticks_off()
    for ax in axes:
        ax.legend()
    table = [[r[c] for c in COLUMNS] for r in rows]
    formats = ["", "", "g", "g", "d", ".3f", ".2f", ".2f", ".3f", ".3f", ".3f", "+.3f", "d", ".3f", ".3f"]
    gaps = [
        f"- {r['rate']:g} req/s, K = {r['window_s']:g} s: exact {r['utility_mean']:.3f}, windowed bound "
        f"{r['utility_bound_windowed']:.3f} (gap {r['utility_bound_windowed'] - r['utility_mean']:.3f} s), "
        f"free bound {r['utility_bound_free']:.3f} "
        f"(window wait {r['utility_bound_free'] - r['utility_bound_windowed']:.3f} s)"
        for r in rows
        if r["policy"] == "exact" and not r["decide_when_idle"]
    ]
    summary = markdown(
        "twin-online: per-window policies under load, and the window length",
        [
            f"One H100 site (G = 8, B_max = 20), N = 50, cache off, {duration:.0f} s of Poisson arrivals"
            f" per case, seed {seed}; the same arrivals for every policy and window at one rate.",
            "",
            *markdown_table(COLUMNS, table, formats),
            "",
            "Hindsight bounds (edgediff.twin.bound; per request: answered on arrival (free) or at its"
            " window's end (windowed), edge steps at batch 1, the link alone) against exact's mean utility:",
            "",
            *gaps,
        ],
    )
    return Figure("twin-online", rows=rows, figure=fig, summary=summary)
