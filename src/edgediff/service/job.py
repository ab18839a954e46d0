"""One accepted request in the edge service and the snapshots of its status.

The engine thread owns a :class:`Job`; what the HTTP handlers read is its ``snapshot``, an
immutable :class:`JobSnapshot` the engine replaces whole, under its lock, at every change.
A poll therefore sees one consistent state (never ``queued`` with a decision in it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgediff.service.schemas import TERMINAL, SubmitRequest

if TYPE_CHECKING:
    from edgediff.runtime.request import GenerationRequest

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The request queue is at its limit; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"request queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The service is draining and accepts no new requests."""


@dataclass(frozen=True)
class JobSnapshot:
    """A request's status at one moment (the fields of ``JobStatus`` and the payload)."""

    id: str
    steps: int  # the inference steps the client asked for
    arrived: float
    status: str = "queued"
    window: int | None = None
    granted: bool | None = None
    split: int | None = None
    predicted_latency_s: float | None = None
    predicted_pai: float | None = None
    cache_hit_step: int = 0
    cache_miss: str | None = None
    reason: str | None = None
    decided_at: float | None = None
    finished_at: float | None = None
    payload: bytes | None = field(default=None, repr=False)
    calls: int | None = None  # N: the schedule's denoiser calls (None: ``steps``), the unit of ``split``
    predicted_handoff_s: float | None = None
    predicted_edge_s: float | None = None
    measured_latency_s: float | None = None  # the device's submit-to-image time, as its client reported it

    @property
    def N(self) -> int:
        """Denoiser calls of the whole schedule: the unit of ``split`` (docs/service.md)."""
        return self.steps if self.calls is None else self.calls

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_status(self) -> dict:
        return {
            "id": self.id,
            "status": self.status,
            "steps": self.steps,
            "window": self.window,
            "granted": self.granted,
            "split": self.split,
            "calls": self.N,
            "offloaded_steps": None if self.split is None else self.N - self.split,
            "predicted_latency_s": self.predicted_latency_s,
            "predicted_pai": self.predicted_pai,
            "cache_hit_step": self.cache_hit_step,
            "cache_miss": self.cache_miss,
            "reason": self.reason,
            "queued_s": None if self.decided_at is None else self.decided_at - self.arrived,
            "edge_s": None
            if self.finished_at is None or self.decided_at is None or not self.granted
            else self.finished_at - self.decided_at,
            "payload_bytes": None if self.payload is None else len(self.payload),
            "predicted_handoff_s": self.predicted_handoff_s,
            "predicted_edge_s": self.predicted_edge_s,
            "handoff_s": None if self.finished_at is None or self.status != "done" else self.finished_at - self.arrived,
            "measured_latency_s": self.measured_latency_s,
        }

    def prediction_errors(self) -> dict[str, float]:
        """``(measured - predicted) / predicted`` of the parts measured so far, for a request
        the edge finished (``done``): ``edge`` (decision to latent), ``handoff`` (arrival to
        latent) and ``total`` (what the device reported, submit to image)."""
        if self.status != "done" or self.finished_at is None or self.decided_at is None:
            return {}
        pairs = {
            "edge": (self.finished_at - self.decided_at, self.predicted_edge_s),
            "handoff": (self.finished_at - self.arrived, self.predicted_handoff_s),
            "total": (self.measured_latency_s, self.predicted_latency_s),
        }
        return {
            part: (measured - predicted) / predicted
            for part, (measured, predicted) in pairs.items()
            if measured is not None and predicted is not None and predicted > 0
        }


