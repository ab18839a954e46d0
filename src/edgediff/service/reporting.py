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
        "step_scale": engine.scheduler.decision_scale,  # what windows multiply k and h by (1: the calibration alone)
        "gpus": engine.live_gpus(),
        "queue_limit": cfg.queue_limit,
        "n_hat_fraction": cfg.n_hat_fraction,
        "closing": engine.closing,
    }


def info(engine, tenant: str | None = None) -> dict:
    """``/v1/info``: the model and its latent space (what a device's model must share), the
    policy, limits, calibration (and, but for a tenant, ``edge_step_scale``: the recent steps'
    pace over it moves with every tenant's work), workers, cache and the stats.
    With tenants on, a tenant (``tenant``) sees the edge's settings and only its own counts,
    cache and queue; the operator (:data:`~edgediff.service.tenants.OPERATOR`) sees the whole
    edge and each tenant's counts (docs/service.md, "Tenants")."""
    from edgediff.service.tenants import OPERATOR

    cfg = engine.config
    own = cfg.api_keys is not None and tenant is not None and tenant != OPERATOR
    used, entries = engine.caches.usage()
    capacity = engine.caches.capacity_bytes
    workers = engine.denoiser.workers_info()
    if own:
        cache = engine.caches.caches.get(tenant)  # None with a shared cache: its size is everyone's
        used, entries = (None, None) if cache is None else (cache.bytes_used, len(cache))
        capacity = None if cache is None else cache.capacity_bytes
        workers = {key: workers[key] for key in ("configured", "alive", "threads")}  # no rows: the edge's work
    answer = {
        "model": engine.model.name,
        "dtype": engine.model.dtype,
        "latent_space": engine.model.latent_space,
        **({} if engine.site is None else {"site": engine.site}),
        **({"tenant": tenant} if own else {}),
        "policy": cfg.policy,
        "window_s": cfg.window_s,
        "gpus": engine.live_gpus(),
        "workers": workers,
        "b_max": cfg.b_max,
        "max_batch": cfg.max_batch,
        "edge_profile": {"k": engine.edge_k, "h": engine.edge_h},
        "profile_from_steps": cfg.profile_from_steps,  # whether windows are decided with L(b) times edge_step_scale
        "intermediate_bits": engine.intermediate_bits,
        "pai": {"a": cfg.pai_a, "b": cfg.pai_b, "N": 200},  # scaled to each request's N
        "cache": {
            "capacity_bytes": capacity,
            "bytes": used,
            "entries": entries,
            "per_tenant": cfg.api_keys is not None and not cfg.cache_sharing,
            "eviction": cfg.cache_eviction,
            "embedder": None if engine.embedder is None else getattr(engine.embedder, "name", "custom"),
        },
    }
    if own:
        queued, members = engine.tenant_load(tenant)
        answer["stats"] = {**engine.ledger.view(tenant), "queued": queued, "members": members}
        return answer
    answer["edge_step_scale"] = engine.scheduler.step_scale  # the recent steps' seconds over L(b): the edge's work
    answer["stats"] = {**asdict(engine.stats), "queued": engine.queue_state()[0]}
    if tenant == OPERATOR:
        answer["tenants"] = {t: {**engine.ledger.view(t), **dict(zip(("queued", "members"), engine.tenant_load(t)))}
                             for t in cfg.tenants}  # fmt: skip
    return answer
