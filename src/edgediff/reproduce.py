"""The figure registry behind ``edgediff reproduce NAME``.

Each entry maps a figure name to ``"module:function"``; the function is imported only when
its figure is made and is called as ``function(out_dir, quick=..., seed=..., **options)``,
returning the paths it wrote (PNG, CSV, Markdown). Parts add their figures here, one line
each; options a figure does not know (e.g. ``workers``) are the figure's to ignore or use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FigureSpec:
    target: str  # "module:function"
    summary: str


REGISTRY: dict[str, FigureSpec] = {
    # Part B, caching (seed 002)
    "cache-fig5": FigureSpec("edgediff.cache.figures:fig5", "DRC training loss"),
    "cache-fig6": FigureSpec("edgediff.cache.figures:fig6", "V from 1000 to 2000: queue backlog and system cost"),
    "cache-fig8": FigureSpec("edgediff.cache.figures:fig8", "users 5..25: response time, hit rate, time saved"),
    "cache-fig9": FigureSpec("edgediff.cache.figures:fig9", "S* 5..9: response time, hit rate, time saved"),
    "cache-fig10": FigureSpec("edgediff.cache.figures:fig10", "capacity 1..5 GB: response time, hit rate, time saved"),
}


class UnknownFigure(ValueError):
    """The figure name is not registered."""


def figure_spec(name: str) -> FigureSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownFigure(f"unknown figure {name!r}; choose from {', '.join(REGISTRY)}") from None


def reproduce(name: str, out_dir: Path, *, quick: bool = False, seed: int = 0, **options) -> list[Path]:
    """Make figure ``name`` in ``out_dir`` (created if needed); returns the files written."""
    module, func = figure_spec(name).target.split(":")
    out_dir.mkdir(parents=True, exist_ok=True)
    return getattr(importlib.import_module(module), func)(out_dir, quick=quick, seed=seed, **options)
