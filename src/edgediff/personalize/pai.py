"""Measuring the PAI curve (paper Sec. III-D eq. (1), Sec. VI-A, Figs. 6-7).

For every prompt, sample and split point ``n`` the cluster-wide model runs steps N..n+1 once
(the shared intermediate), then every user's personalized model finishes steps n..1 from that
same latent with its personalized prompt ``p+`` (the prompt plus the user's identifier). On
the final images:

- accuracy: how well image ``m_i`` matches ``p+``. The paper uses CLIP(p+, m_i); for the
  digits models the shipped digit classifier's probability of the prompt's digit;
- personalization: the mean pairwise distance between the users' images from the same
  intermediate. The paper uses LPIPS; with no LPIPS network available offline we use the
  mean absolute grey-level difference in [0, 1] (0 = identical images), which lives on
  LPIPS's scale (0 to ~0.5) so the paper's sigma_P constants keep their meaning;
- ``PAI = kappa * E_i[accuracy] * sigma_P(personalization)``, eq. (1), with the paper's
  ``kappa = 3``, ``sigma_P(x) = 1 / (1 + exp(-30 (x - 0.1)))``.

``F(n) = 1 / (1 + exp(-a_F (n - b_F)))`` is then fitted (``scipy.optimize.curve_fit``) to the
mean PAI per split divided by its maximum ``kappa`` (perfect accuracy, full personalization):
a sigmoid tops out at 1, and CLIP scores (~0.3) times kappa = 3 put the paper's PAI on the
same 0..1 scale, whereas our accuracy score is already a probability.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import expit

from edgediff.core.pai import PAPER_STEPS, PaiCurve
from edgediff.figure_io import Figure, write_figure
from edgediff.personalize.data import class_prompt, personal_prompt, prompt_digit, to_gray

log = logging.getLogger(__name__)

DEFAULT_SPLITS = tuple(range(0, 201, 20))
QUICK_SPLITS = tuple(range(0, 51, 5))
PAPER_CURVE = PaiCurve()  # a_F = 0.0413, b_F = 71.44 (paper Sec. VI-A, N = PAPER_STEPS = 200)


@dataclass(frozen=True)
class PaiConstants:
    """Eq. (1)'s constants as the paper sets them."""

    kappa: float = 3.0
    a: float = 30.0
    b: float = 0.1


@dataclass(frozen=True)
class PaiConfig:
    """What to measure: split points (``N`` = the largest), samples per prompt, guidance
    and the seed of the first sample (sample ``j`` of prompt ``i`` uses seed
    ``seed + i * samples + j``, the same noise for every user and split)."""

    splits: tuple[int, ...] = DEFAULT_SPLITS
    samples: int = 4
    guidance_scale: float = 3.0
    seed: int = 0
    constants: PaiConstants = field(default_factory=PaiConstants)

    def __post_init__(self):
        if len(self.splits) < 3 or len(set(self.splits)) != len(self.splits) or min(self.splits) < 0:
            raise ValueError(f"splits must be at least 3 distinct integers >= 0, got {list(self.splits)}")
        if max(self.splits) < 1:
            raise ValueError("the largest split (N, the number of steps) must be >= 1")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")

    @property
    def N(self) -> int:
        return max(self.splits)


def parse_splits(text: str) -> tuple[int, ...]:
    """``"START:STOP:STEP"`` (STOP included; it is N) or a comma list ``"0,50,100"``."""
    try:
        if ":" in text:
            start, stop, step = (int(v) for v in text.split(":"))
            if step < 1 or start < 0 or stop <= start:
                raise ValueError
            values = list(range(start, stop + 1, step))
            if values[-1] != stop:
                values.append(stop)
        else:
            values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(
            f"expected START:STOP:STEP (0 <= START < STOP, STEP >= 1) or a comma list, got {text!r}"
        ) from None
    return tuple(values)


