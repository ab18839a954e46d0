"""Figures like the paper's Fig. 6 (images: split points x users) and Fig. 7 (PAI vs split),
drawn as matplotlib figures for :func:`edgediff.personalize.pai.pai_figures`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgediff.figure_io import pyplot


def fig6_grid(result, prompts: int = 3, sample: int = 0):
    """Grid: one row per (prompt, user), one column per split point (all local on the left).
    Within a prompt the users' rows start from the same shared intermediate at each split."""
    order = np.argsort(result.config.splits)[::-1]
    P = min(prompts, len(result.prompts))
    U = len(result.personal)
    fig, axes = pyplot().subplots(P * U, len(order), figsize=(0.8 * len(order) + 1.6, 0.8 * P * U + 0.6), squeeze=False)
    for p in range(P):
        for u in range(U):
            row = p * U + u
            for col, s in enumerate(order):
                ax = axes[row, col]
                ax.imshow(result.images[s, p, sample, u], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"n={result.config.splits[s]}", fontsize=7)
                if col == 0:
                    ax.set_ylabel(f"{result.prompts[p][-7:]}\n{Path(result.personal[u]).name}", fontsize=6)
    fig.suptitle(
        f"hybrid inference: edge {Path(result.cluster).name} runs N..n+1, each user n..1 (N={result.config.N})"
    )
    return fig


def fig7_pai(result, summary: dict):
    """(a) accuracy and personalization vs split; (b) normalized PAI, its sigmoid fit, and
    the paper's fitted F (drawn over n / N * 200 when N != 200)."""
    from scipy.special import expit

    points = sorted(summary["points"], key=lambda p: p["split"])  # lines run left to right
    n = np.array([p["split"] for p in points])
    N = summary["N"]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(10, 4))
    left.plot(n, [p["accuracy"] for p in points], "o-", label="accuracy (classifier p(digit))")
    left.plot(n, [p["personalization"] for p in points], "s-", label="personalization (pairwise grey L1)")
    left.set_xlabel("split point n (steps run locally)")
    left.set_ylabel("score (accuracy: probability; personalization: grey level L1)")
    left.set_title("(a) accuracy and personalization")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    grid = np.linspace(0, N, 200)
    a, b = summary["pai"]["a"], summary["pai"]["b"]
    per_prompt = result.pai.mean(axis=2) / result.config.constants.kappa  # (S, P)
    for p in range(per_prompt.shape[1]):
        right.scatter(result.config.splits, per_prompt[:, p], s=6, color="grey", alpha=0.4)
    right.scatter(n, [p["pai_normalized"] for p in points], color="C0", zorder=3, label="mean PAI / kappa")
    right.plot(grid, expit(a * (grid - b)), "C0-", label=f"fit a={a:.4f}, b={b:.1f}, R²={summary['r2']:.3f}")
    paper = summary["paper"]
    right.plot(
        grid,
        expit(paper["a"] * (grid * 200 / N - paper["b"])),
        "C3--",
        label=f"paper a={paper['a']}, b={paper['b']}" + (" (N=200 rescaled)" if N != 200 else ""),
    )
    right.set_xlabel("split point n (steps run locally)")
    right.set_ylabel("normalized PAI F(n) = PAI / kappa")
    right.set_title("(b) PAI and the fitted sigmoid F")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    return fig
