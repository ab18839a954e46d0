"""The caching paper's Fig. 7: the quality of the denoised outputs per caching policy, measured with the
shipped small diffusion model (``edgediff reproduce cache-fig7``).

The paper plots, per caching algorithm, the PSNR of eqs. (1)-(2) against the step ``m``: the
PSNR between the denoised output of step ``m`` and that of step ``m - 1``. Ours:

1. each policy runs the Part B simulator (:func:`edgediff.cache.simulator.simulate`) on one
   seed; from its requests, ``samples`` are drawn at random (seeded), each with what the policy
   did for it: the cached step ``j`` it reused (0: none) and whether that entry was its own
   class's or a topic neighbour's (``SimResult.reused_step`` and ``shared_hit``);
2. a catalog class is a request of the small model: its prompt is the digit ``class % 10`` and
   its initial noise is seeded by the class, so two requests of one class are the same content;
3. a request that reused step ``j`` starts from the cached latent — the trajectory of the
   entry's class (its own, or for a topic hit another class of the topic) after ``j`` steps —
   and runs the remaining ``S - j`` steps with its own prompt; a miss runs all ``S`` steps;
4. per step, ``MSE_m`` between consecutive decoded denoised outputs (``D_m``: the step's
   clean-image estimate, as ``edgediff measure-reuse``), averaged over the sampled requests,
   and ``PSNR_m`` from it (:func:`edgediff.personalize.reuse.psnr`, eq. (2)); plus the PSNR of
   each request's final image against the same request run with no cache (how much reuse
   changed what the user gets; ``inf`` where it changed nothing).

A reused step is computed by someone else, earlier: its ``D_1..D_j`` are the entry's class's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgediff.cache.config import CacheConfig
from edgediff.cache.model import topic_reusable_steps
from edgediff.cache.policies import COMPARED_POLICIES
from edgediff.cache.simulator import make_environment, simulate
from edgediff.figure_io import Figure, markdown, markdown_table, pyplot
from edgediff.personalize.data import class_prompt
from edgediff.personalize.reuse import psnr

log = logging.getLogger(__name__)

DIGITS = 10  # the small model's conditioning classes (its prompts name a digit)


def class_request(cls: int) -> tuple[str, int]:
    """The small model's request for catalog class ``cls``: its digit prompt and its noise seed."""
    return class_prompt(int(cls) % DIGITS), int(cls)


def topic_neighbour(topic: np.ndarray, cls: int) -> int:
    """Another class of ``cls``'s topic (the first one by id), whose entry a topic hit reuses."""
    same = np.flatnonzero(topic == topic[cls])
    others = same[same != cls]
    return int(others[0]) if others.size else int(cls)


def denoise(model, latents, prompts: list[str], steps: int, start: int, guidance_scale: float):
    """Run steps ``start + 1 .. steps`` of one batch from ``latents`` (the state after ``start``
    steps) with ``prompts``; returns the decoded denoised output of every step run, shape
    ``(steps - start, B, ...)``, the latents after every step run and the final decoded image."""
    import torch

    backend = model.backend
    scheduler = backend.new_scheduler()
    scheduler.set_timesteps(steps)
    guided = guidance_scale > 1
    conditioning = backend.condition(prompts, [""] * len(prompts) if guided else ())
    denoised, states = [], []
    with torch.inference_mode():
        for t in scheduler.timesteps[start:]:
            x = backend.model_input(scheduler, latents, t)
            rows = torch.cat([x, x]) if guided else x
            eps = backend.predict(rows, t.expand(len(rows)), conditioning)
            if guided:
                eps = backend.guide(*eps.chunk(2), guidance_scale)
            out = scheduler.step(eps, t, latents)
            latents = out.prev_sample
            denoised.append(model.decode(out.pred_original_sample).astype(np.float64))
            states.append(latents)
    return np.stack(denoised) if denoised else np.zeros(0), states, model.decode(latents).astype(np.float64)


def request_outputs(model, requests: list[tuple[int, int, int]], steps: int, guidance_scale: float):
    """For requests ``(class, reused step j, class of the reused entry)``: every request's decoded
    outputs ``D_0..D_S`` (``(B, S + 1, ...)``), its final image, and its final image with no cache."""
    import torch

    from edgediff.runtime.executor import initial_state
    from edgediff.runtime.request import GenerationRequest

    def noise(classes):
        reqs = [GenerationRequest(class_request(c)[0], steps=steps, seed=class_request(c)[1]) for c in classes]
        return torch.cat([initial_state(model, r).latent for r in reqs])

    own = [c for c, _, _ in requests]
    source = [s for _, _, s in requests]
    prompts = [class_request(c)[0] for c in own]
    start, start_src = noise(own), noise(source)
    d_own, _, final_own = denoise(model, start, prompts, steps, 0, guidance_scale)
    d_src, src_states, _ = denoise(model, start_src, [class_request(c)[0] for c in source], steps, 0, guidance_scale)
    d0_own, d0_src = model.decode(start).astype(np.float64), model.decode(start_src).astype(np.float64)
    outputs = np.concatenate([d0_own[None], d_own])  # (S + 1, B, ...): a miss's D_0..D_S
    final = final_own.copy()
    reused = np.array([j for _, j, _ in requests])
    for j in sorted(set(reused.tolist()) - {0}):
        rows = np.flatnonzero(reused == j)
        cont, _, fin = denoise(
            model, src_states[j - 1][rows], [prompts[r] for r in rows], steps, j, guidance_scale
        )  # the cached latent after j steps, then the request's own prompt
        outputs[0, rows] = d0_src[rows]
        outputs[1 : j + 1, rows] = d_src[:j, rows]
        outputs[j + 1 :, rows] = cont
        final[rows] = fin
    return np.moveaxis(outputs, 0, 1), final, final_own


