"""The caching paper's reusable bound ``S*``, measured (Li et al., DRC, eqs. (1)-(2)).

For every denoising step ``m = 1..S`` (``m = 1`` is the first step run) the decoded output
``D_m`` (by default the step's clean-image estimate; see :func:`measure_reuse`) is compared
with the previous one ``D_{m-1}`` (``D_0``: the decoded initial noise):
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

OUTPUTS = ("denoised", "latent")


@dataclass(frozen=True)
class ReuseConfig:
    steps: int = 20  # S: the caching model's default number of denoising steps (docs/caching-model.md)
    pmax_db: float = 30.0  # P_max; the paper's Fig. 7 PSNRs reach ~30 dB at its S* = 6
    samples: int = 10  # requests averaged
    guidance_scale: float = 3.0
    seed: int = 0
    output: str = "denoised"  # which output D_m is: "denoised" (x0 estimate) or "latent" (x_t)

    def __post_init__(self):
        if self.steps < 1 or self.samples < 1:
            raise ValueError("steps and samples must be >= 1")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
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
    """MSE and PSNR between consecutive outputs at every step, and ``S*``, for both readings of
    "the output of step m" (``config.output`` picks the one ``S*`` uses):

    - ``denoised``: the step's estimate of the clean image (DDIM's ``pred_original_sample``,
      decoded), what a viewer of the denoising sees, and what the paper's Fig. 7 PSNRs
      (rising from 20 to 30 dB over steps 1..6) look like;
    - ``latent``: the decoded intermediate latent ``x_t`` itself, the object that is cached.

    ``D_0`` is the decoded initial noise for both. All requests share one timestep schedule,
    so they run as one batch with one scheduler (a plain DDIM loop, guidance as in the executor).
    """
    import torch

    from edgediff.runtime.executor import initial_state
    from edgediff.runtime.request import GenerationRequest

    prompts = prompts or [class_prompt(d % 10) for d in range(config.samples)]
    requests = [
        GenerationRequest(
            prompts[i % len(prompts)], steps=config.steps, seed=config.seed + i, guidance_scale=config.guidance_scale
        )
        for i in range(config.samples)
    ]
    latents = torch.cat([initial_state(model, r).latent for r in requests])
    backend = model.backend
    scheduler = backend.new_scheduler()
    scheduler.set_timesteps(config.steps)
    guided = config.guidance_scale > 1
    conditioning = backend.condition(
        [r.prompt for r in requests], [r.negative_prompt for r in requests] if guided else ()
    )

    def decode(x):
        return model.decode(x).astype(np.float64)

    previous = {"denoised": decode(latents), "latent": decode(latents)}
    mse = {"denoised": [], "latent": []}
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x = backend.model_input(scheduler, latents, t)
            rows = torch.cat([x, x]) if guided else x
            eps = backend.predict(rows, t.expand(len(rows)), conditioning)
            if guided:
                eps = backend.guide(*eps.chunk(2), config.guidance_scale)
            out = scheduler.step(eps, t, latents)
            latents = out.prev_sample
            for name, value in (("denoised", out.pred_original_sample), ("latent", latents)):
                current = decode(value)
                mse[name].append(float(np.mean((current - previous[name]) ** 2)))
                previous[name] = current
    psnr_db = {name: [float(p) for p in psnr(values)] for name, values in mse.items()}
    return {
        "model": model.name,
        "steps": config.steps,
        "pmax_db": config.pmax_db,
        "output": config.output,
        "samples": config.samples,
        "guidance_scale": config.guidance_scale,
        "seed": config.seed,
        "mse": mse[config.output],
        "psnr_db": psnr_db[config.output],
        "reusable_steps": reusable_bound(psnr_db[config.output], config.pmax_db),
        "other": {
            "output": "latent" if config.output == "denoised" else "denoised",
            "mse": mse["latent" if config.output == "denoised" else "denoised"],
            "psnr_db": psnr_db["latent" if config.output == "denoised" else "denoised"],
        },
    }
