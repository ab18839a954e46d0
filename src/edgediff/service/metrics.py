"""Prometheus metrics of one service instance (own registry: no global state), and the
engine's own counters of what the edge did (``/v1/info``'s ``stats``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from edgediff.service.schemas import TERMINAL
from edgediff.service.tenants import QUOTA_REASONS

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
REJECT_REASONS = ("queue_full", "shutting_down")
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# (measured - predicted) / predicted: symmetric around 0, finer near it
ERROR_BUCKETS = (-0.5, -0.25, -0.1, -0.05, -0.03, -0.01, 0.01, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)
PREDICTION_PARTS = ("edge", "handoff", "total")


LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0)


class ServiceMetrics:
    """``tenants`` (the keys file's, sorted; empty without API keys): the request counters,
    the request latency histogram and the cache's hit and miss counters then carry a
    ``tenant`` label, one series per tenant of the keys file (bounded), all made at start-up.
    Count through :meth:`finished`, :meth:`refused`, :meth:`admitted` and :meth:`looked_up`."""

    def __init__(self, tenants: tuple[str, ...] = ()):
        r = self.registry = CollectorRegistry()
        self.tenants = tuple(tenants)
        by = ["tenant"] if self.tenants else []
        self.requests = Counter(
            "edgediff_requests", "Requests by terminal outcome (done, denied, failed)", ["outcome", *by], registry=r
        )
        self.rejected = Counter(
            "edgediff_rejected_requests", "Requests refused before acceptance, by reason", ["reason", *by], registry=r
        )
        self.accepted = Counter("edgediff_accepted_requests", "Requests accepted into the queue", by, registry=r)
        self.request_latency = Histogram(
            "edgediff_request_seconds",
            "Arrival to answer (the latent ready, or denied) of each done or denied request",
            by,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lost = Counter(
            "edgediff_lost_in_restart",
            "Requests accepted before a restart that never finished (answered failed)",
            registry=r,
        )
        self.grants = Counter("edgediff_grants", "Requests granted edge steps", registry=r)
        self.windows = Counter("edgediff_windows", "Decision windows run", registry=r)
        self.batch_size = Histogram(
            "edgediff_batch_size", "Members in each batched edge step", buckets=BATCH_BUCKETS, registry=r
        )
        self.step_latency = Histogram(
            "edgediff_step_latency_seconds", "Wall time of one batched edge step", buckets=STEP_BUCKETS, registry=r
        )
        self.step_scale = Gauge(
            "edgediff_edge_step_scale",
            "The recent batched steps' wall time over the calibrated L(b) (with profile_from_steps "
            "the windows are decided with L(b) times it)",
            registry=r,
        )
        self.step_scale.set(1.0)
        self.decision_latency = Histogram(
            "edgediff_decision_seconds", "Wall time of one window's policy decision", buckets=STEP_BUCKETS, registry=r
        )
        self.cache_hits = Counter(
            "edgediff_cache_hits", "Granted requests started from a cached latent", by, registry=r
        )
        self.cache_misses = Counter("edgediff_cache_misses", "Granted requests with no usable latent", by, registry=r)
        self.cache_bytes = Gauge("edgediff_cache_bytes", "Bytes held by the latent cache", registry=r)
        self.cache_entries = Gauge("edgediff_cache_entries", "Entries in the latent cache", registry=r)
        self.queue_depth = Gauge("edgediff_queue_depth", "Requests waiting for the next window", registry=r)
        self.in_flight = Gauge("edgediff_batch_members", "Members in the edge batch", registry=r)
        self.workers = Gauge(
            "edgediff_workers", "Denoiser workers configured (1: the service's own process)", registry=r
        )
        self.workers_alive = Gauge(
            "edgediff_workers_alive", "Denoiser workers serving: the G each window is planned with", registry=r
        )
        # per worker (labelled 0 .. workers-1 at start-up; worker 0 is the service's process without a pool)
        self.worker_alive = Gauge("edgediff_worker_alive", "1 while the denoiser worker serves", ["worker"], registry=r)
        self.worker_rows = Gauge(
            "edgediff_worker_rows", "Denoiser rows the worker has computed (0 without a pool)", ["worker"], registry=r
        )

        self.prediction_error = Histogram(
            "edgediff_prediction_error_ratio",
            "(measured - predicted) / predicted of a granted request's edge time (decision to latent), "
            "hand-off (arrival to latent) and total latency (the device's report)",
            ["part"],
            buckets=ERROR_BUCKETS,
            registry=r,
        )
        for part in PREDICTION_PARTS:
            self.prediction_error.labels(part)

        # every labelled series exists at zero from start-up (a rate() over it needs no first event)
        reasons = REJECT_REASONS + (QUOTA_REASONS if self.tenants else ())
        for tenant in self.tenants or (None,):
            for outcome in TERMINAL:
                self._of(self.requests, tenant, outcome)
            for reason in reasons:
                self._of(self.rejected, tenant, reason)
            if tenant is not None:
                for metric in (self.accepted, self.request_latency, self.cache_hits, self.cache_misses):
                    self._of(metric, tenant)

    def _of(self, metric, tenant: str | None, *labels: str):
        """``metric``'s series for ``labels`` (and ``tenant`` when tenants are on)."""
        if self.tenants:
            return metric.labels(*labels, str(tenant))
        return metric.labels(*labels) if labels else metric

    def finished(self, tenant: str | None, outcome: str, latency_s: float | None = None) -> None:
        """A request of ``tenant`` reached ``outcome``, ``latency_s`` after its arrival."""
        self._of(self.requests, tenant, outcome).inc()
        if latency_s is not None:
            self._of(self.request_latency, tenant).observe(latency_s)

    def refused(self, tenant: str | None, reason: str, count: int = 1) -> None:
        self._of(self.rejected, tenant, reason).inc(count)

    def admitted(self, tenant: str | None) -> None:
        self._of(self.accepted, tenant).inc()

    def looked_up(self, tenant: str | None, hit: bool) -> None:
        self._of(self.cache_hits if hit else self.cache_misses, tenant).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class FrontMetrics:
    """The front door's own series, by site, and every site's series with a ``site`` label
    (:mod:`edgediff.service.cluster`)."""

    def __init__(self, sites):
        r = self.registry = CollectorRegistry()
        self.up = Gauge("edgediff_site_up", "1 while the front door routes to the site", ["site"], registry=r)
        self.routed = Counter("edgediff_front_routed_requests", "Requests accepted at each site", ["site"], registry=r)
        self.lost = Counter(
            "edgediff_front_lost_requests", "Requests failed because their site was lost", ["site"], registry=r
        )
        for site in sites:
            self.up.labels(site)
            self.routed.labels(site)
            self.lost.labels(site)

    def render(self, site_texts: dict) -> bytes:
        """This registry's series, then each site's (``{site: text or None}``) labelled by site."""
        from prometheus_client.core import Metric
        from prometheus_client.parser import text_string_to_metric_families

        merged: dict[str, Metric] = {}
        for site, text in site_texts.items():
            if text is None:
                continue
            for family in text_string_to_metric_families(text.decode()):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    into.add_sample(sample.name, {**sample.labels, "site": site}, sample.value, sample.timestamp)

        class Sites:
            def collect(self):
                return list(merged.values())

        registry = CollectorRegistry()
        registry.register(Sites())
        return generate_latest(self.registry) + generate_latest(registry)


PHASES = ("decide", "embed", "admit", "step", "capture", "encode", "thumbnail")


@dataclass
class EdgeStats:
    """What the edge did: batched steps, member-steps, busy time (in the executor's steps),
    and the calibrated ideal ``sum_s L(b_s)`` of the same steps (``L(b) = k b + h`` of the
    edge's profile). ``engine_busy_s`` is all the engine thread's working (not waiting) time,
    ``engine_cpu_s`` its CPU time, ``phases_s`` splits the working time: ``decide`` (instance
    + policy), ``embed`` (prompt embeddings), ``admit`` (cache lookup, joining the batch),
    ``step`` (the executor), ``capture`` (cache inserts), ``encode`` (payload encoding and
    publishing), ``thumbnail`` (the status page's decode); the rest is the loop itself.
    ``alone_s`` is the working time of the loop's turns with no step in flight (a window's
    decision on an empty batch, the hand-off after the last member left): host work that
    nothing overlaps, ``alone_turns`` their number."""

    windows: int = 0
    steps: int = 0
    member_steps: int = 0
    busy_s: float = 0.0
    ideal_s: float = 0.0
    accepted: int = 0
    terminal: dict = field(default_factory=lambda: {s: 0 for s in TERMINAL})
    engine_busy_s: float = 0.0
    engine_cpu_s: float = 0.0
    phases_s: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    alone_s: float = 0.0
    alone_turns: int = 0

    @contextmanager
    def timed(self, phase: str):
        """Add the time of the ``with`` block to ``phases_s[phase]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases_s[phase] += time.perf_counter() - start
