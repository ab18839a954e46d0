"""The edge's denoiser as the engine runs it: the model, its worker pool, the calibrated
``L_e(b, G) = k_e b / G + h_e`` and the ``G`` that is alive (with the workers' gauges).

Complete when constructed: the model is loaded (unless given), the pool started (with
``config.workers`` > 1) and the edge calibrated (unless ``config.edge_profile`` is given).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from edgediff.service.config import ServiceConfig
from edgediff.service.metrics import ServiceMetrics

if TYPE_CHECKING:
    from edgediff.runtime.workers import WorkerPool

log = logging.getLogger(__name__)


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread its Python name (or ``name``) in the OS too, cut to Linux's 15
    bytes, so that ``top -H`` and ``/proc/PID/task/*/comm`` tell the engine's threads apart
    (the benchmark's CPU split reads them); nothing where ``/proc`` is missing."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
            comm.write((name or threading.current_thread().name)[:15])
    except OSError:
        pass


def calibration_batches(b_max: int) -> tuple[int, ...]:
    """The batch sizes the start-up calibration times: 1 to ``B_max`` (at least 8), since a
    step's cost grows faster than linearly past small batches on a CPU (compare ``edgediff
    calibrate --batches 1,2,4,8`` with ``--batches 1,4,8,16,20``), and the fit is the law the
    windows are planned with at the batches the edge really runs."""
    top = max(8, b_max)
    return tuple(sorted({1, 2, 4, 8, top // 2, top}))


class EdgeDenoiser:
    """The model, the worker pool this edge started (``pool``, None without one), the
    calibrated ``k, h``, the latent's shape and payload size."""

    def __init__(self, config: ServiceConfig, metrics: ServiceMetrics, model=None):
        from edgediff.runtime.executor import initial_state
        from edgediff.runtime.models import ModelSpec, load_model
        from edgediff.runtime.payload import payload_bits
        from edgediff.runtime.request import GenerationRequest

        self.config, self.metrics = config, metrics
        self.model = (
            model
            if model is not None
            else load_model(ModelSpec(config.model, device=config.device, dtype=config.dtype))
        )
        self.pool: WorkerPool | None = None
        self._start_workers()
        try:
            profile = self._calibrate() if config.edge_profile is None else config.edge_profile
            self.k, self.h = float(profile[0]), float(profile[1])
        except BaseException:
            self.close()
            raise
        probe = initial_state(self.model, GenerationRequest("probe", steps=1))
        self.latent_shape = tuple(probe.latent.shape)  # type: ignore[attr-defined]  # a torch tensor
        self.intermediate_bits = payload_bits(probe)
        if self.pool is not None:
            log.info(
                "%d denoiser workers on %s, %d thread(s) each: L_e(b, G) = %.4g b / G + %.4g s",
                self.live_gpus(),
                ", ".join(w.device for w in self.pool.info()),
                config.worker_threads,
                self.k,
                self.h,
            )

    def _start_workers(self) -> None:
        """``config.workers`` > 1: start the worker pool and route the model's denoiser calls to it."""
        cfg = self.config
        if cfg.workers > 1 and self.model.workers is None:
            from edgediff.runtime.workers import WorkerPool

            self.pool = WorkerPool(self.model.backend, cfg.workers, cfg.worker_threads)
            self.model.workers = self.pool
        self.metrics.workers.set(cfg.workers)
        for index in range(cfg.workers if self.pool is not None else 1):
            self.metrics.worker_alive.labels(str(index))
            self.metrics.worker_rows.labels(str(index))
        self.live_gpus()  # sets the alive gauges

    def close(self) -> None:
        if self.pool is not None:
            if self.model.workers is self.pool:
                self.model.workers = None
            self.pool.close()
            self.live_gpus()  # every worker's gauge to 0

    def live_gpus(self) -> int:
        """The edge's ``G`` now: the workers alive, or ``config.gpus`` without a pool. With every
        worker gone the denoiser falls back to this process (``G = 1``). Keeps the workers'
        gauges current."""
        metrics = self.metrics
        if self.pool is None:
            metrics.workers_alive.set(1)
            metrics.worker_alive.labels("0").set(1)
            return self.config.gpus
        for worker in self.pool.info():
            metrics.worker_alive.labels(str(worker.index)).set(worker.alive)
            metrics.worker_rows.labels(str(worker.index)).set(worker.rows)
        alive = self.pool.alive
        metrics.workers_alive.set(alive)
        if alive:
            return alive
        if self.model.workers is self.pool:
            log.error("all %d denoiser workers are gone; the denoiser runs in the service's process", self.pool.size)
            self.model.workers = None
        return 1

    def _calibrate(self) -> tuple[float, float]:
        """``k_e, h_e`` of ``L_e(b, G) = k_e b / G + h_e``, timed on the edge as it runs (through
        its workers, if any: the fitted slope there is ``k_e / G``)."""
        from edgediff.runtime.calibrate import CalibrationConfig, calibrate

        pooled = self.live_gpus() if self.pool is not None else 1  # the G the timed steps were split over
        profile = calibrate(
            self.model, CalibrationConfig(batches=calibration_batches(self.config.batch_limit), repeats=3, warmup=1)
        )
        k, h = profile.k * pooled, profile.h
        if k <= 0 or k / self.config.gpus + h <= 0:  # noisy timings on a loaded machine
            per_member = pooled * float(np.median(np.asarray(profile.step_latency_s) / np.asarray(profile.batches)))
            log.warning("calibration fit k = %.3g, h = %.3g is unusable; using k = %.3g, h = 0", k, h, per_member)
            k, h = per_member, 0.0
        return k, h

    def ideal_step_s(self, batch: int) -> float:
        """The calibrated time of one step of ``batch`` members with the ``G`` alive now."""
        return self.k * batch / self.live_gpus() + self.h

    def workers_info(self) -> dict:
        """The denoiser workers: configured, alive, threads each and one entry per worker
        (index, pid, device, alive, rows computed); without a pool, this process."""
        cfg = self.config
        if self.pool is None:
            each = [{"index": 0, "pid": os.getpid(), "device": self.model.device, "alive": True, "rows": None}]
            return {"configured": cfg.workers, "alive": 1, "threads": None, "each": each}
        each = [asdict(w) for w in self.pool.info()]
        alive = sum(bool(w["alive"]) for w in each)
        return {"configured": cfg.workers, "alive": alive, "threads": cfg.worker_threads, "each": each}


class EdgeBatch:
    """The runtime's batched executor as the window scheduler's executor, counting the steps
    it launched (a fresh executor takes over after a step failed as a whole)."""

    def __init__(self, model):
        from edgediff.runtime.executor import BatchedExecutor

        self.model, self.executor, self.steps = model, BatchedExecutor(model), 0
        self.in_flight = 0  # members of the step launched and not yet completed

    def __len__(self) -> int:
        return len(self.executor)

    def add(self, job, split: int, start) -> None:
        self.executor.add(job.id, job.request, split, start, conditioning=job.conditioning)

    def reset(self) -> None:
        from edgediff.runtime.executor import BatchedExecutor

        self.executor = BatchedExecutor(self.model)