def sigma_p(x, constants: PaiConstants = PaiConstants()):
    """sigma_P(x) = 1 / (1 + exp(-a (x - b))) of eq. (1)."""
    return expit(constants.a * (np.asarray(x, dtype=float) - constants.b))


def pai_index(accuracy, personalization, constants: PaiConstants = PaiConstants()):
    """Eq. (1): ``kappa * accuracy * sigma_P(personalization)``; ``accuracy`` already averaged
    over users (or with users on the last axis, averaged here when ``average_users``)."""
    return constants.kappa * np.asarray(accuracy, dtype=float) * sigma_p(personalization, constants)


def pairwise_distance(images: np.ndarray) -> np.ndarray:
    """Mean over user pairs of the mean absolute grey difference; ``images`` ``(..., U, H, W, 3)``
    uint8 -> ``(...)`` in [0, 1]."""
    gray = to_gray(images)
    users = gray.shape[-3]
    if users < 2:
        raise ValueError("personalization needs at least two users' images")
    pairs = [
        np.abs(gray[..., i, :, :] - gray[..., j, :, :]).mean(axis=(-1, -2)) for i in range(users) for j in range(i)
    ]
    return np.mean(pairs, axis=0)


def fit_sigmoid(splits, values, N: int | None = None) -> tuple[float, float, float]:
    """Least-squares ``F(n) = 1 / (1 + exp(-a (n - b)))`` through ``(splits, values)``;
    returns ``(a, b, R^2)``."""
    from scipy.optimize import curve_fit

    n = np.asarray(splits, dtype=float)
    y = np.asarray(values, dtype=float)
    N = float(N or n.max())

    def model(x, a, b):
        return expit(a * (x - b))

    best = None
    for b0 in (0.25 * N, 0.5 * N, 0.75 * N):  # a few starts: the least-squares surface is not convex
        try:
            params, _ = curve_fit(model, n, y, p0=(8.0 / N, b0), bounds=([1e-6, -N], [50.0 / N * 10, 2 * N]))
        except RuntimeError:
            continue
        residual = float(np.sum((y - model(n, *params)) ** 2))
        if best is None or residual < best[0]:
            best = (residual, params)
    if best is None:
        raise RuntimeError("sigmoid fit did not converge")
    residual, (a, b) = best
    total = float(np.sum((y - y.mean()) ** 2))
    return float(a), float(b), 1.0 - residual / total if total > 0 else 1.0


