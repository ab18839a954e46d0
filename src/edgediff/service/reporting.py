"""What an engine reports of itself: ``load`` (what a front door routes by) and ``info``
(``/v1/info``). Reads the engine's parts; changes nothing."""

from __future__ import annotations

from dataclasses import asdict


def load(engine) -> dict:
    """What a front door routes by (:mod:`edgediff.service.routing`): the queue, the batch,
    the seconds to the next window decision, the calibration and the limits."""
    cfg = engine.config
    queued, wait = engine.queue_state()
    return {
        "queued": queued,
        "members": engine.batch_members,
        "running_steps": engine.scheduler.edge_steps_left(),
        "next_window_s": wait,
        "window_s": cfg.window_s,
        "k": engine.edge_k,
        "h": engine.edge_h,
        "gpus": engine.live_gpus(),
        "queue_limit": cfg.queue_limit,
        "n_hat_fraction": cfg.n_hat_fraction,
        "closing": engine.closing,
    }


def info(engine) -> dict:
    """``/v1/info``: the model, policy, limits, calibration, workers, cache and the stats."""
    cfg = engine.config
    used, entries = engine.caches.usage()
    return {
        "model": engine.model.name,
        **({} if engine.site is None else {"site": engine.site}),
        "policy": cfg.policy,
        "window_s": cfg.window_s,
        "gpus": engine.live_gpus(),
        "workers": engine.denoiser.workers_info(),
        "b_max": cfg.b_max,
        "max_batch": cfg.max_batch,
        "edge_profile": {"k": engine.edge_k, "h": engine.edge_h},
        "intermediate_bits": engine.intermediate_bits,
        "pai": {"a": cfg.pai_a, "b": cfg.pai_b, "N": 200},  # scaled to each request's N
        "cache": {
            "capacity_bytes": engine.caches.capacity_bytes,
            "bytes": used,
            "entries": entries,
            "per_tenant": cfg.api_keys is not None and not cfg.cache_sharing,
            "eviction": cfg.cache_eviction,
            "embedder": None if engine.embedder is None else getattr(engine.embedder, "name", "custom"),
        },
        "stats": {**asdict(engine.stats), "queued": engine.queue_state()[0]},
    }
