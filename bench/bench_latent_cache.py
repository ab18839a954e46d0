"""Speed and memory of the service's latent cache (``edgediff.service.latent_cache``) at
100k entries: lookup, insert, insert with eviction; RSS growth against the bytes it accounts.

Entries are made as the service makes them: the tiny model's latent (1, 4, 8, 8) float32,
a 384-dimensional float32 prompt embedding (MiniLM's size), ``N = 20`` so ``S* = 6``, and a
granted request that misses stores steps 1..6 under one embedding (``--steps-per-prompt``).
Embeddings are random unit vectors (no structure for an index to exploit; a new prompt
misses). ``--steps-per-prompt 1`` is the worst case: one embedding row per entry.

Timed on the calling thread (as on the engine thread), ``OMP_NUM_THREADS=1``:

- lookup: a new prompt (miss) and a stored prompt with a little noise (hit);
- insert: another step of a prompt already stored (no product), and a new prompt's first step;
- insert + evict: the cache full, every insert evicts (``lcbfu``).

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_latent_cache.py [--entries 100000] [--steps-per-prompt 6]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np
import torch

from edgediff.runtime.request import GenerationRequest, LatentState
from edgediff.service.latent_cache import LatentCache

DIM, SHAPE, STEPS, S_STAR = 384, (1, 4, 8, 8), 20, 6


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def unit_rows(rng, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def state(request: GenerationRequest, step: int, value: float) -> LatentState:
    # a fresh scheduler-config dict each time, as the executor makes one per member
    config = {"num_train_timesteps": 1000, "beta_schedule": "linear", "prediction_type": "epsilon"}
    return LatentState(torch.full(SHAPE, value), request, STEPS - step, "DDIMScheduler", config)


def fill(cache: LatentCache, embeddings: np.ndarray, steps_per_prompt: int, first: int = 0) -> int:
    inserted = 0
    for i, e in enumerate(embeddings):
        request = GenerationRequest(f"prompt {first + i}", steps=STEPS, seed=first + i)
        for step in range(1, steps_per_prompt + 1):
            inserted += cache.insert(e, state(request, step, float(i)), step, request.prompt)
    return inserted


def timed(fn, args) -> np.ndarray:
    out = np.empty(len(args))
    for i, a in enumerate(args):
        start = time.perf_counter()
        fn(a)
        out[i] = time.perf_counter() - start
    return out * 1e3


def summary(name: str, ms: np.ndarray) -> str:
    return (
        f"  {name:<44} median {np.median(ms):7.3f} ms   p99 {np.percentile(ms, 99):7.3f} ms   "
        f"max {ms.max():7.3f} ms   ({len(ms)} calls)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--steps-per-prompt", type=int, default=S_STAR, choices=range(1, S_STAR + 1))
    parser.add_argument("--calls", type=int, default=500, help="timed calls per operation (500)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(1)
    per_entry = int(np.prod(SHAPE)) * 4 + DIM * 4
    prompts = -(-args.entries // args.steps_per_prompt)
    cache = LatentCache(args.entries * per_entry, eviction="lcbfu")
    embeddings = unit_rows(rng, prompts)

    gc.collect()
    rss0 = rss_bytes()
    start = time.perf_counter()
    inserted = fill(cache, embeddings, args.steps_per_prompt)
    fill_s = time.perf_counter() - start
    gc.collect()
    rss1 = rss_bytes()
    ((group),) = cache._groups.values()
    print(
        f"latent cache: {len(cache)} entries ({inserted} inserted in {fill_s:.1f} s), {group.n_rows} embedding rows "
        f"({args.steps_per_prompt} steps per prompt), latent {SHAPE} float32, embedding {DIM} float32, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    accounted = cache.bytes_used / len(cache)
    grown = (rss1 - rss0) / len(cache)
    print(
        f"memory: accounted {accounted:.0f} B/entry (latent + embedding, what --cache-gb counts); "
        f"RSS grew {grown:.0f} B/entry ({(rss1 - rss0) / 1e6:.1f} MB for {len(cache)} entries, "
        f"{grown / accounted:.2f}x the accounted bytes)"
    )

    print("per call:")
    misses = unit_rows(rng, args.calls)
    stored = embeddings[rng.integers(len(embeddings), size=args.calls)]
    noisy = stored + rng.normal(0, 0.01, stored.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    miss = timed(lambda e: cache.lookup(e, STEPS, SHAPE, S_STAR, S_STAR), misses)
    hit_count = 0

    def hit(e):
        nonlocal hit_count
        hit_count += cache.lookup(e, STEPS, SHAPE, S_STAR, S_STAR) is not None

    hits = timed(hit, noisy)
    print(summary("lookup, new prompt (miss)", miss))
    print(summary(f"lookup, stored prompt + noise ({hit_count} hits)", hits))

    # room for the timed inserts without eviction
    cache.capacity_bytes += 2 * args.calls * S_STAR * per_entry
    fresh = unit_rows(rng, args.calls)
    request = GenerationRequest("timed", steps=STEPS)
    first = timed(lambda e: cache.insert(e, state(request, 1, 0.0), 1, "timed"), fresh)
    known = timed(lambda e: cache.insert(e, state(request, 2, 0.0), 2, "timed"), fresh)
    print(summary("insert, new prompt (first step: one product)", first))
    print(summary("insert, another step of a stored prompt", known))

    cache.capacity_bytes = cache.bytes_used  # full: every insert now evicts
    evictions = cache.evictions
    more = unit_rows(rng, args.calls)
    evicting = timed(lambda e: cache.insert(e, state(request, 1, 0.0), 1, "timed"), more)
    print(summary("insert into the full cache (+ eviction)", evicting))
    print(
        f"  evictions {cache.evictions - evictions} in {args.calls} inserts; entries {len(cache)}; "
        f"eviction heap {len(cache._heap)} keys"
    )
    worst = max(np.median(miss), np.median(hits), np.median(first), np.median(known), np.median(evicting))
    print(f"target: lookup and insert/evict <= 1 ms at 100k entries; slowest median here {worst:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
