"""What a twin run measured: per-request latency, PAI and utility; per site and per time bin
the latency distribution, grant rate, edge utilization, backlog and cache hit rate; the CSV
files and the PNG dashboard (drawn with :mod:`edgediff.figure_io`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.core.link import transmission_latency
from edgediff.core.pai import PaiCurve
from edgediff.core.profiles import local_step_latency
from edgediff.figure_io import Figure, markdown, markdown_table, pyplot, write_csv, write_figure
from edgediff.twin.config import TwinConfig
from edgediff.twin.records import DENIED, EPS, FAILED, GRANTED, OUTCOMES, REJECTED, Records, prompt_bits
from edgediff.twin.workload import Arrivals

PERCENTILES = (50, 90, 99)


def binned_integral(t0, t1, weight, edges) -> np.ndarray:
    """``∫ Σ_j weight_j 1[t0_j <= t < t1_j] dt`` over each bin ``[edges[i], edges[i+1])``."""

    def ramp(starts, w, x):  # Σ_j w_j max(x - starts_j, 0)
        order = np.argsort(starts)
        s, w = starts[order], w[order]
        cw, cs = np.concatenate(([0.0], np.cumsum(w))), np.concatenate(([0.0], np.cumsum(w * s)))
        i = np.searchsorted(s, x, side="right")
        return x * cw[i] - cs[i]

    t0, t1, weight = (np.asarray(a, dtype=float) for a in (t0, t1, weight))
    if t0.size == 0:
        return np.zeros(len(edges) - 1)
    total = ramp(t0, weight, edges) - ramp(t1, weight, edges)
    return np.diff(total)


@dataclass(frozen=True, eq=False)
class SiteStats:
    name: str
    windows: int
    busy_t0: np.ndarray
    busy_t1: np.ndarray
    busy_b: np.ndarray
    decided_t: np.ndarray
    decided_n: np.ndarray


@dataclass(frozen=True, eq=False)
class TwinResult:
    """One run: the per-request arrays (``latency``, ``answer_s`` = arrival to the edge's
    answer, ``pai``, ``utility``, ...), the sites' edge records, and the summaries."""

    config: TwinConfig
    arrivals: Arrivals
    records: Records
    sites: tuple[SiteStats, ...]
    latency: np.ndarray
    answer_s: np.ndarray
    pai: np.ndarray
    utility: np.ndarray
    end: float

    @classmethod
    def build(cls, config: TwinConfig, arrivals: Arrivals, records: Records, sims) -> TwinResult:
        site_of = np.maximum(records.site, 0)
        svc = [s.service for s in config.sites]
        eta = np.array([c.eta for c in svc])[site_of]
        w_max = np.array([c.W_max for c in svc])[site_of]
        s_m = np.array([s.intermediate_bits for s in config.sites], dtype=float)[site_of]
        granted = records.outcome == GRANTED
        tx = np.where(
            granted, transmission_latency(prompt_bits(arrivals) + s_m, records.window_granted, eta, w_max), 0.0
        )
        answer = records.answered_at - arrivals.time
        local = records.split * local_step_latency(arrivals.k, arrivals.h)
        latency = answer + tx + local
        pai = np.empty(len(arrivals))
        for s, c in enumerate(svc):
            mine = site_of == s
            for N in np.unique(arrivals.steps[mine]):
                rows = mine & (arrivals.steps == N)
                pai[rows] = PaiCurve(c.pai_a, c.pai_b).for_steps(int(N))(records.split[rows])
        utility = arrivals.alpha * pai - latency
        stats = tuple(
            SiteStats(
                s.site.name,
                s.windows,
                np.frombuffer(s.executor.seg_t0),
                np.frombuffer(s.executor.seg_t1),
                np.frombuffer(s.executor.seg_b),
                np.frombuffer(s.decided_t),
                np.frombuffer(s.decided_n, np.int64),
            )
            for s in sims
        )
        end = float(np.nanmax(records.answered_at)) if len(arrivals) else 0.0
        end = max(end, float(arrivals.time.max()) if len(arrivals) else 0.0, EPS)
        return cls(config, arrivals, records, stats, latency, answer, pai, utility, end)

    # ------------------------------------------------------------------ summaries
    def _summary(self, rows: np.ndarray, span: float, sites: list[SiteStats], t0: float, t1: float) -> dict:
        rec = self.records
        out = rec.outcome[rows]
        n = int(rows.sum())
        granted = out == GRANTED
        lat, ans = self.latency[rows], self.answer_s[rows]
        row = {"requests": n, "rate_per_s": n / span if span > 0 else 0.0}
        for name, code in zip(OUTCOMES, (DENIED, GRANTED, FAILED, REJECTED)):
            row[name] = int((out == code).sum())
        row["grant_rate"] = row["granted"] / n if n else float("nan")
        for p in PERCENTILES:
            row[f"latency_p{p}_s"] = float(np.percentile(lat, p)) if n else float("nan")
        row["latency_mean_s"] = float(lat.mean()) if n else float("nan")
        for p in (50, 90):
            row[f"answer_p{p}_s"] = float(np.percentile(ans, p)) if n else float("nan")
        row["utility_mean"] = float(self.utility[rows].mean()) if n else float("nan")
        row["pai_mean"] = float(self.pai[rows].mean()) if n else float("nan")
        edges = np.array([t0, t1])
        busy = sum(float(binned_integral(s.busy_t0, s.busy_t1, np.ones_like(s.busy_b), edges)[0]) for s in sites)
        members = sum(float(binned_integral(s.busy_t0, s.busy_t1, s.busy_b, edges)[0]) for s in sites)
        window = t1 - t0
        row["edge_utilization"] = busy / (window * len(sites)) if window > 0 else float("nan")
        row["batch_members_mean"] = members / (window * len(sites)) if window > 0 else float("nan")
        queued = np.concatenate([s.decided_n[(s.decided_t >= t0) & (s.decided_t < t1)] for s in sites])
        row["queue_at_decision_mean"] = float(queued.mean()) if queued.size else 0.0
        row["queue_at_decision_max"] = int(queued.max()) if queued.size else 0
        cached = [c.service.cache_bytes > 0 for c in self.config.sites]
        looked = granted & np.array(cached)[np.maximum(rec.site[rows], 0)]
        row["cache_hit_rate"] = float((rec.hit[rows][looked] > 0).mean()) if looked.any() else float("nan")
        pred = rec.predicted_latency[rows][granted]
        error = (lat[granted] - pred) / pred if pred.size else np.full(1, np.nan)
        row["predicted_error_mean"] = float(np.mean(error))  # the bias, signed
        for p in (50, 90):  # |measured - predicted| / predicted of the granted requests' total latency
            row[f"predicted_error_abs_p{p}"] = float(np.percentile(np.abs(error), p))
        return row

    def site_rows(self) -> list[dict]:
        """One row per site and one ``all`` row, over the whole run."""
        rows = []
        everyone = np.ones(len(self.arrivals), dtype=bool)
        for s, stats in enumerate(self.sites):
            mine = self.records.site == s
            rows.append(
                {"site": stats.name, "windows": stats.windows, **self._summary(mine, self.end, [stats], 0.0, self.end)}
            )
        total = {"site": "all", "windows": sum(s.windows for s in self.sites)}
        rows.append({**total, **self._summary(everyone, self.end, list(self.sites), 0.0, self.end)})
        return rows

    def bin_rows(self, per_site: bool = True) -> list[dict]:
        """One row per time bin (``config.bin_s``, by arrival time) for all sites together and,
        with ``per_site``, for each site."""
        width = self.config.bin_s
        count = max(1, int(np.ceil(self.end / width - EPS)))
        bins = np.minimum((self.arrivals.time // width).astype(np.int64), count - 1)
        rows = []
        groups = [("all", None)] + (
            [(s.name, i) for i, s in enumerate(self.sites)] if per_site and len(self.sites) > 1 else []
        )
        for name, index in groups:
            mine = np.ones(len(self.arrivals), bool) if index is None else self.records.site == index
            sites = list(self.sites) if index is None else [self.sites[index]]
            for b in range(count):
                t0, t1 = b * width, min((b + 1) * width, self.end)
                rows.append(
                    {"bin_start_s": t0, "site": name, **self._summary(mine & (bins == b), t1 - t0, sites, t0, t1)}
                )
        return rows

    def request_rows(self) -> list[dict]:
        rec, arr = self.records, self.arrivals
        names = [s.name for s in self.sites]
        return [
            {
                "time": float(arr.time[i]),
                "user": arr.users[arr.user[i]],
                "class": int(arr.cls[i]),
                "site": names[rec.site[i]] if rec.site[i] >= 0 else "",
                "outcome": OUTCOMES[rec.outcome[i]],
                "split": int(rec.split[i]),
                "cache_hit_step": int(rec.hit[i]),
                "answer_s": float(self.answer_s[i]),
                "latency_s": float(self.latency[i]),
                "predicted_latency_s": float(rec.predicted_latency[i]),
                "pai": float(self.pai[i]),
                "utility": float(self.utility[i]),
            }
            for i in range(len(arr))
        ]

    # ------------------------------------------------------------------ outputs
    def dashboard(self, bins: list[dict] | None = None):
        """The PNG dashboard: latency CDF, latency percentiles, load and grant rate, edge
        utilization and backlog over time, utilization per site, cache hit rate and utility."""
        plt = pyplot()
        bins = [r for r in (bins or self.bin_rows(per_site=False)) if r["site"] == "all"]
        x = np.array([r["bin_start_s"] for r in bins]) / 3600.0
        fig, axes = plt.subplots(2, 3, figsize=(15, 8))
        ax = axes[0, 0]
        for values, label in ((self.latency, "end to end"), (self.answer_s, "arrival to edge answer")):
            v = np.sort(values)
            ax.plot(v, np.arange(1, v.size + 1) / max(v.size, 1), label=label)
        ax.set(xlabel="latency (s)", ylabel="fraction of requests", title="latency CDF")
        ax.legend()
        ax = axes[0, 1]
        for p in PERCENTILES:
            ax.plot(x, [r[f"latency_p{p}_s"] for r in bins], marker=".", label=f"p{p}")
        ax.set(xlabel="time (h)", ylabel="latency (s)", title="latency per bin")
        ax.legend()
        ax = axes[0, 2]
        ax.plot(x, [r["rate_per_s"] for r in bins], marker=".", color="C0")
        ax.set(xlabel="time (h)", ylabel="arrivals (req/s)", title="load and grant rate")
        twin = ax.twinx()
        twin.plot(x, [r["grant_rate"] for r in bins], marker=".", color="C1")
        twin.set_ylabel("grant rate", color="C1")
        ax = axes[1, 0]
        ax.plot(x, [r["edge_utilization"] for r in bins], marker=".", label="edge utilization")
        ax.set(xlabel="time (h)", ylabel="utilization", title="edge utilization and backlog")
        twin = ax.twinx()
        twin.plot(x, [r["batch_members_mean"] for r in bins], marker=".", color="C2", label="batch members")
        twin.plot(x, [r["queue_at_decision_mean"] for r in bins], marker=".", color="C3", label="queued per window")
        twin.set_ylabel("requests")
        twin.legend(loc="upper right")
        ax = axes[1, 1]
        util = [r["edge_utilization"] for r in self.site_rows()[:-1]]
        if len(util) > 12:
            ax.hist(util, bins=20)
            ax.set(xlabel="edge utilization", ylabel="sites", title=f"utilization over {len(util)} sites")
        else:
            ax.bar([s.name for s in self.sites], util)
            ax.set(ylabel="edge utilization", title="utilization per site")
        ax = axes[1, 2]
        ax.plot(x, [r["utility_mean"] for r in bins], marker=".", label="mean utility")
        ax.set(xlabel="time (h)", ylabel="utility (s)", title="utility and cache hit rate")
        twin = ax.twinx()
        twin.plot(x, [r["cache_hit_rate"] for r in bins], marker=".", color="C4")
        twin.set_ylabel("cache hit rate", color="C4")
        return fig

    def summary_markdown(self, sites: list[dict]) -> str:
        total = sites[-1]
        cols = ["site", "requests", "grant_rate", "failed", "rejected", "latency_p50_s", "latency_p90_s",
                "latency_p99_s", "utility_mean", "pai_mean", "edge_utilization", "cache_hit_rate"]  # fmt: skip
        shown = sites if len(sites) <= 11 else [*sites[:10], total]
        lines = [
            f"{total['requests']} requests over {len(self.sites)} site(s), {self.end:.1f} s simulated, "
            f"seed {self.config.seed}.",
            "",
            *markdown_table(cols, [[r[c] for c in cols] for r in shown]),
        ]
        return markdown("edgediff simulate", lines)

    def write(self, out_dir: str | Path, *, requests: bool = False) -> list[Path]:
        """``twin-sites.csv``, ``twin-bins.csv``, ``twin.png`` (dashboard), ``twin.md`` and
        ``twin.json`` (the ``all`` row) in ``out_dir`` (created); ``twin-requests.csv`` too
        with ``requests``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sites, bins = self.site_rows(), self.bin_rows()
        paths = [write_csv(out / "twin-sites.csv", sites), write_csv(out / "twin-bins.csv", bins)]
        if requests and len(self.arrivals):
            paths.append(write_csv(out / "twin-requests.csv", self.request_rows()))
        figure = Figure("twin", figure=self.dashboard(bins), summary=self.summary_markdown(sites), data=sites[-1])
        return paths + write_figure(figure, out)
