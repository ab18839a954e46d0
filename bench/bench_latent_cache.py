"""Speed and memory of the service's latent cache (``edgediff.service.latent_cache``) at
100k entries: lookup, insert, insert with eviction; RSS growth against the bytes it accounts;
how often the approximate index's hit decision equals exact search's.

Entries are made as the service makes them: the tiny model's latent (1, 4, 8, 8) float32,
a 384-dimensional float32 prompt embedding (MiniLM's size), ``N = 20`` so ``S* = 6``, and a
granted request that misses stores steps 1..6 under one embedding (``--steps-per-prompt``).
Embeddings are random unit vectors (no structure for an index to exploit; a new prompt
misses). ``--steps-per-prompt 1`` is the worst case: one embedding row per entry. By default
both patterns run, 6 then 1.

Timed on the calling thread (as on the engine thread), ``OMP_NUM_THREADS=1``:

- lookup: a new prompt (miss) and a stored prompt with a little noise (hit);
- insert: another step of a prompt already stored (no product), and a new prompt's first step;
- insert + evict: the cache full, every insert evicts (``lcbfu``).

Agreement (rows >= ``INDEX_ROWS``, where the approximate index answers): the step a peek
finds (0: none) against exact search over all rows, for stored prompts with a little noise
(similarity ~0.98) and for paraphrase-like queries (similarity 0.8-0.95 to a stored one, the
range where a hit is decided by ``theta``).

``--exact-scans``: instead, the exact searches that were weighed against the index, one
query against ``--entries`` rows: NumPy's float32 and float16 products, faiss's int8 flat scan.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_latent_cache.py [--entries 100000] [--steps-per-prompt 6 1]
    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_latent_cache.py --exact-scans
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time

import numpy as np
import torch

from edgediff.runtime.request import GenerationRequest, LatentState
from edgediff.service import latent_cache
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


def fill(cache: LatentCache, embeddings: np.ndarray, steps_per_prompt: int, first: int = 0) -> tuple[int, float, float]:
    """Entries stored, the slowest insert and the longest garbage-collector pause meanwhile
    (ms; the index trains on a thread of its own, so what is left of a slow insert is the
    collector's pause or the index's adoption)."""
    inserted, slowest, pauses, started = 0, 0.0, [0.0], []

    def timed_collection(phase, info):
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append(time.perf_counter() - started.pop())

    gc.callbacks.append(timed_collection)
    try:
        for i, e in enumerate(embeddings):
            request = GenerationRequest(f"prompt {first + i}", steps=STEPS, seed=first + i)
            for step in range(1, steps_per_prompt + 1):
                start = time.perf_counter()
                inserted += cache.insert(e, state(request, step, float(i)), step, request.prompt)
                slowest = max(slowest, time.perf_counter() - start)
    finally:
        gc.callbacks.remove(timed_collection)
    return inserted, slowest * 1e3, max(pauses) * 1e3


def near(rng, rows: np.ndarray, low: float, high: float) -> np.ndarray:
    """Unit vectors at a similarity drawn from [low, high] to each of ``rows``."""
    c = rng.uniform(low, high, (len(rows), 1)).astype(np.float32)
    r = rng.standard_normal(rows.shape, dtype=np.float32)
    r -= np.sum(r * rows, axis=1, keepdims=True) * rows
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    return c * rows + np.sqrt(1 - c * c) * r


def agreement(cache: LatentCache, queries: np.ndarray) -> str:
    """The step each query's peek finds (0: none), approximate index against exact search."""
    approx = np.array([cache.peek(q, STEPS, SHAPE, S_STAR, S_STAR) for q in queries])
    index_rows = latent_cache.INDEX_ROWS
    latent_cache.INDEX_ROWS = 1 << 62  # exact search over every row
    cache._peeked.clear()
    try:
        exact = np.array([cache.peek(q, STEPS, SHAPE, S_STAR, S_STAR) for q in queries])
    finally:
        latent_cache.INDEX_ROWS = index_rows
        cache._peeked.clear()
    return (
        f"same step as exact {np.mean(approx == exact):.1%} of {len(queries)}; exact hits "
        f"{np.sum(exact > 0)}, missed {np.sum((exact > 0) & (approx == 0))}, shallower "
        f"{np.sum((approx > 0) & (approx < exact))}"
    )


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


