"""``edgediff cache-sim``'s outputs: the summary with units and the per-slot plot of one run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgediff.cache.simulator import SimResult
from edgediff.figure_io import pyplot

# the unit of each ``SimResult.summary`` key, printed beside its value (the JSON keys carry none)
UNITS: dict[str, str] = {
    "mean_response_time_s": "s",
    "p95_response_time_s": "s",
    "hit_rate": "fraction of requests",
    "time_saved_per_request_s": "s per request, against all local (NCLDC)",
    "mean_queue": "s (virtual queue Q: latency above L_bar, accumulated)",
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


def plot_run(result: SimResult, requests_per_slot: np.ndarray, path: str | Path, window: int = 50) -> Path:
    """The run slot by slot (PNG at ``path``): response time and hit rate (means over ``window``
    slots of the requests arriving then), the virtual queue Q and the edge backlog.
    ``requests_per_slot``: the environment's request count of each slot (requests are numbered
    in arrival order)."""
    plt = pyplot()
    path = Path(path)
    slots = len(requests_per_slot)
    arrival = np.repeat(np.arange(slots), requests_per_slot)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    t = np.arange(slots)
    per_slot = np.bincount(arrival, minlength=slots)
    sums = np.bincount(arrival, weights=result.latency, minlength=slots)
    hits = np.bincount(arrival, weights=result.hit.astype(float), minlength=slots)
    kernel = np.ones(min(window, slots))
    count = np.convolve(per_slot, kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        axes[0].plot(t, np.convolve(sums, kernel, mode="same") / count)
        axes[1].plot(t, np.convolve(hits, kernel, mode="same") / count)
    axes[0].set(xlabel="slot", ylabel=f"response time (s, mean over {kernel.size} slots)")
    axes[1].set(xlabel="slot", ylabel=f"hit rate (mean over {kernel.size} slots)")
    axes[2].plot(t, result.queue, label="virtual queue Q (s)")
    axes[2].plot(t, result.backlog, label="edge backlog (s of work)")
    axes[2].set(xlabel="slot", ylabel="s")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    if result.cache_full_slot >= 0:
        for ax in axes:
            ax.axvline(result.cache_full_slot, color="gray", linestyle=":")
    note = never_filled_note(result.cache_full_slot, slots)
    full = f"cache full from slot {result.cache_full_slot} (dotted)" if not note else note.split(":")[0]
    fig.suptitle(f"cache-sim: {result.policy}, {slots} slots; {full}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
