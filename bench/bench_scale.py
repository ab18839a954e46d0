"""Scaling out the edge service (issue "Scale out"): figures printed, one run each.

``bench_front_door()``: what the Ray front door adds to a request. One site (tiny model,
fixed edge profile, no cache) runs in a Ray actor on a local cluster (this process,
loopback) behind the front door (``edgediff.service.cluster``); the same configuration runs
as a direct single-process service in this process. Calls alternate between the two over
keep-alive connections: ``POST /v1/requests`` (a fast device, so every request is denied at
its window and no model work competes) and ``GET /v1/requests/{id}`` (``wait=0``). Printed:
p50 and p90 per call and path, and the front door's added p50 (target <= 5 ms).

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_scale.py [--calls 300]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per path and kind")
    args = parser.parse_args()
    bench_front_door(args.calls)


if __name__ == "__main__":
    main()