def sampled_requests(result, topic: np.ndarray, cls: np.ndarray, samples: int, seed: int) -> list[tuple[int, int, int]]:
    """``samples`` of a run's requests (seeded draw): (class, reused step, class of the reused entry)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(result.latency.size, size=min(samples, result.latency.size), replace=False)
    out = []
    for r in np.sort(pick):
        c, j = int(cls[r]), int(result.reused_step[r])
        out.append((c, j, topic_neighbour(topic, c) if j and result.shared_hit[r] else c))
    return out


def fig7(out_dir: Path, *, quick: bool = False, seed: int = 0, model: str = "tiny", **_) -> Figure:
    """PSNR (eqs. (1)-(2)) of the denoised outputs against the step, per caching policy."""
    from edgediff.runtime.models import load_model

    cfg = CacheConfig(slots=200 if quick else 3000)
    policies = ("oo", "lfu", "ncldc") if quick else COMPARED_POLICIES
    samples = 4 if quick else 48
    steps, guidance = cfg.steps, 3.0
    diffusion = load_model(model)
    env = make_environment(cfg, seed)
    cls = env.cls[env.request]  # request order of SimResult's arrays (slot by slot, user by user)
    rows, curves = [], {}

    def measure(name: str, requests: list[tuple[int, int, int]], hit_rate_run=np.nan, topic_hit_share_run=np.nan):
        outputs, final, final_own = request_outputs(diffusion, requests, steps, guidance)
        mse = np.mean((outputs[:, 1:] - outputs[:, :-1]) ** 2, axis=tuple(range(2, outputs.ndim))).mean(axis=0)
        curves[name] = psnr(mse)
        reused = np.array([j for _, j, _ in requests])
        for m in range(1, cfg.reusable_steps + 1):
            rows.append(
                {
                    "policy": name,
                    "step": m,
                    "psnr_db": float(curves[name][m - 1]),
                    "mse": float(mse[m - 1]),
                    "sampled": len(requests),
                    "sampled_reused": int((reused > 0).sum()),
                    "sampled_topic_hits": sum(1 for c, j, src in requests if j and src != c),
                    "mean_reused_step": float(reused.mean()),
                    "final_psnr_vs_no_cache_db": float(psnr(np.mean((final - final_own) ** 2))),
                    "hit_rate_run": float(hit_rate_run),
                    "topic_hit_share_run": float(topic_hit_share_run),
                }
            )

    sampled: list[tuple[int, int, int]] = []
    for policy in policies:
        result = simulate(cfg, policy, seed, env=env)
        sampled = sampled_requests(result, env.catalog.topic, cls, samples, seed)
        run = {"hit_rate_run": float(result.hit.mean()), "topic_hit_share_run": float(result.shared_hit.mean())}
        measure(policy, sampled, **run)
        log.info("cache-fig7 %s: %d of %d sampled requests reused a step", policy, rows[-1]["sampled_reused"], samples)
    # what a topic hit costs: every sampled request served from a topic neighbour's entry at each
    # step deep enough to be shared (theta(j) <= sigma_topic); no policy's run, a counterfactual
    for j in np.flatnonzero(topic_reusable_steps(cfg)).tolist():
        measure(f"topic hit at step {j}", [(c, j, topic_neighbour(env.catalog.topic, c)) for c, _, _ in sampled])
    fig, ax = pyplot().subplots(figsize=(6.5, 4.2))
    m = np.arange(1, cfg.reusable_steps + 1)
    for policy, curve in curves.items():
        ax.plot(m, curve[: cfg.reusable_steps], "x--" if policy.startswith("topic hit") else "o-", label=policy)
    ax.set_xlabel("denoising step m")
    ax.set_ylabel("PSNR_m (dB), eqs. (1)-(2)")
    ax.set_title(f"Denoised outputs per caching policy ({diffusion.name}, {samples} requests, seed {seed})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    by_policy = {r["policy"]: r for r in rows}
    lines = [
        f"Model `{diffusion.name}`, S = {steps} steps, guidance {guidance}; each policy's simulator run: "
        f"{cfg.slots} slots, seed {seed}, defaults otherwise; {samples} of its requests drawn at random (seed {seed}). "
        "PSNR_m between the decoded denoised outputs of steps m and m - 1 (MSE averaged over the requests first).",
        "",
        *markdown_table(
            ["policy", *[f"step {k}" for k in m], "reused / sampled (topic hits)", "topic hits in the run (%)",
             "final vs no cache (dB)"],
            [
                [
                    p,
                    *[float(curves[p][k - 1]) for k in m],
                    f"{by_policy[p]['sampled_reused']} / {by_policy[p]['sampled']} "
                    f"({by_policy[p]['sampled_topic_hits']})",
                    100 * by_policy[p]["topic_hit_share_run"],
                    by_policy[p]["final_psnr_vs_no_cache_db"],
                ]
                for p in curves
            ],
            ["", *[".2f"] * len(m), "", ".2f", ".2f"],
        ),
        "",
        "A hit on the request's own class's entry gives exactly the output it would have computed "
        "(final vs no cache: inf dB); only a topic hit (another class's entry, steps with "
        "theta <= sigma_topic) changes it. The `topic hit at step j` rows serve every sampled request "
        "from a topic neighbour's entry at step j (a counterfactual, not a policy).",
    ]  # fmt: skip
    return Figure("cache-fig7", rows, fig, markdown("cache-fig7: denoised outputs per caching policy", lines))
