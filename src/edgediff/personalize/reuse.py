"""The caching paper's reusable bound ``S*``, measured (seed 002, eqs. (1)-(2)).

For every denoising step ``m = 1..S`` (``m = 1`` is the first step run) the decoded output
``D_m`` is compared with the previous one ``D_{m-1}`` (``D_0``: the decoded initial noise):
``MSE_m`` = mean squared difference over pixels and channels (0..255 scale),
``PSNR_m = 20 log10(255 / sqrt(MSE_m))``. Both are averaged over several requests (MSE
first, then PSNR). A step with a low PSNR still changes the image a lot: its output is
noisy and can be shared by many later requests. ``S*`` is the largest ``m`` such that
every step ``1..m`` has ``PSNR < P_max`` (0 if the first step already reaches ``P_max``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgediff.personalize.data import class_prompt


@dataclass(frozen=True)
class ReuseConfig:
    steps: int = 20  # S: SPEC B's default number of denoising steps
    pmax_db: float = 30.0  # P_max; the paper's Fig. 7 PSNRs reach ~30 dB at its S* = 6
    samples: int = 10  # requests averaged
    guidance_scale: float = 3.0
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.samples < 1:
            raise ValueError("steps and samples must be >= 1")
        if not math.isfinite(self.pmax_db):
            raise ValueError(f"pmax must be finite, got {self.pmax_db}")


def reusable_bound(psnr_db, pmax_db: float) -> int:
    """Largest ``m`` with ``PSNR_1..PSNR_m < P_max`` (eq. (2) threshold rule)."""
    below = np.asarray(psnr_db) < pmax_db
    return int(np.argmin(below)) if not below.all() else len(below)


def psnr(mse, peak: float = 255.0):
    """Eq. (2): ``20 log10(MAX / sqrt(MSE))`` (inf for MSE = 0)."""
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(peak / np.sqrt(np.asarray(mse, dtype=float)))


def measure_reuse(model, config: ReuseConfig = ReuseConfig(), prompts: list[str] | None = None) -> dict:
    """MSE and PSNR between consecutive decoded outputs at every step, and ``S*``."""
    from edgediff.runtime.executor import BatchedExecutor, initial_state
    from edgediff.runtime.request import GenerationRequest

    prompts = prompts or [class_prompt(d % 10) for d in range(config.samples)]
    requests = [
        GenerationRequest(
            prompts[i % len(prompts)], steps=config.steps, seed=config.seed + i, guidance_scale=config.guidance_scale
        )
        for i in range(config.samples)
    ]
    states = {i: initial_state(model, r) for i, r in enumerate(requests)}
    import torch

    def decoded(states):
        return model.decode(torch.cat([states[i].latent for i in range(len(requests))])).astype(np.float64)

    previous = decoded(states)
    mse = []
    for m in range(1, config.steps + 1):
        executor = BatchedExecutor(model)
        for i, request in enumerate(requests):
            executor.add(i, request, config.steps - m, start=states[i])
        states = executor.run()
        current = decoded(states)
        mse.append(float(np.mean((current - previous) ** 2)))
        previous = current
    psnr_db = psnr(mse)
    return {
        "model": model.name,
        "steps": config.steps,
        "pmax_db": config.pmax_db,
        "samples": config.samples,
        "guidance_scale": config.guidance_scale,
        "seed": config.seed,
        "mse": mse,
        "psnr_db": [float(p) for p in psnr_db],
        "reusable_steps": reusable_bound(psnr_db, config.pmax_db),
    }
