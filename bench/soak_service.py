"""Soak of the edge service on loopback: unique prompts for ``--minutes`` (30), so the latent
cache only grows; does throughput hold up, and is the memory growth the cache's?

``edgediff serve`` runs in a subprocess (tiny model, real MiniLM embedder, ``--cache-gb``);
``--clients`` closed-loop clients (bounded load: each waits for its answer before sending the
next request) send prompts of random words (all distinct, so nearly every granted request
misses and stores ``S*`` new entries), slow device presets (``row7``..``row10``, mostly
granted). Every ``--interval`` seconds it samples: answers per second, edge member-steps per
second, p50 arrival-to-answer, cache entries and bytes, the server's RSS.

At the end: throughput over the last fifth of the samples against the first fifth (target:
within 10 %), and the RSS growth from the first sample against the bytes the cache accounts for
in the same time (per entry).

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/soak_service.py [--minutes 30] [--clients 32] [--interval 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

import httpx
import numpy as np
from bench_service import RawHttp, process_tree, running_service

WORDS = (
    "red blue green golden silver ancient modern tiny giant quiet stormy sunny misty frozen burning "
    "fox owl whale tiger horse dragon robot castle bridge tower forest river desert island harbor "
    "garden city village mountain canyon meadow lighthouse train ship balloon market library temple "
    "at dawn at dusk at night in winter in spring under rain in fog oil painting watercolor "
    "photograph sketch mosaic pixel art cinematic minimalist baroque surreal"
).split()


def rss_bytes(pid: int) -> int:
    """Resident bytes of the service: ``pid`` and its descendants (the engine process holds the cache)."""
    total = 0
    for current in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{current}/status") as f:
            total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    return total


async def client(url: str, index: int, args, deadline: float, answers: list) -> None:
    host, port = url.removeprefix("http://").split(":")
    http = RawHttp(host, int(port))
    rng = np.random.default_rng([args.seed, index])
    n = 0
    while time.perf_counter() < deadline:
        words = rng.choice(WORDS, size=6)
        body = {
            "prompt": f"{' '.join(words)} #{index}-{n}",  # distinct from every other prompt
            "steps": args.steps,
            "seed": index * 1_000_000 + n,
            "alpha": float(rng.uniform(2.0, 4.0)),
            "preset": f"row{rng.integers(7, 11)}",
        }
        n += 1
        start = time.perf_counter()
        status, headers, answer = await http.request("POST", "/v1/requests", json.dumps(body).encode())
        if status == 503:
            await asyncio.sleep(float(headers.get("retry-after", 1)))
            continue
        if status != 202:
            raise RuntimeError(f"submit answered {status}: {answer[:200]!r}")
        job = json.loads(answer)["id"]
        while (status := (await http.request("GET", f"/v1/requests/{job}/latent?wait=20"))[0]) == 202:
            pass
        if status not in (200, 409):
            raise RuntimeError(f"latent answered {status}")
        answers.append((time.perf_counter(), time.perf_counter() - start, status == 200))
    await http.close()


async def sampler(url: str, pid: int, args, deadline: float, answers: list, samples: list) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        last_t, last_answers, last = time.perf_counter(), 0, (await http.get("/v1/info")).json()["stats"]
        while time.perf_counter() < deadline:
            await asyncio.sleep(args.interval)
            info = (await http.get("/v1/info")).json()
            now, stats = time.perf_counter(), info["stats"]
            window = answers[last_answers:]
            sample = {
                "t": now,
                "answers_per_s": len(window) / (now - last_t),
                "granted_per_s": sum(a[2] for a in window) / (now - last_t),
                "member_steps_per_s": (stats["member_steps"] - last["member_steps"]) / (now - last_t),
                "p50_s": float(np.median([a[1] for a in window])) if window else float("nan"),
                "entries": info["cache"]["entries"],
                "cache_bytes": info["cache"]["bytes"],
                "rss": rss_bytes(pid),
            }
            samples.append(sample)
            print(
                f"{sample['t'] - samples[0]['t'] + args.interval:7.0f} s  answers {sample['answers_per_s']:6.2f}/s  "
                f"granted {sample['granted_per_s']:6.2f}/s  member-steps {sample['member_steps_per_s']:7.1f}/s  "
                f"p50 {sample['p50_s']:6.3f} s  cache {sample['entries']:7d} entries "
                f"{sample['cache_bytes'] / 1e6:8.1f} MB  RSS {sample['rss'] / 1e6:8.1f} MB",
                flush=True,
            )
            last_t, last_answers, last = now, len(answers), stats


async def soak(url: str, pid: int, args) -> list:
    deadline = time.perf_counter() + args.minutes * 60
    answers, samples = [], []
    await asyncio.gather(
        sampler(url, pid, args, deadline, answers, samples),
        *(client(url, i, args, deadline, answers) for i in range(args.clients)),
    )
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples (30)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--bmax", type=int, default=20)
    parser.add_argument("--cache-gb", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = ["--window", str(args.window), "--bmax", str(args.bmax), "--cache-gb", str(args.cache_gb)]
    print(
        f"soak: {args.minutes:g} min, {args.clients} closed-loop clients, unique prompts, N = {args.steps}, "
        f"window {args.window} s, B_max {args.bmax}, cache {args.cache_gb:g} GB, loopback"
    )
    with running_service(options) as (server, url):
        samples = asyncio.run(soak(url, server.pid, args))
    if len(samples) < 2:
        print("too short: fewer than two samples")
        return 1
    first, last = samples[0], samples[-1]
    span = max(1, len(samples) // 5)  # the first and last fifth of the samples: one busy minute is not a trend
    for key, name in (("answers_per_s", "answers/s"), ("member_steps_per_s", "member-steps/s")):
        start = float(np.mean([s[key] for s in samples[:span]]))
        end = float(np.mean([s[key] for s in samples[-span:]]))
        print(
            f"throughput ({name}): first {span} sample(s) {start:.2f}, last {span} {end:.2f}: "
            f"{end / start if start else float('nan'):.1%} of the start"
        )
    entries = last["entries"] - first["entries"]
    if entries > 0:
        rss = last["rss"] - first["rss"]
        accounted = last["cache_bytes"] - first["cache_bytes"]
        print(
            f"memory from the first sample to the last: RSS {rss / 1e6:+.1f} MB, cache accounts "
            f"{accounted / 1e6:+.1f} MB for {entries:+d} entries: RSS {rss / entries:.0f} B per new entry against "
            f"{accounted / entries:.0f} B accounted ({rss / accounted:.2f}x)"
        )
    print(f"p50 arrival -> answer: first interval {first['p50_s']:.3f} s, last {last['p50_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
