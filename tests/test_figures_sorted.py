"""Every figure's lines run left to right: a line's x data is sorted, so no line zig-zags back.

Each registered figure is drawn in its quick variant where that takes seconds; the others are
named with the reason and what covers their drawing code.
"""

import numpy as np
import pytest

from edgediff.figure_io import Figure, pyplot
from edgediff.reproduce import REGISTRY

SLOW = {
    "fig9": "trains three DQN scopes (over a minute quick); its x is the episode index",
    "fig10": "trains three DQN scopes (over a minute quick); bars only, no lines",
    "cache-fig8": "half a minute quick; drawn by the same cache sweep code as cache-fig10",
    "cache-fig9": "two minutes quick; drawn by the same cache sweep code as cache-fig10",
    "pai": "runs the tiny models at many splits; its fig7 is checked below on a small measurement",
}


def unsorted_lines(figure) -> list[str]:
    """``axes title / line label: x`` of every Line2D whose x data is not in increasing order."""
    bad = []
    for ax in figure.axes:
        for line in ax.get_lines():
            x = np.asarray(line.get_xdata(), dtype=float)
            if np.any(np.diff(x) < 0):
                bad.append(f"{ax.get_xlabel() or ax.get_title()} / {line.get_label()}: {x.tolist()}")
    return bad


def check(result) -> int:
    items = [result] if isinstance(result, Figure) else list(result)
    lines = 0
    for item in items:
        if item.figure is None:
            continue
        assert unsorted_lines(item.figure) == [], item.name
        for ax in item.figure.axes:  # a panel with lines has a y label, or shares its y axis with one that has
            labelled = any(other.get_ylabel() for other in ax.get_shared_y_axes().get_siblings(ax))
            assert labelled or not ax.get_lines(), f"{item.name}: a panel lacks a y label"
        lines += sum(len(ax.get_lines()) for ax in item.figure.axes)
        pyplot().close(item.figure)
    return lines


def test_the_check_sees_a_zig_zag():
    fig, ax = pyplot().subplots()
    ax.plot([8, 1, 16], [0, 1, 2])
    assert unsorted_lines(fig) and pyplot().close(fig) is None


def test_every_figure_is_drawn_here_or_named_slow():
    assert set(SLOW) <= set(REGISTRY)


@pytest.mark.parametrize("name", [name for name in REGISTRY if name not in SLOW])
@pytest.mark.slow
def test_figure_lines_are_sorted_by_x(name, tmp_path):
    assert check(REGISTRY[name].load()(tmp_path, quick=True, seed=0, workers=1)) > 0


@pytest.mark.slow
def test_fig7_sorts_splits_given_in_any_order():
    from edgediff.personalize.classifier import shipped_classifier
    from edgediff.personalize.pai import PaiConfig, measure_pai, pai_figures
    from edgediff.runtime.models import load_model
    from edgediff.runtime.tiny import TINY_NAME, TINY_PERSONAL

    config = PaiConfig(splits=(6, 0, 3), samples=1, seed=0)
    result = measure_pai(
        load_model(TINY_NAME),
        [load_model(n) for n in TINY_PERSONAL[:2]],
        ["a handwritten digit 3"],
        config,
        shipped_classifier(),
    )
    assert check(pai_figures(result)) > 0


@pytest.mark.slow
def test_exact_does_not_hide_a_policy_that_matches_it(tmp_path):
    from edgediff.offload.figures import _comparison

    fig = _comparison("t", [(4, 8), (6, 8)], ["exact", "b1"], 2, "users", "users", "t", 0, {}).figure
    exact, b1 = fig.axes[0].get_lines()[:2]
    assert exact.get_zorder() < b1.get_zorder() and exact.get_markerfacecolor() == "none"
    assert exact.get_marker() != b1.get_marker() and exact.get_markersize() > b1.get_markersize()
    pyplot().close(fig)
