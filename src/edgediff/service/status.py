"""What the live status page (``GET /``, data at ``GET /v1/status``) shows: recent windows,
batch occupancy and queue length over time, cache size and hit rate, latency percentiles,
the latest hand-offs as thumbnails.

The engine thread reports events to a :class:`StatusBoard` (a window decided, a batched
step, a request finished, a cache lookup); everything is kept in bounded rings, so the board's
memory does not grow with uptime. :meth:`StatusBoard.snapshot` (called from the HTTP handler)
copies the rings under the board's lock and builds the JSON. Thumbnails are the hand-off
latents decoded by the model's VAE on the engine thread, at most one every
``THUMBNAIL_INTERVAL_S`` and at most ``THUMBNAIL_SHARE`` of the engine's time (a slow VAE
decodes less often; the decode is timed in the engine's ``thumbnail`` phase).
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

WINDOWS = 30  # recent windows listed
SECONDS = 180  # seconds of occupancy / queue history
LATENCIES = 1000  # recent finished requests for the percentiles
THUMBNAILS = 8
THUMBNAIL_INTERVAL_S = 1.0
THUMBNAIL_SHARE = 0.02  # a decode of d seconds waits d / THUMBNAIL_SHARE for the next one
THUMBNAIL_PX = 96


@dataclass
class _Window:
    index: int
    at: float  # seconds since start
    queued: int
    members: list  # (job id, status, split, steps, predicted hand-off s, calls N)
    decision_s: float


class _View:
    """The rings of one view of the edge: the whole edge, or one tenant's part of it."""

    def __init__(self):
        self.windows: deque[_Window] = deque(maxlen=WINDOWS)
        self.measured: dict[str, float | None] = {}  # granted members of those windows -> hand-off s
        # one bucket per second: [second, batched steps, member-steps, step seconds, max queue]
        self.seconds: deque[list] = deque(maxlen=SECONDS)
        self.latency: dict[str, deque] = {k: deque(maxlen=LATENCIES) for k in ("granted", "denied")}
        self.lookups: deque[bool] = deque(maxlen=LATENCIES)
        # (measured - predicted) / predicted of recent finished requests, by part (metrics.PREDICTION_PARTS)
        self.errors: dict[str, deque] = {k: deque(maxlen=LATENCIES) for k in ("edge", "handoff", "total")}

    def bucket(self, second: int) -> list:
        if not self.seconds or self.seconds[-1][0] != second:
            self.seconds.append([second, 0, 0, 0.0, 0])
        return self.seconds[-1]