@dataclass(eq=False)
class Job:
    """One accepted request: what it asks for, the engine's working state, its snapshot."""

    id: str
    body: SubmitRequest
    request: GenerationRequest
    k: float
    h: float
    arrived: float
    calls: int = 0  # N: the denoiser calls of the request's schedule (0: ``request.steps``)
    snapshot: JobSnapshot = field(init=False)
    embedding: np.ndarray | None = field(default=None, repr=False)
    cached_steps: int = 0  # d_i: steps of the cached latent it could start from, seen before its window's decision
    conditioning: object = field(default=None, repr=False)  # the model's prompt encoding, computed ahead
    prepared: threading.Event | None = field(default=None, repr=False)  # set when the prep thread has done it
    decided: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    async_decided: asyncio.Event | None = field(default=None, repr=False)
    async_finished: asyncio.Event | None = field(default=None, repr=False)
    collected: bool = False  # its terminal answer (latent, or denied/failed status) was served
    tenant: str | None = None  # who sent it (with API keys)
    area: float = 1.0  # its latent area over the model's native one (the window scales its costs by it)

    def __post_init__(self):
        self.calls = self.calls or self.request.steps
        self.snapshot = JobSnapshot(self.id, self.request.steps, self.arrived, calls=self.calls)

    @property
    def steps(self) -> int:
        """``N`` of the window's instance: denoiser calls of the schedule, the unit the edge
        plans, runs and reports split points in (``request.steps`` is what the client asked)."""
        return self.calls

    @property
    def alpha(self) -> float:
        return self.body.alpha

    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def terminal(self) -> bool:
        return self.snapshot.terminal

    def to_status(self) -> dict:
        return self.snapshot.to_status()


@dataclass(eq=False)
class RestoredJob:
    """A request known only from the journal: accepted before a restart, now terminal (its
    journal status, or ``failed`` with reason ``lost in restart``); no latent."""

    snapshot: JobSnapshot
    tenant: str | None = None
    async_decided = async_finished = None  # terminal: nothing to wait for
    collected = True

    @classmethod
    def from_record(cls, record: dict, status: str, reason: str | None) -> RestoredJob:
        """The request of an earlier run from its journal ``record``, answered ``status``."""
        steps, split = record["steps"], record.get("split")  # replay returns only valid records
        calls = record.get("calls") or steps
        granted = None if split is None else split < calls
        snapshot = JobSnapshot(
            record["id"], steps, 0.0, status, record.get("window"), granted, split, reason=reason, calls=calls
        )
        return cls(snapshot, record.get("tenant"))

    @property
    def id(self) -> str:
        return self.snapshot.id

    @property
    def terminal(self) -> bool:
        return True

    def to_status(self) -> dict:
        return self.snapshot.to_status()


def restore_jobs(restored, journal, metrics, path) -> list[RestoredJob]:
    """The requests of an earlier run (``restored``, a journal's replay), by id: finished ones
    keep their journal status; those accepted and never finished are answered ``failed``,
    reason ``lost in restart`` (journaled so, and counted in ``metrics.lost``)."""
    from edgediff.service.journal import LOST

    jobs = []
    for record in restored.finished:
        jobs.append(RestoredJob.from_record(record, record["status"], record.get("reason")))
    for record in restored.lost:
        jobs.append(RestoredJob.from_record(record, "failed", LOST))
        journal.finished(record["id"], "failed", LOST, None, None)
        metrics.lost.inc()
    if restored.lost:
        log.warning(
            "journal %s: %d request(s) accepted before a restart never finished; answered failed (%s)",
            path,
            len(restored.lost),
            LOST,
        )
    return jobs


class JobTable:
    """The engine's requests by id (a :class:`Job`, or a :class:`RestoredJob` of an earlier
    run), at most ``limit`` kept: beyond it the oldest terminal ones are dropped. Not
    thread-safe: the engine holds its lock."""

    def __init__(self, limit: int):
        self.limit = limit
        self._jobs: OrderedDict[str, Job | RestoredJob] = OrderedDict()

    def add(self, job) -> None:
        self._jobs[job.id] = job
        excess = len(self._jobs) - self.limit
        if excess > 0:
            for job_id in [j.id for j in self._jobs.values() if j.terminal][:excess]:
                del self._jobs[job_id]

    def get(self, job_id: str):
        return self._jobs.get(job_id)

    def all(self) -> list:
        return list(self._jobs.values())

    def unfinished(self) -> list:
        return [j for j in self._jobs.values() if not j.terminal]
