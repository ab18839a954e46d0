"""What every figure shares: the :class:`Figure` result, a headless pyplot, and the one writer.

A figure function computes its rows, draws its matplotlib figure and writes its Markdown
summary, and returns them as a :class:`Figure` (or a list of them); :func:`write_figure` turns
each into files. Nothing else in the package saves a plot or writes a results CSV.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One figure's results, written as ``NAME.png``, ``NAME.json``, ``NAME.csv`` and ``NAME.md``
    (each only when its field is given, in that order)."""

    name: str
    rows: list[dict] | None = None  # NAME.csv, one row per point
    figure: Any = None  # a matplotlib Figure: NAME.png
    summary: str | None = None  # Markdown: NAME.md
    data: dict | None = None  # JSON: NAME.json
    dpi: int = 110


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_csv(path: str | Path, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` (dicts with the same keys) as CSV with a header: ``columns``, or the first row's keys."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns or rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def markdown(title: str, lines: Sequence[str]) -> str:
    """A Markdown document: ``# title``, a blank line, then ``lines``."""
    return "\n".join([f"# {title}", "", *lines]) + "\n"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence], formats: Sequence[str] | None = None) -> list[str]:
    """A Markdown table as lines. A cell is written with its column's format spec when ``formats``
    gives one (e.g. ``".3f"``), else floats with 4 decimals and anything else as ``str``."""
    formats = formats or [""] * len(headers)

    def cell(value, spec: str) -> str:
        if spec:
            return format(value, spec)
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    return lines + ["| " + " | ".join(cell(v, s) for v, s in zip(row, formats)) + " |" for row in rows]


def text_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Right-aligned plain-text table; floats with 4 significant decimals."""

    def cell(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1e5 else f"{v:.4g}"
        return str(v)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[c]) for r in text)) if text else len(h) for c, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in text]
    return "\n".join(lines)


def write_png(figure: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG at ``path`` (laid out tight) and close it."""
    path = Path(path)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)
    return path


def write_figure(figure: Figure, out_dir: str | Path) -> list[Path]:
    """Write ``figure``'s files into ``out_dir`` (which must exist); returns their paths."""
    out_dir = Path(out_dir)
    paths = []
    if figure.figure is not None:
        paths.append(write_png(figure.figure, out_dir / f"{figure.name}.png", figure.dpi))
    if figure.data is not None:
        paths.append(out_dir / f"{figure.name}.json")
        paths[-1].write_text(json.dumps(figure.data, indent=2) + "\n")
    if figure.rows is not None:
        paths.append(write_csv(out_dir / f"{figure.name}.csv", figure.rows))
    if figure.summary is not None:
        paths.append(out_dir / f"{figure.name}.md")
        paths[-1].write_text(figure.summary)
    return paths