class StatusBoard:
    """The events of the edge, kept for the whole edge and, with ``tenants``, for each tenant
    apart (its own windows, steps with its members, latencies, lookups): a tenant's view is
    its own rings, so another tenant's traffic neither shows in it nor pushes its entries out."""

    def __init__(self, b_max: int, tenants: tuple[str, ...] = ()):
        self.b_max = b_max
        self.started = time.perf_counter()
        self._lock = threading.Lock()
        self._views: dict[str | None, _View] = {t: _View() for t in (None, *tenants)}
        self._pending = None  # (job id, latent) of the newest hand-off not yet decoded
        self._thumbnails: deque[dict] = deque(maxlen=THUMBNAILS)
        self._next_thumbnail = 0.0

    def _of(self, tenant) -> list[_View]:
        """The views an event of ``tenant`` goes to: the whole edge's, and the tenant's."""
        own = self._views.get(tenant) if tenant is not None else None
        return [self._views[None]] if own is None else [self._views[None], own]

    def _second(self, now: float) -> int:
        return int(now - self.started)

    # ------------------------------------------------------------------ events (engine thread)
    def window(self, index: int, jobs: list, decision_s: float, indices: dict | None = None) -> None:
        """A window was decided: ``jobs`` carry their decided snapshots; ``indices``: each
        tenant's own number for it (a tenant's view numbers only its own windows)."""
        members: dict[str | None, list] = {None: []}
        for job in jobs:
            s = job.snapshot
            handoff = None
            if s.granted and s.predicted_latency_s is not None:  # the edge's part: minus the local steps
                handoff = s.predicted_latency_s - s.split * (job.k + job.h)
            member = (job.id, s.status, s.split, s.steps, handoff, s.N)
            members[None].append(member)
            if job.tenant is not None and job.tenant in self._views:
                members.setdefault(job.tenant, []).append(member)
        now = time.perf_counter()
        with self._lock:
            for owner, mine in members.items():
                view = self._views[owner]
                if len(view.windows) == WINDOWS:  # the oldest window leaves: stop tracking its members
                    for member in view.windows[0].members:
                        view.measured.pop(member[0], None)
                at = (indices or {}).get(owner, index) if owner is not None else index
                view.windows.append(_Window(at, now - self.started, len(mine), mine, decision_s))
                view.measured.update((m[0], None) for m in mine if m[4] is not None)
                bucket = view.bucket(self._second(now))
                bucket[4] = max(bucket[4], len(mine))

    def step(self, batch: int, elapsed: float, tenants: dict | None = None) -> None:
        """A batched step of ``batch`` members (``tenants``: members by tenant) took ``elapsed`` s."""
        second = self._second(time.perf_counter())
        with self._lock:
            for owner, members in {None: batch, **(tenants or {})}.items():
                view = self._views.get(owner)
                if view is None:
                    continue
                bucket = view.bucket(second)
                bucket[1] += 1
                bucket[2] += members
                bucket[3] += elapsed

    def lookup(self, hit: bool, tenant: str | None = None) -> None:
        with self._lock:
            for view in self._of(tenant):
                view.lookups.append(hit)

    def finished(self, job) -> None:
        """A request reached a terminal state: its arrival-to-answer time (done or denied)."""
        s = job.snapshot
        if s.status in ("done", "denied") and s.finished_at is not None:
            with self._lock:
                for view in self._of(getattr(job, "tenant", None)):
                    view.latency["granted" if s.status == "done" else "denied"].append(s.finished_at - s.arrived)
                    if s.status == "done" and job.id in view.measured:
                        view.measured[job.id] = s.finished_at - s.arrived

    def prediction(self, errors: dict[str, float], tenant: str | None = None) -> None:
        """A finished request's measured-against-predicted errors, by part."""
        with self._lock:
            for view in self._of(tenant):
                for part, error in errors.items():
                    view.errors[part].append(error)

    def handoff(self, state) -> None:
        """A granted member left the batch with ``state``: the next thumbnail candidate."""
        with self._lock:
            self._pending = (state.split, state.steps, state.latent)

    def render_thumbnail(self, model) -> bool:
        """Decode the newest hand-off if it is time (engine thread: the model is its own);
        ``True`` if one was decoded."""
        now = time.perf_counter()
        with self._lock:
            if self._pending is None or now < self._next_thumbnail:
                return False
            (split, steps, latent), self._pending = self._pending, None
        from PIL import Image

        image = Image.fromarray(model.decode(latent)[0])
        spent = time.perf_counter() - now
        self._next_thumbnail = now + max(THUMBNAIL_INTERVAL_S, spent / THUMBNAIL_SHARE)
        if max(image.size) > THUMBNAIL_PX:
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        elif max(image.size) < THUMBNAIL_PX:  # tiny models: scale up, keep the pixels visible
            scale = THUMBNAIL_PX // max(image.size)
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        png = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        with self._lock:
            self._thumbnails.appendleft(
                {"split": split, "steps": steps, "at": round(now - self.started, 1), "png": png}
            )
        return True

    # ------------------------------------------------------------------ the page's data (HTTP thread)
    def snapshot(self, engine, thumbnails: bool = True, tenant: str | None = None) -> dict:
        """The page's data: the whole edge's, or with ``tenant`` (one of the board's tenants)
        that tenant's own; ``thumbnails=False`` leaves the hand-off images out."""
        now = time.perf_counter()
        view = self._views[tenant if tenant in self._views else None]
        with self._lock:
            windows = list(view.windows)
            measured_of = dict(view.measured)
            seconds = [list(b) for b in view.seconds]
            latency = {k: np.array(v) for k, v in view.latency.items()}
            lookups = list(view.lookups)
            errors = {k: np.array(v) for k, v in view.errors.items()}
            images = list(self._thumbnails) if thumbnails else []
        uptime = now - self.started
        recent = []
        for w in reversed(windows):
            granted = [m for m in w.members if m[1] not in ("denied", "failed")]
            measured, predicted = [], []
            for job_id, *_, handoff, _ in granted:
                if measured_of.get(job_id) is not None:
                    measured.append(measured_of[job_id])
                    predicted.append(handoff)
            recent.append(
                {
                    "index": w.index,
                    "age_s": round(uptime - w.at, 1),
                    "requests": len(w.members),
                    "granted": len(granted),
                    "denied": sum(m[1] == "denied" for m in w.members),
                    "failed": sum(m[1] == "failed" for m in w.members),
                    "splits": sorted(m[2] for m in granted),
                    "steps": sorted({m[3] for m in w.members}),
                    "calls": sorted({m[5] for m in w.members}),
                    "decision_ms": round(w.decision_s * 1e3, 2),
                    "predicted_handoff_s": _mean([m[4] for m in granted]),
                    "measured_handoff_s": _mean(measured),
                    "predicted_handoff_done_s": _mean(predicted),
                    "finished": len(measured),
                }
            )
        now_second = int(uptime)
        occupancy = [
            {
                "t": b[0] - now_second,
                "steps": b[1],
                "mean_batch": round(b[2] / b[1], 2) if b[1] else 0.0,
                "busy": round(min(b[3], 1.0), 3),
                "queue": b[4],
            }
            for b in seconds
        ]
        info = engine.info(tenant)
        cache = info["cache"]
        return {
            "uptime_s": round(uptime, 1),
            **({"tenant": info["tenant"]} if "tenant" in info else {}),
            "model": info["model"],
            "policy": info["policy"],
            "window_s": info["window_s"],
            "b_max": self.b_max,
            "closing": engine.closing,
            "queue": info["stats"]["queued"],
            "batch_members": info["stats"].get("members", engine.batch_members),
            "workers": {key: info["workers"][key] for key in ("configured", "alive")},
            "accepted": info["stats"]["accepted"],
            "terminal": info["stats"]["terminal"],
            "windows": recent,
            "occupancy": occupancy,
            "cache": {
                "entries": cache["entries"],
                "bytes": cache["bytes"],
                "capacity_bytes": cache["capacity_bytes"],
                "lookups": len(lookups),
                "hit_rate": round(sum(lookups) / len(lookups), 4) if lookups else None,
            },
            "latency_s": {k: _percentiles(v) for k, v in latency.items()},
            "prediction_error": {k: _errors(v) for k, v in errors.items()},
            "thumbnails": images,
        }


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


def _errors(values: np.ndarray) -> dict:
    """Relative errors ``(measured - predicted) / predicted``: their mean (the bias) and the
    median and p90 of their size."""
    if not len(values):
        return {"count": 0, "mean": None, "abs_p50": None, "abs_p90": None}
    p50, p90 = np.percentile(np.abs(values), [50, 90])
    return {"count": int(len(values)), "mean": round(float(values.mean()), 4),
            "abs_p50": round(float(p50), 4), "abs_p90": round(float(p90), 4)}  # fmt: skip


def _percentiles(values: np.ndarray) -> dict:
    if not len(values):
        return {"count": 0, "p50": None, "p99": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"count": int(len(values)), "p50": round(float(p50), 4), "p99": round(float(p99), 4)}
