"""Part C edge service: the HTTP server and client (docs/service.md).

``config`` (the service's parameters), ``schemas`` (the HTTP bodies, pydantic), ``engine``
(the window scheduler: Part A decisions every window, the batched executor, the latent
cache), ``latent_cache`` and ``embedding`` (reusable early-step latents keyed by prompt
embeddings, the reuse rule of docs/caching-model.md), ``metrics`` (Prometheus), ``journal``
(the write-ahead journal), ``tenants`` (API keys), ``app`` (FastAPI), ``routing`` (the
front door's rule), ``cluster`` (sites on Ray behind one front door), ``server`` (uvicorn,
in a thread or in the foreground), ``client`` (the device side) and ``demo``.
Imports FastAPI, uvicorn and torch only inside these modules; ``edgediff.cli`` imports them
lazily. See docs/service.md.
"""
