"""Part B runs over several seeds (docs/caching-model.md, revision 3): every point a mean over
seeds with a 95 % confidence interval, every policy on the same requests per seed (common
random numbers), so differences between policies are paired per seed.

:func:`run_point` runs the policies and the two reference rows (offloading with no cache, the
all-hit floor) on each seed, optionally in worker processes; :func:`mean_ci` and
:func:`paired_ratio` summarize.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.simulator import all_hit_floor, make_environment, simulate

OFFLOAD_ONLY = "0 GB (oo)"  # reference row: the per-slot optimum with no cache
FLOOR = "all-hit floor"  # reference row: every request served from an output S* steps deep


def t_quantile(df: int) -> float:
    """The two-sided 95 % Student t quantile for ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def mean_ci(values: Iterable[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (Student t; 0 for one value)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), 0.0
    return float(v.mean()), t_quantile(v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, np.ndarray]:
    """Per seed ``a / b - 1`` in %, and the mean with its 95 % CI half-width: ``(mean, ci, per_seed)``."""
    per_seed = 100.0 * (np.asarray(a, dtype=float) / np.asarray(b, dtype=float) - 1.0)
    mean, ci = mean_ci(per_seed)
    return mean, ci, per_seed


def _run_one(cfg: CacheConfig, policy: str, seed: int) -> dict:
    """One policy (or reference row) on one seed: its summary with ``seed`` and the backlog's maximum."""
    env = make_environment(cfg, seed)
    if policy == FLOOR:
        floor = all_hit_floor(cfg, env)
        local = cfg.steps * cfg.cycles_per_step / env.f_local[env.request]
        return {
            "policy": FLOOR,
            "seed": seed,
            "mean_response_time_s": float(floor.mean()),
            "p95_response_time_s": float(np.percentile(floor, 95)),
            "hit_rate": 1.0,
            "time_saved_per_request_s": float((local - floor).mean()),
        }
    run_cfg, name = (cfg.with_(capacity_bytes=0.0), "oo") if policy == OFFLOAD_ONLY else (cfg, policy)
    res = simulate(run_cfg, name, seed, env=env)
    return res.summary() | {"policy": policy, "seed": seed, "max_backlog_s": float(res.backlog.max())}


def run_point(
    cfg: CacheConfig, seeds: Sequence[int], policies: Sequence[str], *, references: bool = True, jobs: int = 1
) -> dict[str, list[dict]]:
    """Every policy (and, with ``references``, the two reference rows) on every seed: ``{policy:
    [summary per seed, in seed order]}``. ``jobs > 1`` runs them in that many worker processes;
    the results do not depend on it (every run is seeded)."""
    names = [*policies, *((OFFLOAD_ONLY, FLOOR) if references else ())]
    tasks = [(cfg, p, s) for p in names for s in seeds]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(_run_one, *zip(*tasks)))
    else:
        results = [_run_one(*task) for task in tasks]
    out: dict[str, list[dict]] = {p: [] for p in names}
    for r in results:
        out[r["policy"]].append(r)
    return out
