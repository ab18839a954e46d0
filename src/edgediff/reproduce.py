"""The figure registry behind ``edgediff reproduce NAME``.

Each entry maps a figure name to ``"module:function"``; the function is imported only when
its figure is made and is called as ``function(out_dir, quick=..., seed=..., **options)``,
returning the paths it wrote (PNG, CSV, Markdown). Parts add their figures here, one line
each; options a figure does not know (e.g. ``workers``) are the figure's to ignore or use.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from edgediff.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FigureSpec:
    target: str  # "module:function"
    summary: str


REGISTRY: dict[str, FigureSpec] = {
    # Part A, offloading (seed 000)
    "fig8a": FigureSpec("edgediff.offload.figures:fig8a", "optimal offloaded steps vs alpha: batch sizes, local GPUs"),
    "fig8b": FigureSpec("edgediff.offload.figures:fig8b", "optimal offloaded steps vs alpha: edge GPUs, batch sizes"),
    "fig9": FigureSpec("edgediff.offload.figures:fig9", "PER-DQN learning curves of the three scopes"),
    "fig10": FigureSpec(
        "edgediff.offload.figures:fig10", "three scopes on specific instances: performance, PAI, latency"
    ),
    "fig11a": FigureSpec("edgediff.offload.figures:fig11a", "average performance vs users (G = 8), dqn and baselines"),
    "fig11b": FigureSpec("edgediff.offload.figures:fig11b", "average performance vs edge GPUs (20 users)"),
    "fig11c": FigureSpec("edgediff.offload.figures:fig11c", "dqn vs milp (B&B) vs ga vs users"),
    "table2": FigureSpec("edgediff.offload.figures:table2", "measured decision time vs users, 4 to 1,000 (log axes)"),
    "timeline": FigureSpec(
        "edgediff.offload.figures:timeline", "beyond the paper: the paper optimum under a shrinking batch"
    ),
    # Part B, caching (seed 002)
    "cache-fig5": FigureSpec("edgediff.cache.figures:fig5", "DRC training loss"),
    "cache-fig6": FigureSpec("edgediff.cache.figures:fig6", "V from 1000 to 2000: queue backlog and system cost"),
    "cache-fig8": FigureSpec("edgediff.cache.figures:fig8", "users 5..25: response time, hit rate, time saved"),
    "cache-fig9": FigureSpec("edgediff.cache.figures:fig9", "S* 5..9: response time, hit rate, time saved"),
    "cache-fig10": FigureSpec("edgediff.cache.figures:fig10", "capacity 1..5 GB: response time, hit rate, time saved"),
    # Part C, measured on the shipped tiny models (issue 8)
    "pai": FigureSpec("edgediff.personalize.pai:reproduce_figures", "Figs. 6-7: measured PAI vs split, sigmoid fit"),
}


ALL = "all"  # every registered figure, in registry order


class UnknownFigure(InputError):
    """The figure name is not registered."""


def figure_names(name: str) -> list[str]:
    """The figures ``name`` stands for: itself, or every figure for ``all``."""
    if name == ALL:
        return list(REGISTRY)
    if name not in REGISTRY:
        raise UnknownFigure(f"unknown figure {name!r}; choose from {', '.join(REGISTRY)} or {ALL}")
    return [name]


def reproduce(name: str, out_dir: Path, *, quick: bool = False, seed: int = 0, **options) -> list[Path]:
    """Make figure ``name`` (or ``all``) in ``out_dir`` (created if needed); returns the files written.

    ``options`` go to every figure: ``workers`` (local processes) and ``ray`` (a Ray cluster
    address) are used by the figures that sweep many cases.
    """
    names = figure_names(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for figure in names:
        module, func = REGISTRY[figure].target.split(":")
        log.info("reproduce %s", figure)
        written += getattr(importlib.import_module(module), func)(out_dir, quick=quick, seed=seed, **options)
    return written
