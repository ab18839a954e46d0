"""Scaling out the edge service (issue "Scale out"): figures printed, one run each.

``bench_front_door()``: what the Ray front door adds to a request. One site (tiny model,
fixed edge profile, no cache) runs in a Ray actor on a local cluster (this process,
loopback) behind the front door (``edgediff.service.cluster``); the same configuration runs
as a direct single-process service in this process. Calls alternate between the two over
keep-alive connections: ``POST /v1/requests`` (a fast device, so every request is denied at
its window and no model work competes) and ``GET /v1/requests/{id}`` (``wait=0``). Printed:
p50 and p90 per call and path, and the front door's added p50 (target <= 5 ms).

``bench_workers()``: member-steps/s of the batched executor at ``--workers 1`` (the
service's default: the denoiser in the calling process) against a pool of 2 worker
processes (``edgediff.runtime.workers``, what ``serve --workers 2`` runs), one torch thread
each, at batch sizes >= 8 with guidance; a pool of 1 worker process is timed too (the
inter-process cost alone). The model is the tiny architecture with random weights at
``--size`` pixels (64: 4x32x32 latents; the shipped 16x16 model's step is too small for the
pool's per-step messaging to pay off). Configurations are timed round-robin (a burst of load
from other processes hits all alike); printed: the median member-steps/s of each, the ratio
2 workers / 1 (target >= 1.6x on a 2-core machine; batch sizes >= 8 count, batch 4 feeds the
fit), the law ``L_e(b, G) = k_e b / G + h_e`` fitted over the pools of 1 and 2 worker
processes (step seconds ``b / rate``) with its R², and the load average before and after. A
control prints the machine's own ceiling: the throughput of two one-thread torch matmul
processes run at once against one alone (2.0x on two free cores).

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_scale.py [--calls 300] [--only front|workers]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

EDGE = (0.01, 0.004)
BODY = {"prompt": "a lighthouse", "steps": 8, "alpha": 1.0, "profile": {"k": 0.0001, "h": 0.0001}}


def bench_front_door(calls: int = 300) -> dict:
    import httpx
    import ray

    from edgediff.runtime.models import load_model
    from edgediff.service.cluster import FrontDoor, SiteSpec, front_door_thread
    from edgediff.service.config import ServiceConfig
    from edgediff.service.engine import EdgeEngine
    from edgediff.service.server import ServiceThread

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    config = ServiceConfig(edge_profile=EDGE, cache_gb=0, window_s=0.5, queue_limit=10_000, linger_s=0)
    times = {(path, call): [] for path in ("direct", "front door") for call in ("submit", "status")}
    try:
        with (
            ServiceThread(EdgeEngine(config, model=load_model("tiny"))) as direct,
            front_door_thread(FrontDoor(config, [SiteSpec("site0", config)], "local")) as front,
            httpx.Client(base_url=direct.url, timeout=30) as to_direct,
            httpx.Client(base_url=front.url, timeout=30) as to_front,
        ):
            clients = {"direct": to_direct, "front door": to_front}
            for i in range(calls + 20):  # the first 20 of each warm up
                for path, http in clients.items():
                    start = time.perf_counter()
                    answer = http.post("/v1/requests", json={**BODY, "seed": i})
                    submitted = time.perf_counter()
                    assert answer.status_code == 202, answer.text
                    assert http.get(f"/v1/requests/{answer.json()['id']}").status_code == 200
                    polled = time.perf_counter()
                    if i >= 20:
                        times[path, "submit"].append(submitted - start)
                        times[path, "status"].append(polled - submitted)
    finally:
        ray.shutdown()
    result = {}
    print(f"front door vs direct site, {calls} calls each (ms):")
    print(f"  {'call':<8}{'path':<12}{'p50':>8}{'p90':>8}")
    for (path, call), values in times.items():
        p50, p90 = np.percentile(np.array(values) * 1e3, [50, 90])
        result[path, call] = p50
        print(f"  {call:<8}{path:<12}{p50:8.2f}{p90:8.2f}")
    for call in ("submit", "status"):
        added = result["front door", call] - result["direct", call]
        verdict = "meets" if added <= 5.0 else "MISSES"
        print(f"  front door adds {added:.2f} ms p50 to {call} ({verdict} the <= 5 ms target)")
    return result


MATMUL = (
    "import time, torch; torch.set_num_threads(1); x = torch.randn(512, 512); t = time.perf_counter()\n"
    "for _ in range(300): x @ x\n"
    "print(time.perf_counter() - t)"
)


def parallel_ceiling() -> float:
    """Throughput of two one-thread matmul processes at once over one alone."""
    import subprocess
    import sys

    def run(count: int) -> list[float]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs = [
            subprocess.Popen([sys.executable, "-c", MATMUL], stdout=subprocess.PIPE, env=env) for _ in range(count)
        ]
        return [float(p.communicate()[0]) for p in procs]

    (alone,) = run(1)
    return 2 * alone / max(run(2))


def bench_workers(batches=(4, 8, 16), size: int = 64, rounds: int = 7, steps: int = 3) -> dict:
    import torch

    from edgediff.runtime.calibrate import CalibrationConfig, filled_executor, fit_linear
    from edgediff.runtime.models import ModelSpec, load_model
    from edgediff.runtime.tiny import TinyConfig
    from edgediff.runtime.workers import WorkerPool

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    model = load_model(ModelSpec("tiny-random", tiny=TinyConfig(image_size=size)))
    pools = {
        "1 (in process)": None,
        "1 worker process": WorkerPool(model.backend, 1),
        "2 workers": WorkerPool(model.backend, 2),
    }
    config = CalibrationConfig(batches=tuple(batches), repeats=rounds * steps, warmup=1)
    rates = {(name, b): [] for name in pools for b in batches}
    try:
        executors = {}
        for name, pool in pools.items():
            model.workers = pool
            executors.update({(name, b): filled_executor(model, b, config) for b in batches})
        for _ in range(rounds):
            for (name, b), executor in executors.items():
                model.workers = pools[name]
                start = time.perf_counter()
                for _ in range(steps):
                    executor.step()
                rates[name, b].append(b * steps / (time.perf_counter() - start))
    finally:
        model.workers = None
        for pool in pools.values():
            if pool is not None:
                pool.close()
    load_after = os.getloadavg()
    cores = len(os.sched_getaffinity(0))
    print(f"member-steps/s, {size}x{size} tiny-random model, guidance on, 1 thread per worker, {cores} cores:")
    print(f"  {'batch':<7}" + "".join(f"{name:>20}" for name in pools) + f"{'2 workers / 1':>16}")
    result = {}
    for b in batches:
        medians = {name: float(np.median(rates[name, b])) for name in pools}
        ratio = medians["2 workers"] / medians["1 (in process)"]
        result[b] = (medians, ratio)
        verdict = "" if b < 8 else " (meets the >= 1.6x target)" if ratio >= 1.6 else " (MISSES the >= 1.6x target)"
        row = "".join(f"{medians[name]:20.1f}" for name in pools)
        print(f"  {b:<7}{row}{ratio:15.2f}x{verdict}")
    pooled = ((1, "1 worker process"), (2, "2 workers"))
    points = [(b / g, b / result[b][0][name]) for g, name in pooled for b in batches]
    k_e, h_e, r2 = fit_linear(*zip(*points))
    print(
        f"  L_e(b, G) = k_e b / G + h_e over 1 and 2 worker processes: k_e = {k_e * 1e3:.2f} ms, "
        f"h_e = {h_e * 1e3:.2f} ms, R^2 = {r2:.3f}"
    )
    ceiling = parallel_ceiling()
    print(f"  control: two 1-thread matmul processes at once give {ceiling:.2f}x the throughput of one alone")
    print(f"  load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per path and kind")
    parser.add_argument("--only", choices=("front", "workers"), help="run one benchmark (default: both)")
    parser.add_argument("--size", type=int, default=64, help="workers: the model's image size in pixels")
    args = parser.parse_args()
    if args.only != "workers":
        bench_front_door(args.calls)
    if args.only != "front":
        bench_workers(size=args.size)


if __name__ == "__main__":
    main()
