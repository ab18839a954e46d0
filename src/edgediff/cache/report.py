"""``edgediff cache-sim``'s outputs: the summary with units and the per-slot plot of one run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.simulator import SimResult, make_environment, simulate
from edgediff.errors import InputError
from edgediff.figure_io import pyplot, text_table, write_png

# the unit of each ``SimResult.summary`` key, printed beside its value (the JSON keys carry none)
UNITS: dict[str, str] = {
    "mean_response_time_s": "s",
    "p95_response_time_s": "s",
    "hit_rate": "fraction of requests",
    "time_saved_per_request_s": "s per request, against all local (NCLDC)",
    "mean_queue": "s (virtual queue Q: latency above L_bar, accumulated)",
    "system_cost": "s per slot (predicted latency sum minus the future value stored)",
    "decision_time_ms": "ms per slot",
    "mean_backlog_s": "s of edge work",
    "p95_backlog_s": "s of edge work",
    "final_backlog_s": "s of edge work",
    "unstable": "True: the edge backlog still grew over the run's second half",
    "cache_full_slot": "first slot the cache was full (-1: never filled)",
}


def format_summary(summary: dict) -> str:
    """One line per key: name, value, unit."""
    lines = []
    for key, value in summary.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        unit = UNITS.get(key, "")
        lines.append(f"{key:<26} {text:>12}  {unit}".rstrip())
    return "\n".join(lines)


def never_filled_note(cache_full_slot: int, slots: int) -> str:
    """What a reader of a run whose cache never filled should know, or ``""``."""
    if cache_full_slot >= 0:
        return ""
    return (
        f"the cache never filled in {slots} slots: no entry was evicted, so the eviction rule made no "
        "difference (lru, lfu and lcbfu coincide); use more slots or less capacity to compare rules"
    )


def run_policies(
    cfg: CacheConfig, policies: list[str], seed: int, options: dict | None = None
) -> tuple[list[SimResult], dict[str, str], np.ndarray]:
    """Every policy on the same requests (the environment of ``seed``): their results, the
    policies that could not run (``{policy: why}``; a plugin that raises or is refused does not
    stop the others) and the request count of each slot. Each policy gets the ``options`` it
    takes; an option no policy takes is an error (a single policy gets them all)."""
    from edgediff.cache.policies import cache_policy_option_names, cache_policy_spec

    for name in policies:
        cache_policy_spec(name)
    options = dict(options or {})
    takes = {name: cache_policy_option_names(name) for name in policies}
    if len(policies) == 1:  # one policy gets every option: one it does not take is its own error
        takes = {policies[0]: tuple(options)}
    for key in options:
        if not any(key in names for names in takes.values()):
            raise InputError(f"no policy of {','.join(policies)} takes the option {key!r}")
    env = make_environment(cfg, seed)
    results, failed = [], {}
    for name in policies:
        mine = {k: v for k, v in options.items() if k in takes[name]}
        try:
            results.append(simulate(cfg, name, seed, env=env, **mine))
        except InputError as err:
            if len(policies) == 1:
                raise
            failed[name] = str(err)
    return results, failed, env.request.sum(axis=1)


TABLE_KEYS = (
    ("mean_response_time_s", "response_s"),
    ("hit_rate", "hit_rate"),
    ("time_saved_per_request_s", "saved_s"),
    ("mean_queue", "mean_Q_s"),
    ("mean_backlog_s", "backlog_s"),
    ("decision_time_ms", "decision_ms"),
    ("cache_full_slot", "full_at_slot"),
)


def format_table(results: list[SimResult], failed: dict[str, str], policies: list[str]) -> str:
    """One row per policy (units in the headers: s, ms), ``n/a`` for a policy that could not run."""
    by_name = {r.policy: r.summary() for r in results}
    rows = [
        [name, *([by_name[name][k] for k, _ in TABLE_KEYS] if name in by_name else ["n/a"] * len(TABLE_KEYS))]
        for name in policies
    ]
    lines = [text_table(["policy", *(h for _, h in TABLE_KEYS)], rows)]
    lines += [f"n/a {name}: {why}" for name, why in failed.items()]
    return "\n".join(lines)


def plot_runs(results: list[SimResult], requests_per_slot: np.ndarray, path: str | Path, window: int = 50) -> Path:
    """The runs slot by slot (PNG at ``path``), one line per policy: response time and hit rate
    (means over ``window`` slots of the requests arriving then), the virtual queue Q and the
    edge backlog. ``requests_per_slot``: the environment's request count of each slot
    (requests are numbered in arrival order)."""
    plt = pyplot()
    path = Path(path)
    slots = len(requests_per_slot)
    arrival = np.repeat(np.arange(slots), requests_per_slot)
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    t = np.arange(slots)
    kernel = np.ones(min(window, slots))
    count = np.convolve(np.bincount(arrival, minlength=slots), kernel, mode="same")
    for result in results:
        sums = np.bincount(arrival, weights=result.latency, minlength=slots)
        hits = np.bincount(arrival, weights=result.hit.astype(float), minlength=slots)
        with np.errstate(invalid="ignore", divide="ignore"):
            (line,) = axes[0].plot(t, np.convolve(sums, kernel, mode="same") / count, label=result.policy)
            axes[1].plot(t, np.convolve(hits, kernel, mode="same") / count, color=line.get_color())
        axes[2].plot(t, result.queue, color=line.get_color())
        axes[3].plot(t, result.backlog, color=line.get_color())
        if result.cache_full_slot >= 0:  # where this policy's cache filled
            for ax in axes:
                ax.axvline(result.cache_full_slot, color=line.get_color(), linestyle=":", linewidth=1)
    axes[0].set(xlabel="slot", ylabel=f"response time (s, mean over {kernel.size} slots)")
    axes[1].set(xlabel="slot", ylabel=f"hit rate (mean over {kernel.size} slots)")
    axes[2].set(xlabel="slot", ylabel="virtual queue Q (s)")
    axes[3].set(xlabel="slot", ylabel="edge backlog (s of work)")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    never = [r.policy for r in results if r.cache_full_slot < 0]
    full = "dotted: the slot each cache filled" + (f"; never filled: {', '.join(never)}" if never else "")
    fig.suptitle(f"cache-sim: {slots} slots, the same requests for every policy; {full}", fontsize=9)
    return write_png(fig, path, dpi=100)
