"""The twin against the real thing: one arrival trace through the real service on loopback
(HTTP, the engine, the batched executor, a real model) and through the twin with the
service's calibration; answer times, grants and latencies compared (docs/results-twin.md).

What validates the twin is what was measured on the service: each request's answer time
(arrival to the edge's answer: the latent handed off, or the denial) and the grants. The
service's end-to-end latency adds the link and the device's steps by the twin's own formula
(its devices are declared profiles), so its rows (``basis`` ``"measured + model"``) agree
partly by construction and are shown, not used as the validation."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from edgediff.core.link import transmission_latency
from edgediff.core.profiles import local_step_latency
from edgediff.service.config import ServiceConfig
from edgediff.twin.config import Site, TwinConfig
from edgediff.twin.report import TwinResult
from edgediff.twin.sim import simulate
from edgediff.twin.workload import Arrivals

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ServiceRun:
    """What the real service did with each request (seconds from the trace's start)."""

    arrived: np.ndarray
    decided: np.ndarray
    answered: np.ndarray
    granted: np.ndarray
    split: np.ndarray
    window: np.ndarray
    edge_profile: tuple[float, float]
    intermediate_bits: int
    phase_s: float
    step_scale: float  # the engine's measured step time over the calibrated L(b), during the run
    predicted_handoff: np.ndarray  # the window's prediction of arrival to latent (granted; nan otherwise)

    def prediction_error(self) -> dict:
        """The service's own prediction against what it measured, granted requests: the
        hand-off (arrival to latent handed off) as ``(measured - predicted) / predicted``,
        its mean (bias) and the median and p90 of its size."""
        measured = (self.answered - self.arrived)[self.granted]
        error = (measured - self.predicted_handoff[self.granted]) / self.predicted_handoff[self.granted]
        if not error.size:
            return {"count": 0, "mean": math.nan, "abs_p50": math.nan, "abs_p90": math.nan}
        p50, p90 = np.percentile(np.abs(error), [50, 90])
        return {"count": int(error.size), "mean": float(error.mean()), "abs_p50": float(p50), "abs_p90": float(p90)}


def replay(arrivals: Arrivals, config: ServiceConfig, model, *, prompts: list[str], lead_s: float = 0.3) -> ServiceRun:
    """Submit ``arrivals`` over HTTP to a service started in this process on a free loopback
    port (``model`` loaded, ``config`` with its ``edge_profile``), each at its trace time, and
    wait for every request's end. ``phase_s`` is when the service's window clock started, on
    the trace's clock, read from the first decision (the edge is idle then)."""
    from edgediff.service.client import EdgeClient
    from edgediff.service.embedding import HashEmbedder
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.server import ServiceThread

    class TimedEngine(EdgeEngine):
        """The engine, timing each batched step from its launch to its completion (what the
        host work done meanwhile adds included), against the calibrated ``L(b)``."""

        step_s = ideal_s = 0.0

        def _complete(self, batch, launched):
            handoff = super()._complete(batch, launched)
            _, members, start = launched
            if members:
                self.step_s += time.perf_counter() - start
                self.ideal_s += self.denoiser.ideal_step_s(members)
            return handoff

    engine = TimedEngine(config, model=model, embedder=HashEmbedder())
    ids = []
    with ServiceThread(engine) as service, EdgeClient(service.url) as client:
        t0 = time.perf_counter() + lead_s
        for i in range(len(arrivals)):
            delay = t0 + float(arrivals.time[i]) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            status = client.submit(
                prompts[i],
                alpha=float(arrivals.alpha[i]),
                profile=(float(arrivals.k[i]), float(arrivals.h[i])),
                steps=int(arrivals.steps[i]),
                seed=i,
            )
            ids.append(status["id"])
        jobs = []
        for job_id in ids:
            job = engine.get(job_id)
            assert job is not None  # fewer requests than the engine keeps records of
            job.finished.wait(120)
            jobs.append(job)
        snaps = [job.snapshot for job in jobs]
        edge_profile, bits = (engine.edge_k, engine.edge_h), engine.intermediate_bits
        step_scale = engine.step_s / engine.ideal_s if engine.ideal_s > 0 else 1.0
    arrived = np.array([s.arrived for s in snaps]) - t0
    decided = np.array([s.decided_at for s in snaps], dtype=float) - t0
    finished = np.array([s.finished_at for s in snaps], dtype=float) - t0
    granted = np.array([bool(s.granted) for s in snaps])
    K = config.window_s
    return ServiceRun(
        arrived=arrived,
        decided=decided,
        answered=np.where(granted, finished, decided),
        granted=granted,
        split=np.array([s.split for s in snaps]),
        window=np.array([-1 if s.window is None else s.window for s in snaps]),
        edge_profile=edge_profile,
        intermediate_bits=bits,
        phase_s=float(decided[0] % K),
        step_scale=step_scale,
        predicted_handoff=np.array(
            [math.nan if s.predicted_handoff_s is None else s.predicted_handoff_s for s in snaps], dtype=float
        ),
    )


@dataclass(frozen=True, eq=False)
class Comparison:
    """The same trace through the service and the twin: ``rows`` (one per measure) and both runs."""

    service: ServiceRun
    twin: TwinResult
    service_latency: np.ndarray
    rows: list[dict]


def service_latency(run: ServiceRun, arrivals: Arrivals, config: ServiceConfig, prompts: list[str]) -> np.ndarray:
    """End-to-end latency of the service's requests by the twin's account: arrival to the
    edge's answer (measured), plus the link (eq. (3), the window's granted count) and the
    device's ``split`` steps at its ``L(1)``."""
    bits = np.array([8 * len(p.encode()) for p in prompts]) + run.intermediate_bits
    counts: dict[int, int] = {}
    for w, g in zip(run.window, run.granted):
        counts[w] = counts.get(w, 0) + int(g)
    b = np.array([counts[w] if g else 0 for w, g in zip(run.window, run.granted)])
    tx = transmission_latency(bits, b, config.eta, config.W_max)
    return (run.answered - run.arrived) + tx + run.split * local_step_latency(arrivals.k, arrivals.h)


def compare(arrivals: Arrivals, config: ServiceConfig, model, *, prompts: list[str]) -> Comparison:
    """Replay ``arrivals`` on the real service, then run the twin on the arrival times the
    service recorded, with its payload size and window phase, and its calibration scaled by
    the ratio of the engine's measured step time (a whole batched step of its loop) to the
    calibrated one during the run
    (``step_scale``: on a shared machine the steps run slower or faster than when calibrated).
    The rows compare the service with the twin (``twin``) and with the twin on the unscaled
    calibration (``twin_calibrated``)."""
    run = replay(arrivals, config, model, prompts=prompts)
    twin_arrivals = replace(arrivals, time=run.arrived, prompts=list(prompts))

    def twin_run(scale: float) -> TwinResult:
        k, h = run.edge_profile  # decided with the service's calibration, stepped at the run's pace
        decided_with = config.replace(edge_profile=(k, h)).site
        site = Site(decided_with, "loopback", run.intermediate_bits, run.phase_s, (k * scale, h * scale))
        return simulate(TwinConfig((site,)), twin_arrivals)

    twin, calibrated = twin_run(run.step_scale), twin_run(1.0)
    real = service_latency(run, arrivals, config, prompts)
    answer = run.answered - run.arrived

    def measures(latency, answers, granted):
        return {
            "latency_p50_s": np.percentile(latency, 50),
            "latency_p90_s": np.percentile(latency, 90),
            "answer_p50_s": np.percentile(answers, 50),
            "answer_p90_s": np.percentile(answers, 90),
            "granted": granted,
        }

    service = measures(real, answer, int(run.granted.sum()))
    ours = measures(twin.latency, twin.answer_s, int((twin.records.outcome == 1).sum()))
    plain = measures(calibrated.latency, calibrated.answer_s, int((calibrated.records.outcome == 1).sum()))
    rows = []
    for name, a in service.items():
        b, c = ours[name], plain[name]
        rows.append(
            {
                "measure": name,
                "basis": "measured + model" if name.startswith("latency") else "measured",
                "service": float(a),
                "twin": float(b),
                "relative_difference": float((b - a) / a) if a else math.nan,
                "twin_calibrated": float(c),
                "relative_difference_calibrated": float((c - a) / a) if a else math.nan,
            }
        )
    return Comparison(run, twin, real, rows)


def validation_case(edge_profile: tuple[float, float], *, requests: int = 70, utilization: float = 0.3, seed: int = 0):
    """The validation workload: ``N = 20`` steps, window 0.5 s, ``B_max`` 4, cache off, devices
    1x-16x slower than the edge's ``L(1)`` (α as the paper's generator draws it), Poisson at
    the rate that keeps the edge about ``utilization`` busy (at most 12 offloaded steps per
    request, batches of about 2) for about ``requests`` requests (12 to 30 s). On a loaded
    machine the calibration is slower, and so is the trace: the edge is never saturated, where
    a replay would be chaos (which window a request joins decides everything after).
    Returns ``(arrivals, service config, prompts)``."""
    from edgediff.twin.config import WorkloadConfig, make_site
    from edgediff.twin.workload import generate

    k, h = edge_profile
    edge_s_per_request = 12 * (k + h / 2)
    rate = min(8.0, utilization / edge_s_per_request)
    duration_s = float(np.clip(requests / rate, 12.0, 30.0))
    mix = {f"{s * (k + h)!r},0": 1.0 for s in (1, 1.5, 2, 4, 8, 16)}
    config = ServiceConfig(window_s=0.5, cache_gb=0, b_max=4, edge_profile=(k, h), seed=seed)
    site = make_site(profile={"k": k, "h": h}, window_s=0.5, cache_gb=0, b_max=4)
    workload = WorkloadConfig(rate=rate, duration_s=duration_s, steps=20, users=30, device_mix=mix)
    arrivals = generate(workload, site, seed=seed)
    prompts = [f"a handwritten digit {c % 10}" for c in arrivals.cls]
    return arrivals, config, prompts
