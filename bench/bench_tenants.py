"""One tenant floods, another sends its requests one after another: the other's latency
(submit to answer) alone, under the flood with the flooder held to a quota, and under the
same flood with no quota. The service runs in this process (the tiny model, a fixed edge
profile); the flooder's threads post a request every ``--pause`` seconds each, ignoring
``Retry-After``. Prints p50 / p95 of the measured tenant's latency and the flooder's answers.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_tenants.py [--requests 20] [--flooders 4]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from edgediff.runtime.models import load_model
from edgediff.service.config import ServiceConfig
from edgediff.service.embedding import HashEmbedder
from edgediff.service.engine import EdgeEngine
from edgediff.service.server import ServiceThread
from edgediff.service.tenants import load_keys_file

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"
BODY = {"alpha": 1.0, "profile": {"k": 0.5, "h": 0.01}, "steps": 8}


def run(model, quota: str, requests: int, flooders: int, pause_s: float):
    """The measured tenant's latencies and the flooder's answers by status code."""
    with tempfile.TemporaryDirectory() as folder:
        keys = Path(folder) / "keys.txt"
        keys.write_text(f"alice {ALICE}\nbob {BOB} {quota}\n")
        config = ServiceConfig(window_s=0.2, edge_profile=(0.01, 0.004), cache_gb=0, **load_keys_file(keys).options())
        service = ServiceThread(EdgeEngine(config, model=model, embedder=HashEmbedder())).start()
    codes: collections.Counter = collections.Counter()
    stop = threading.Event()

    def bob(i):
        with httpx.Client(base_url=service.url, timeout=30, headers={"X-API-Key": BOB}) as http:
            for n in itertools.count():
                if stop.is_set():
                    return
                codes[http.post("/v1/requests", json={**BODY, "prompt": f"flood {i}", "seed": n}).status_code] += 1
                time.sleep(pause_s)

    threads = [threading.Thread(target=bob, args=(i,)) for i in range(flooders)]
    for thread in threads:
        thread.start()
    latencies = []
    try:
        with httpx.Client(base_url=service.url, timeout=120, headers={"X-API-Key": ALICE}) as http:
            time.sleep(0.5 if flooders else 0)
            for n in range(requests):
                start = time.perf_counter()
                job = http.post("/v1/requests", json={**BODY, "prompt": "alice", "seed": n}).json()["id"]
                http.get(f"/v1/requests/{job}", params={"wait": 60})
                latencies.append(time.perf_counter() - start)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        service.stop()
    return latencies, codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="the measured tenant's requests per case")
    parser.add_argument("--flooders", type=int, default=4, help="the flooding tenant's threads")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between a flooder's posts")
    parser.add_argument("--quota", default="rps=2 concurrent=2", help="the flooder's quota (keys file options)")
    args = parser.parse_args()
    model = load_model("tiny")
    cases = [("alone", "", 0), (f"flood, bob {args.quota}", args.quota, args.flooders)]
    cases.append(("flood, no quota", "", args.flooders))
    for name, quota, flooders in cases:
        latencies, codes = run(model, quota, args.requests, flooders, args.pause)
        p50, p95 = np.percentile(latencies, [50, 95])
        answers = ", ".join(f"{code}: {count}" for code, count in sorted(codes.items())) or "-"
        alice = f"alice p50 {p50:.3f} s, p95 {p95:.3f} s ({len(latencies)} requests)"
        print(f"{name:>28}: {alice}; bob's answers {answers}")


if __name__ == "__main__":
    main()
