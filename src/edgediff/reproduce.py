"""The figure registry behind ``edgediff reproduce NAME``.

Each entry maps a figure name to a :class:`FigureSpec`: the figure function (or its
``"module:function"``, imported only when the figure is made) and a one-line summary. A figure
function is called as ``function(out_dir, quick=..., seed=..., **options)`` and returns a
:class:`~edgediff.figure_io.Figure` (or a list of them): its rows, its matplotlib figure and its
Markdown summary; :func:`reproduce` writes them. ``out_dir`` is also where a figure may keep what
it reuses between runs (fig9's trained models). Adding a figure is its module plus one line here;
options a figure does not know (e.g. ``workers``) are the figure's to ignore or use.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgediff.errors import InputError
from edgediff.figure_io import Figure, write_figure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FigureSpec:
    target: str | Callable  # the figure function, or "module:function" to import it when used
    summary: str = ""

    def load(self) -> Callable:
        """The figure function."""
        if callable(self.target):
            return self.target
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


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
    "cache-fig7": FigureSpec(
        "edgediff.personalize.cache_quality:fig7", "PSNR of the denoised outputs against the step, per policy"
    ),
    "cache-fig8": FigureSpec("edgediff.cache.figures:fig8", "users 5..25: response time, hit rate, time saved"),
    "cache-fig9": FigureSpec("edgediff.cache.figures:fig9", "S* 5..9: response time, hit rate, time saved"),
    "cache-fig10": FigureSpec("edgediff.cache.figures:fig10", "capacity 1..5 GB: response time, hit rate, time saved"),
    # Part C, measured on the shipped tiny models (issue 8)
    "pai": FigureSpec("edgediff.personalize.pai:reproduce_figures", "Figs. 6-7: measured PAI vs split, sigmoid fit"),
    # the digital twin (issue 18)
    "twin-online": FigureSpec("edgediff.twin.figures:online", "online: policies under load, window length (twin)"),
}


ALL = "all"  # every registered figure, in registry order
# the figures that compare policies on drawn instances: they take ``policies`` (your own among them,
# ``exact`` always beside) and ``scenario`` (the distribution the instances are drawn from)
SCENARIO_FIGURES: tuple[str, ...] = ("fig11a", "fig11b", "fig11c")
# the caching figures that sweep a parameter: they take a cache ``scenario`` (the Part B parameters the
# sweep starts from); those that compare policies also take cache ``policies`` (``oo`` and ``ncldc``
# always beside); cache-fig6 sweeps drc's V alone
CACHE_POLICY_FIGURES: tuple[str, ...] = ("cache-fig8", "cache-fig9", "cache-fig10")
CACHE_SCENARIO_FIGURES: tuple[str, ...] = ("cache-fig6", *CACHE_POLICY_FIGURES)


class UnknownFigure(InputError):
    """The figure name is not registered."""


def figure_names(name: str) -> list[str]:
    """The figures ``name`` stands for: itself, or every figure for ``all``."""
    if name == ALL:
        return list(REGISTRY)
    if name not in REGISTRY:
        raise UnknownFigure(f"unknown figure {name!r}; choose from {', '.join(REGISTRY)} or {ALL}")
    return [name]


def check_figure_options(names: list[str], given: list[str]) -> str | None:
    """Which part's ``policies``/``scenario`` the figures ``names`` take (``"offload"`` or
    ``"cache"``; None when none is ``given``); one :class:`UnknownFigure` line if they take none
    or the figures differ."""
    if not given:
        return None
    cache_takers = CACHE_POLICY_FIGURES if "policies" in given else CACHE_SCENARIO_FIGURES
    for part, takers in (("offload", SCENARIO_FIGURES), ("cache", cache_takers)):
        if all(name in takers for name in names):
            return part
    if "policies" in given and all(name in CACHE_SCENARIO_FIGURES for name in names):
        v_sweeps = [name for name in names if name not in CACHE_POLICY_FIGURES]
        raise UnknownFigure(
            f"policies apply to {', '.join(CACHE_POLICY_FIGURES)}; {', '.join(v_sweeps)} sweeps drc's V "
            "and takes a scenario only"
        )
    takers_list = (*SCENARIO_FIGURES, *cache_takers)
    other = [name for name in names if name not in takers_list]
    if not other:
        raise UnknownFigure(f"{' and '.join(given)}: give them for offloading or caching figures, not both")
    verb = "takes" if len(other) == 1 else "take"
    raise UnknownFigure(f"{' and '.join(given)} apply to {', '.join(takers_list)}; {', '.join(other)} {verb} neither")


def reproduce(
    figure: str | FigureSpec | Callable,
    out_dir: str | Path,
    *,
    quick: bool = False,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    **keywords,
) -> list[Path]:
    """Make ``figure`` in ``out_dir`` (created if needed) and write its files; returns their paths.

    ``figure`` is a registered name (or ``all``), a :class:`FigureSpec` or a figure function.
    ``options`` (and any further ``keywords``, e.g. ``workers=2``) go to every figure:
    ``workers`` (local processes) and ``ray`` (a Ray cluster address) are used by the
    figures that sweep many cases.
    """
    if isinstance(figure, str):
        specs = {name: REGISTRY[name] for name in figure_names(figure)}
        check_figure_options(
            list(specs), [k for k in ("policies", "scenario") if {**(options or {}), **keywords}.get(k)]
        )
    else:
        spec = figure if isinstance(figure, FigureSpec) else FigureSpec(figure)
        specs = {getattr(spec.target, "__name__", spec.target): spec}
    options = {**(options or {}), **keywords}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, spec in specs.items():
        log.info("reproduce %s", name)
        result = spec.load()(out_dir, quick=quick, seed=seed, **options)
        for item in [result] if isinstance(result, Figure) else result:
            written += write_figure(item, out_dir)
    return written