@dataclass
class PaiResult:
    """Measured scores; arrays are indexed ``[split, prompt, sample(, user)]``."""

    cluster: str
    personal: list[str]
    identifiers: list[str | None]
    prompts: list[str]
    config: PaiConfig
    accuracy: np.ndarray  # (S, P, K, U)
    personalization: np.ndarray  # (S, P, K)
    images: np.ndarray = field(repr=False)  # (S, P, K, U, H, W, 3) uint8
    elapsed_s: float = 0.0

    @property
    def splits(self) -> np.ndarray:
        return np.asarray(self.config.splits)

    @property
    def pai(self) -> np.ndarray:
        """Eq. (1) per image set ``(S, P, K)``: the users' mean accuracy times sigma_P."""
        return pai_index(self.accuracy.mean(axis=-1), self.personalization, self.config.constants)

    def points(self) -> list[dict]:
        pai = self.pai.mean(axis=(1, 2))
        return [
            {
                "split": int(n),
                "offloaded_steps": int(self.config.N - n),
                "accuracy": float(self.accuracy[s].mean()),
                "personalization": float(self.personalization[s].mean()),
                "pai": float(pai[s]),
                "pai_normalized": float(pai[s] / self.config.constants.kappa),
            }
            for s, n in enumerate(self.config.splits)
        ]

    def fit(self) -> tuple[float, float, float]:
        values = self.pai.mean(axis=(1, 2)) / self.config.constants.kappa
        return fit_sigmoid(self.config.splits, values, self.config.N)

    def summary(self) -> dict:
        a, b, r2 = self.fit()
        N = self.config.N
        at_paper_steps = PaiCurve(a, b).for_steps(PAPER_STEPS, over=N)
        personalization = [p["personalization"] for p in self.points()]
        order = np.argsort(self.config.splits)
        return {
            "cluster": self.cluster,
            "personal": self.personal,
            "identifiers": self.identifiers,
            "N": N,
            "splits": [int(n) for n in self.config.splits],
            "samples": self.config.samples,
            "prompts": self.prompts,
            "guidance_scale": self.config.guidance_scale,
            "seed": self.config.seed,
            "accuracy_score": "digit-classifier probability of the prompt's digit",
            "personalization_score": "mean pairwise absolute grey difference (LPIPS stand-in)",
            "constants": asdict(self.config.constants),
            "points": self.points(),
            "pai": {"a": a, "b": b},
            "r2": r2,
            # for comparison with the paper's N = 200: the same curve over n / N * 200
            "pai_at_N200": {"a": at_paper_steps.a, "b": at_paper_steps.b},
            "paper": {"a": PAPER_CURVE.a, "b": PAPER_CURVE.b, "N": PAPER_STEPS},
            "personalization_falls_with_offloading": bool(
                np.all(np.diff(np.asarray(personalization)[order][::-1]) <= 1e-9)
            ),
            "spearman_personalization_vs_offloaded": _spearman(N - self.splits, personalization),
            "elapsed_s": round(self.elapsed_s, 2),
        }


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def default_prompts() -> list[str]:
    return [class_prompt(d) for d in range(10)]


def measure_pai(
    cluster, personal: list, prompts: list[str], config: PaiConfig, classifier, progress: bool | None = None
) -> PaiResult:
    """Hybrid inference at every split of ``config`` (see the module doc).

    ``cluster`` and ``personal`` are :class:`~edgediff.runtime.models.DiffusionModel`; each
    personal model's ``identifier`` (``None`` for a plain model) makes its prompt ``p+``.
    A progress bar (edge splits, then users) shows on a terminal (``progress`` ``None``),
    always (``True``) or never (``False``); each stage is also logged.
    """
    import torch
    from tqdm.auto import tqdm

    from edgediff.runtime.executor import BatchedExecutor, initial_state
    from edgediff.runtime.request import GenerationRequest

    if len(personal) < 2:
        raise ValueError("measure-pai needs at least two personalized models")
    digits = [prompt_digit(p) for p in prompts]  # fail before any work
    for model in personal:
        if (model.image_size, model.latent_channels) != (cluster.image_size, cluster.latent_channels):
            raise ValueError(
                f"model {model.name!r} makes {model.image_size}px images from {model.latent_channels}-channel "
                f"latents, the cluster-wide model {cluster.image_size}px from {cluster.latent_channels}: "
                "they cannot share a latent"
            )
    if cluster.image_size != classifier.side:
        raise ValueError(
            f"the digit classifier scores {classifier.side}x{classifier.side} images, model {cluster.name!r} makes "
            f"{cluster.image_size}x{cluster.image_size} (CLIP scoring for other models is not available offline)"
        )
    start = time.perf_counter()
    N, K = config.N, config.samples
    keys = [(p, k) for p in range(len(prompts)) for k in range(K)]

    def request(prompt_index, sample, identifier=None):
        return GenerationRequest(
            personal_prompt(prompts[prompt_index], identifier),
            steps=N,
            seed=config.seed + prompt_index * K + sample,
            guidance_scale=config.guidance_scale,
        )

    # the shared intermediates: one edge trajectory per (prompt, sample), cut at every split
    requests = {key: request(*key) for key in keys}
    shared = {N: {key: initial_state(cluster, requests[key]) for key in keys}}
    previous = N
    edge_splits = [n for n in sorted(config.splits, reverse=True) if n != N]
    bar = tqdm(
        total=len(edge_splits) + len(personal),
        desc="measure-pai",
        unit="stage",
        disable=None if progress is None else not progress,
    )
    for n in sorted(config.splits, reverse=True):
        if n == N:
            continue
        executor = BatchedExecutor(cluster)
        for key in keys:
            executor.add(key, requests[key], n, start=shared[previous][key])
        shared[n] = executor.run()
        previous = n
        log.info("edge: split %d done (%.1f s)", n, time.perf_counter() - start)
        bar.update()

    S, U = len(config.splits), len(personal)
    images = None
    for u, model in enumerate(personal):
        executor = BatchedExecutor(model)
        finals = {}
        for s, n in enumerate(config.splits):
            for key in keys:
                if n == 0:  # nothing left to run locally: the device only decodes
                    finals[(s, *key)] = shared[0][key].latent
                else:
                    executor.add((s, *key), request(*key, model.identifier), 0, start=shared[n][key])
        finals.update({k: v.latent for k, v in executor.run().items()})
        order = [(s, *key) for s in range(S) for key in keys]
        decoded = model.decode(torch.cat([finals[k] for k in order]))
        if images is None:
            images = np.zeros((S, len(prompts), K, U, *decoded.shape[1:]), dtype=np.uint8)
        images[:, :, :, u] = decoded.reshape(S, len(prompts), K, *decoded.shape[1:])
        log.info("user %d (%s) done (%.1f s)", u, model.name, time.perf_counter() - start)
        bar.update()
    bar.close()

    probabilities = classifier.probabilities(images.reshape(-1, *images.shape[-3:]))
    target = np.broadcast_to(np.asarray(digits)[None, :, None, None], images.shape[:4]).reshape(-1)
    accuracy = probabilities[np.arange(len(target)), target].reshape(images.shape[:4])
    return PaiResult(
        cluster=cluster.name,
        personal=[m.name for m in personal],
        identifiers=[m.identifier for m in personal],
        prompts=list(prompts),
        config=config,
        accuracy=accuracy,
        personalization=pairwise_distance(images),
        images=images,
        elapsed_s=time.perf_counter() - start,
    )