def run(args, steps_per_prompt: int) -> float:
    """One pattern's figures (printed); its slowest median (ms)."""
    rng = np.random.default_rng(args.seed)
    per_entry = int(np.prod(SHAPE)) * 4 + DIM * 4
    prompts = -(-args.entries // steps_per_prompt)
    cache = LatentCache(args.entries * per_entry, eviction="lcbfu")
    embeddings = unit_rows(rng, prompts)

    gc.collect()
    if args.gc_freeze:  # as the engine process does once started: the start-up heap out of the collector's reach
        gc.freeze()
    rss0 = rss_bytes()
    start = time.perf_counter()
    inserted, slowest, gc_pause = fill(cache, embeddings, steps_per_prompt)
    fill_s = time.perf_counter() - start
    cache.wait_index()  # trained in the background once 16k rows were there: taken now, before the timings
    gc.collect()
    rss1 = rss_bytes()
    ((group),) = cache._groups.values()
    search = (
        f"approximate index (faiss IVF, {latent_cache.INDEX_LISTS} lists, {latent_cache.INDEX_PROBES} probed)"
        if group.index and group.live_rows >= latent_cache.INDEX_ROWS
        else "exact product over all rows"
    )
    print(
        f"--steps-per-prompt {steps_per_prompt}: {len(cache)} entries ({inserted} inserted in {fill_s:.1f} s, "
        f"slowest insert {slowest:.0f} ms, longest garbage-collector pause {gc_pause:.0f} ms), "
        f"{group.live_rows} embedding rows, search: {search}; "
        f"latent {SHAPE} float32, embedding {DIM} float32, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
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
    print(summary("insert, new prompt (first step)", first))
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
    if group.index and group.live_rows >= latent_cache.INDEX_ROWS:
        live = np.flatnonzero(group.refs[: group.n_rows] > 0)
        rows = np.stack([group.embedding(r) for r in rng.choice(live, size=args.calls)])
        noisy = rows + rng.normal(0, 0.01, rows.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        print(f"  agreement, stored prompt + noise: {agreement(cache, noisy)}")
        print(f"  agreement, similarity 0.8-0.95:   {agreement(cache, near(rng, rows, 0.8, 0.95))}")
    return max(np.median(miss), np.median(hits), np.median(first), np.median(known), np.median(evicting))


def exact_scans(rows: int, calls: int, seed: int) -> None:
    """Median time of one exact search over ``rows`` unit rows, three ways."""
    import faiss

    faiss.omp_set_num_threads(1)  # one core, as the engine thread has
    rng = np.random.default_rng(seed)
    matrix = unit_rows(rng, rows)
    queries = unit_rows(rng, calls)
    half = matrix.astype(np.float16)
    int8 = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    int8.train(matrix)  # learns each component's range
    int8.add(matrix)
    searches = {
        "NumPy float32 product": lambda q: matrix @ q,
        "NumPy float16 product": lambda q: half @ q.astype(np.float16),
        "faiss int8 flat scan": lambda q: int8.search(q[None], 16),
    }
    print(f"exact search, one query against {rows} rows of {DIM} dimensions:")
    for name, search in searches.items():
        print(summary(name, timed(search, queries[: max(1, calls // 10)])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument(
        "--steps-per-prompt", type=int, nargs="+", default=[S_STAR, 1], choices=range(1, S_STAR + 1), metavar="K"
    )
    parser.add_argument("--calls", type=int, default=500, help="timed calls per operation (500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="freeze the start-up heap before the fill, as the service's engine process does (default: on)",
    )
    parser.add_argument("--exact-scans", action="store_true", help="time the exact searches weighed against the index")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.exact_scans:
        exact_scans(args.entries, args.calls, args.seed)
        return 0
    if len(args.steps_per_prompt) > 1:  # one process per pattern: RSS growth is then each one's own
        common = ["--entries", str(args.entries), "--calls", str(args.calls), "--seed", str(args.seed)]
        common.append("--gc-freeze" if args.gc_freeze else "--no-gc-freeze")
        for k in args.steps_per_prompt:
            done = subprocess.run([sys.executable, __file__, "--steps-per-prompt", str(k), *common])
            if done.returncode:
                return done.returncode
        return 0
    worst = run(args, args.steps_per_prompt[0])
    print(f"target: lookup and insert/evict <= 1 ms at 100k entries; slowest median here {worst:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
