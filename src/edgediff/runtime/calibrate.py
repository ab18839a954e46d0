"""Calibration: time batched denoising steps and fit ``L(b) = k*b + h`` (paper Fig. 3).

One "step" of batch ``b`` is one :meth:`BatchedExecutor.step` with ``b`` members, i.e. what
the edge really pays per denoising step (UNet forward of ``2b`` rows with guidance, plus the
members' scheduler updates). The fit is ordinary least squares; R^2 says how linear the
device is. The profile's ``k`` and ``h`` (seconds) go into an instance file's ``edge`` or a
user row (instance file, docs/formats.md).

:func:`calibrate_workers` times the same steps through a
:class:`~edgediff.runtime.workers.WorkerPool` of each worker count ``G`` and fits the paper's
edge law ``L_e(b, G) = k_e b / G + h_e`` jointly over every ``(b, G)``.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgediff.runtime.executor import BatchedExecutor
from edgediff.runtime.models import DiffusionModel
from edgediff.runtime.request import GenerationRequest

log = logging.getLogger(__name__)

DEFAULT_BATCHES = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class CalibrationConfig:
    """How to time: batch sizes, timed steps per batch size (median taken), untimed warm-up
    steps, and the guidance scale of the timed requests (guidance doubles the UNet rows)."""

    batches: tuple[int, ...] = DEFAULT_BATCHES
    repeats: int = 7
    warmup: int = 2
    guidance_scale: float = 7.5

    def __post_init__(self):
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"batches must be positive integers, got {self.batches}")
        if len(set(self.batches)) < 2:
            raise ValueError("calibration needs at least two different batch sizes to fit k and h")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")


@dataclass(frozen=True)
class Profile:
    """A measured device profile: ``L(b) = k*b + h`` seconds per denoising step."""

    k: float
    h: float
    r2: float
    model: str
    device: str
    batches: list[int]
    step_latency_s: list[float]
    repeats: int
    guidance: bool
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def fit_linear(batches, latency) -> tuple[float, float, float]:
    """Least-squares ``latency = k*b + h``; returns ``(k, h, R^2)``."""
    b = np.asarray(batches, dtype=float)
    y = np.asarray(latency, dtype=float)
    k, h = np.polyfit(b, y, 1)
    residual = float(np.sum((y - (k * b + h)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return float(k), float(h), r2


def filled_executor(model: DiffusionModel, batch: int, config: CalibrationConfig) -> BatchedExecutor:
    # distinct prompts and seeds, so nothing is shared across rows; enough steps for all rounds
    executor = BatchedExecutor(model)
    for i in range(batch):
        request = GenerationRequest(
            f"calibration prompt {i}",
            steps=config.warmup + config.repeats,
            seed=i,
            guidance_scale=config.guidance_scale,
        )
        executor.add(i, request, 0)
    for _ in range(config.warmup):
        executor.step()
    return executor


def timed_step(model: DiffusionModel, executor: BatchedExecutor) -> float:
    import torch

    cuda = model.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    executor.step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_steps(model: DiffusionModel, batch: int, config: CalibrationConfig) -> float:
    """Median seconds of one batched executor step with ``batch`` members."""
    executor = filled_executor(model, batch, config)
    return float(np.median([timed_step(model, executor) for _ in range(config.repeats)]))


def time_batches(model: DiffusionModel, config: CalibrationConfig) -> list[float]:
    """Median step seconds for every batch size, timed round-robin (one step of each size
    per round) so that a burst of load from other processes hits all sizes alike."""
    executors = {b: filled_executor(model, b, config) for b in config.batches}
    samples = {b: [] for b in config.batches}
    for _ in range(config.repeats):
        for b, executor in executors.items():
            samples[b].append(timed_step(model, executor))
    return [float(np.median(samples[b])) for b in config.batches]


def calibrate(model: DiffusionModel, config: CalibrationConfig = CalibrationConfig()) -> Profile:
    """Time every batch size in ``config`` on ``model`` and fit the profile."""
    import torch

    latency = time_batches(model, config)
    for batch, seconds in zip(config.batches, latency):
        log.info("batch %d: %.4f s per step", batch, seconds)
    k, h, r2 = fit_linear(config.batches, latency)
    device = model.device if model.device != "cpu" else f"cpu ({platform.processor() or platform.machine()})"
    if model.device.startswith("cuda"):
        device = torch.cuda.get_device_name(torch.device(model.device))
    return Profile(
        k=k,
        h=h,
        r2=r2,
        model=model.name,
        device=device,
        batches=list(config.batches),
        step_latency_s=latency,
        repeats=config.repeats,
        guidance=config.guidance_scale > 1,
        threads=torch.get_num_threads(),
    )


@dataclass(frozen=True)
class WorkersProfile:
    """``L_e(b, G) = k_e b / G + h_e`` (``k``, ``h``; ``r2`` its R²), fitted on the steps of
    ``profiles``: one :class:`Profile` per worker count in ``workers``, each timed through a
    pool of that many workers of ``worker_threads`` threads (its own ``k`` is ``k_e / G``)."""

    k: float
    h: float
    r2: float
    workers: list[int]
    worker_threads: int
    profiles: list[Profile]

    @classmethod
    def fit(cls, workers: Sequence[int], profiles: Sequence[Profile], threads: int) -> WorkersProfile:
        """The least-squares ``k_e, h_e`` over every ``(b / G, seconds)`` of ``profiles``
        (``profiles[i]`` timed with ``workers[i]`` workers)."""
        per_gpu = [b / g for g, p in zip(workers, profiles) for b in p.batches]
        latency = [t for p in profiles for t in p.step_latency_s]
        k, h, r2 = fit_linear(per_gpu, latency)
        return cls(k, h, r2, list(workers), threads, list(profiles))

    def to_dict(self) -> dict:
        first = self.profiles[0]
        return {
            "k": self.k,
            "h": self.h,
            "r2": self.r2,
            "model": first.model,
            "device": first.device,
            "workers": self.workers,
            "worker_threads": self.worker_threads,
            "per_workers": [p.to_dict() for p in self.profiles],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def calibrate_workers(
    model: DiffusionModel,
    workers: Sequence[int],
    config: CalibrationConfig = CalibrationConfig(),
    threads: int = 1,
) -> WorkersProfile:
    """Time ``config``'s batch sizes through a worker pool of each count in ``workers`` (one
    pool at a time: a GPU holds one replica) and fit ``L_e(b, G) = k_e b / G + h_e``."""
    from edgediff.runtime.workers import WorkerPool

    profiles, previous = [], model.workers
    for count in workers:
        with WorkerPool(model.backend, count, threads) as pool:
            model.workers = pool
            try:
                profiles.append(replace(calibrate(model, config), threads=threads))
            finally:
                model.workers = previous
    return WorkersProfile.fit(workers, profiles, threads)