def pai_figures(result: PaiResult) -> list[Figure]:
    """``pai.json`` (the summary), ``pai.csv`` (one row per split), ``fig6_grid.png`` and
    ``fig7_pai.png``, ready for :func:`~edgediff.figure_io.write_figure`."""
    from edgediff.personalize.figures import fig6_grid, fig7_pai

    summary = result.summary()
    return [
        Figure("pai", rows=summary["points"], data=summary),
        Figure("fig6_grid", figure=fig6_grid(result), dpi=120),
        Figure("fig7_pai", figure=fig7_pai(result, summary), dpi=120),
    ]


def write_outputs(result: PaiResult, out: str | Path) -> list[Path]:
    """Write :func:`pai_figures` into ``out`` (created if needed); returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [path for figure in pai_figures(result) for path in write_figure(figure, out)]


def reproduce_figures(out_dir: str | Path, *, quick: bool = False, seed: int = 0, **options) -> list[Figure]:
    """``edgediff reproduce pai``: the measured Figs. 6-7 of the shipped tiny models (the
    ``measure-pai`` defaults, or ``--quick``'s); other ``options`` are ignored."""
    from edgediff.personalize.classifier import shipped_classifier
    from edgediff.runtime.models import load_model
    from edgediff.runtime.tiny import TINY_NAME, TINY_PERSONAL

    config = PaiConfig(splits=QUICK_SPLITS if quick else DEFAULT_SPLITS, samples=2 if quick else 4, seed=seed)
    personal = [load_model(name) for name in TINY_PERSONAL]
    result = measure_pai(load_model(TINY_NAME), personal, default_prompts(), config, shipped_classifier())
    return pai_figures(result)
