"""The service half of ``edgediff demo``: the edge in-process on a loopback port, one window
of 8 simulated users, decisions, predicted vs measured latency, the images as a PNG grid.

The users' devices are this machine's CPU slowed down: user ``i`` declares the per-step
latency ``s_i * L(1)`` of the ``tiny`` model calibrated here. Its measured latency is the
wall time from submitting to holding the edge's answer (decision, latent: measured over
HTTP, window wait included) plus ``s_i`` times the wall time of its local steps and decoding,
run one user at a time on this CPU (eight simulated devices would otherwise share its two
cores). The edge is the same CPU running the batched executor, calibrated at start-up
(G = 1), so predicted and measured are like for like.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SLOWDOWNS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
PROMPTS = tuple(f"a handwritten digit {d}" for d in (3, 1, 4, 1, 5, 9, 2, 6))  # what the embedded model knows


def run_service_demo(out: Path, seed: int = 0, steps: int = 20, window_s: float = 1.0, b_max: int = 6) -> str:
    """Run one 8-user window through the real service; write the grid to ``out``; return the text."""
    from edgediff.offload.report import format_table
    from edgediff.runtime.calibrate import CalibrationConfig, calibrate
    from edgediff.runtime.images import labelled_grid
    from edgediff.runtime.models import load_model
    from edgediff.runtime.request import GenerationRequest
    from edgediff.runtime.split import finish
    from edgediff.service.client import EdgeClient, request_edge
    from edgediff.service.config import ServiceConfig
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.server import ServiceThread

    model = load_model("tiny")
    device = calibrate(model, CalibrationConfig(batches=(1, 2), repeats=5, warmup=1))
    local_step = max(device.k + device.h, 1e-4)  # L(1) of this CPU
    rng = np.random.default_rng(seed)
    alphas = rng.uniform(0.5, 4.0, size=len(SLOWDOWNS))
    config = ServiceConfig(window_s=window_s, b_max=b_max, cache_gb=0, gpus=1)
    engine = EdgeEngine(config, model=model)
    gate = threading.Barrier(len(SLOWDOWNS))

    device_lock = threading.Lock()

    def user(i: int, url: str):
        s = SLOWDOWNS[i]
        request = GenerationRequest(PROMPTS[i], steps=steps, seed=seed + i)
        with EdgeClient(url) as client:
            gate.wait()  # everyone asks within the same window
            answer = request_edge(client, request, model, alpha=float(alphas[i]), profile=(s * local_step, 0.0))
        with device_lock:  # one simulated device at a time on this CPU
            start = time.perf_counter()
            image = finish(model, answer.state)
            local_s = time.perf_counter() - start
        return answer, image, answer.elapsed_s + s * local_s

    with ServiceThread(engine) as service:
        with ThreadPoolExecutor(len(SLOWDOWNS)) as pool:
            outcomes = list(pool.map(lambda i: user(i, service.url), range(len(SLOWDOWNS))))
    rows = []
    for i, (answer, _, measured) in enumerate(outcomes):
        st = answer.status
        rows.append(
            [
                f"u{i}",
                f"{SLOWDOWNS[i]:g}x",
                SLOWDOWNS[i] * local_step * 1000,
                float(alphas[i]),
                "granted" if st["granted"] else "run locally",
                st["split"],
                st["offloaded_steps"],
                st["predicted_latency_s"],
                measured,
            ]
        )
    labels = [
        (f"u{i}, device {row[1]}", f"granted: split {row[5]}" if row[4] == "granted" else "denied: all local")
        for i, row in enumerate(rows)
    ]
    labelled_grid([image for _, image, _ in outcomes], labels).save(out)
    windows = sorted({a.status["window"] for a, _, _ in outcomes})
    head = (
        f"edgediff service demo: tiny model on this CPU, edge L(b) = {engine.edge_k * 1000:.2f} b + "
        f"{engine.edge_h * 1000:.2f} ms per step (calibrated, G = 1), device L(1) = {local_step * 1000:.2f} ms, "
        f"{len(SLOWDOWNS)} users, N = {steps}, B_max = {b_max}, window {window_s:g} s (window {windows}), "
        f"policy {config.policy}, seed {seed}"
    )
    table = format_table(
        ["user", "device", "L_i(1)_ms", "alpha", "decision", "split", "offloaded", "predicted_s", "measured_s"], rows
    )
    return f"{head}\n{table}\nwrote {out}"
