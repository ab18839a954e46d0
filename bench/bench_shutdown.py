"""Shutdown under load: ``--clients`` requests are submitted to ``edgediff serve`` (a
subprocess on loopback, window 2 s so they are still queued), SIGTERM is sent, and only then
does each client open a new connection and long-poll its latent. Prints how many clients got
their answer (200 latent or 409 "run locally") and what a request sent during the drain got.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_shutdown.py [--clients 50]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

BODY = {"prompt": "a cat", "steps": 20, "alpha": 2.0, "profile": {"k": 0.5, "h": 0.01}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    command = [sys.executable, "-m", "edgediff", "serve", "--port", str(port), "--window", "2", "--cache-gb", "0"]
    process = subprocess.Popen(
        [*command, "--edge-profile", "0.01,0.004"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with httpx.Client() as client:
            ids = [
                client.post(f"{url}/v1/requests", json={**BODY, "seed": i}).json()["id"] for i in range(args.clients)
            ]
        answers = [None] * len(ids)

        def poll(i: int) -> None:
            try:
                with httpx.Client(timeout=90) as client:
                    answers[i] = client.get(f"{url}/v1/requests/{ids[i]}/latent", params={"wait": 60}).status_code
            except httpx.HTTPError as err:
                answers[i] = type(err).__name__

        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        threads = [threading.Thread(target=poll, args=(i,)) for i in range(len(ids))]
        for thread in threads:
            thread.start()
        try:
            late = httpx.post(f"{url}/v1/requests", json=BODY).status_code
        except httpx.HTTPError as err:
            late = type(err).__name__
        for thread in threads:
            thread.join()
        process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
    answered = sum(a in (200, 409) for a in answers)
    print(f"{answered} of {len(ids)} clients got their answer after SIGTERM: {dict(Counter(answers))}")
    print(f"a request sent during the drain: {late}; exit status {process.returncode}")


if __name__ == "__main__":
    main()
