"""Screenshot of the live status page (docs/figures/service-status.png): ``edgediff serve``
on loopback, ``--seconds`` of traffic from closed-loop clients, then Debian's headless
``chromium`` renders ``/`` while the traffic goes on.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/status_screenshot.py [--seconds 40] [--out FILE.png]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from bench_service import ROOT, SUBJECTS, running_service


def traffic(url: str, index: int, stop: threading.Event) -> None:
    rng = np.random.default_rng(index)
    with httpx.Client(base_url=url, timeout=60) as client:
        n = 0
        while not stop.is_set():
            body = {
                "prompt": f"{SUBJECTS[rng.integers(len(SUBJECTS))]}, {rng.choice(['photo', 'sketch'])}",
                "steps": 20,
                "seed": index * 100_000 + n,
                "alpha": float(rng.uniform(1.0, 4.0)),
                "preset": f"row{rng.integers(3, 11)}",
            }
            n += 1
            answer = client.post("/v1/requests", json=body)
            if answer.status_code == 202:
                client.get(f"/v1/requests/{answer.json()['id']}/latent", params={"wait": 20})
            stop.wait(float(rng.uniform(0.0, 1.0)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="traffic before the screenshot (40)")
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures" / "service-status.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("needs chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    with running_service(["--window", "0.5", "--bmax", "8"]) as (_, url):
        stop = threading.Event()
        threads = [threading.Thread(target=traffic, args=(url, i, stop)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(args.seconds)
            command = [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1280,1250",
                "--virtual-time-budget=3000",
                f"--screenshot={args.out}",
                f"{url}/",
            ]
            subprocess.run(command, check=True, capture_output=True, timeout=120)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
