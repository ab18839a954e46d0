"""Every change of a request's status, published in one place.

A job's status changes only by a new :class:`~edgediff.service.job.JobSnapshot` replaced
whole under the engine's lock (a poll never sees a half-made decision); a terminal one is
counted once (stats, metrics), journaled, shown on the status board, and every client
waiting on the job is woken (threading events, and asyncio events on the HTTP side's loop).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace

from edgediff.service.job import Job
from edgediff.service.journal import Journal
from edgediff.service.metrics import EdgeStats, ServiceMetrics
from edgediff.service.schemas import TERMINAL
from edgediff.service.status import StatusBoard
from edgediff.service.tenants import TenantLedger

log = logging.getLogger(__name__)


class Publisher:
    """``decided`` and ``finish`` for the jobs of one engine; ``journal`` (optional) and
    ``loop`` (where asyncio waiters live) may be set after construction."""

    def __init__(
        self,
        lock: threading.Condition,
        stats: EdgeStats,
        metrics: ServiceMetrics,
        board: StatusBoard,
        ledger: TenantLedger | None = None,
    ):
        self.lock, self.stats, self.metrics, self.board = lock, stats, metrics, board
        self.ledger = ledger or TenantLedger(())
        self.journal: Journal | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def _signal(self, event: asyncio.Event | None) -> None:
        if event is None or self.loop is None:
            return
        try:
            self.loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed (shutdown): nobody is waiting any more
            pass

    def decided(self, job: Job, index: int, status: str, reason: str | None = None, **answer) -> None:
        """Publish the window's answer for ``job`` in one snapshot: ``running`` or terminal."""
        decided = dict(window=index, decided_at=time.perf_counter(), **answer)
        if status in TERMINAL:
            self.finish(job, status, reason, **decided)
            return
        with self.lock:
            job.snapshot = replace(job.snapshot, status=status, reason=reason, **decided)
        job.decided.set()
        self._signal(job.async_decided)

    def measured(self, job: Job, latency_s: float) -> bool:
        """The device's report of ``job``'s total latency (submit to image): kept in its status
        and counted in the prediction's error, once; False if not a request the edge finished
        or already reported."""
        with self.lock:
            snapshot = job.snapshot
            if snapshot.status != "done" or snapshot.measured_latency_s is not None:
                return False
            job.snapshot = snapshot = replace(snapshot, measured_latency_s=latency_s)
        error = snapshot.prediction_errors().get("total")
        if error is not None:
            self.prediction_errors({"total": error}, job.tenant)
        return True

    def prediction_errors(self, errors: dict[str, float], tenant: str | None) -> None:
        """Count measured-against-predicted errors in ``/metrics`` and on the status page
        (``tenant``'s view too)."""
        for part, error in errors.items():
            self.metrics.prediction_error.labels(part).observe(error)
        self.board.prediction(errors, tenant)

    def finish(self, job: Job, status: str, reason: str | None = None, **changes) -> None:
        """Publish a terminal ``status`` (with any other ``changes``) unless already terminal."""
        with self.lock:
            if job.terminal:
                return
            job.snapshot = snapshot = replace(
                job.snapshot, status=status, reason=reason, finished_at=time.perf_counter(), **changes
            )
            self.stats.terminal[status] += 1
            self.ledger.finished(job.tenant, status)
        job.conditioning = job.embedding = None  # a kept record holds its answer, not its prompt work
        latency = None  # arrival to answer, of the requests answered (done or denied)
        if status in ("done", "denied") and snapshot.finished_at is not None:
            latency = snapshot.finished_at - snapshot.arrived
        self.metrics.finished(job.tenant, status, latency)
        if status == "failed":
            log.warning("request %s failed: %s", job.id, reason)
        if self.journal is not None:
            self.journal.finished(job.id, status, reason, snapshot.window, snapshot.split)
        self.prediction_errors(snapshot.prediction_errors(), job.tenant)
        self.board.finished(job)
        if not job.decided.is_set():
            job.decided.set()
            self._signal(job.async_decided)
        job.finished.set()
        self._signal(job.async_finished)
