"""The latent cache's vector index against a brute-force reference: the same hits (entry,
step, similarity), the same refusals and the same victims over random operations; a peek
sees what the lookup then takes and moves no statistic."""

import threading

import numpy as np
import pytest
import torch

from edgediff.cache.eviction import EntryStats, victim
from edgediff.cache.model import theta
from edgediff.runtime.request import GenerationRequest, LatentState
from edgediff.service.latent_cache import LatentCache


class BruteForceCache:
    """The rules of docs/service.md written out entry by entry: every lookup and insert scans
    the whole list; the victim is :func:`edgediff.cache.eviction.victim` over all entries."""

    def __init__(self, capacity_bytes, theta_min, eviction):
        self.capacity, self.theta_min, self.rule = capacity_bytes, theta_min, eviction
        self.entries = []  # dicts, in insertion order
        self.bytes = self.clock = self.evictions = 0

    def lookup(self, embedding, steps, shape, max_step, reusable_steps):
        self.clock += 1
        best = None
        for e in self.entries:
            if e["steps"] != steps or e["shape"] != shape or e["step"] > min(max_step, reusable_steps):
                continue
            sim = float(np.dot(embedding.astype(np.float64), e["embedding"].astype(np.float64)))
            if sim >= theta(e["step"], reusable_steps, self.theta_min) - 1e-6:
                if best is None or (e["step"], sim) > (best[0]["step"], best[1]):
                    best = (e, sim)
        if best is None:
            return None
        best[0]["uses"] += 1
        best[0]["last_used"] = self.clock
        return best

    def insert(self, embedding, state, step, label):
        nbytes = state.latent.numel() * state.latent.element_size() + embedding.nbytes
        if nbytes > self.capacity:
            return False
        self.clock += 1
        shape = tuple(state.latent.shape)
        for e in self.entries:
            if e["step"] == step and e["steps"] == state.steps and e["shape"] == shape:
                if float(np.dot(embedding.astype(np.float64), e["embedding"].astype(np.float64))) >= 0.999:
                    return False
        while self.bytes + nbytes > self.capacity:
            stats = EntryStats(
                last_used=np.array([e["last_used"] for e in self.entries]),
                uses=np.array([e["uses"] for e in self.entries]),
                step=np.array([e["step"] for e in self.entries]),
            )
            gone = self.entries.pop(victim(self.rule, stats))
            self.bytes -= gone["nbytes"]
            self.evictions += 1
        entry = dict(embedding=embedding, steps=state.steps, shape=shape, step=step, label=label, nbytes=nbytes)
        self.entries.append(dict(entry, uses=0, last_used=self.clock))
        self.bytes += nbytes
        return True


SHAPES = [(1, 2, 2, 2), (1, 2, 4, 4)]
STEPS = [20, 30]  # S* = 6 and 9 (round(0.3 N))


def random_embedding(rng, centres):
    """Near one of a few prompt clusters (hits and duplicates happen), sometimes an exact repeat
    of a centre (the same prompt) or, rarely, a non-unit vector."""
    centre = centres[rng.integers(len(centres))]
    kind = rng.random()
    if kind < 0.25:
        return centre.copy()
    if kind < 0.28:
        return (centre * 0.9).astype(np.float32)
    v = centre + rng.normal(0, rng.choice([0.003, 0.01, 0.2, 0.5]), centre.size)
    return (v / np.linalg.norm(v)).astype(np.float32)


def exhaustive_index(monkeypatch):
    """The approximate index from 4 live rows on, searching all of its lists: its candidates are
    then every row, so the cache must still equal brute force (the index's upkeep is right)."""
    pytest.importorskip("faiss")
    import edgediff.service.latent_cache as module

    monkeypatch.setattr(module, "INDEX_ROWS", 4)
    monkeypatch.setattr(module, "INDEX_LISTS", 2)
    monkeypatch.setattr(module, "INDEX_PROBES", 2)


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "faiss"])
@pytest.mark.parametrize("rule", ["lcbfu", "lru", "lfu"])
@pytest.mark.parametrize("theta_min", [0.8, 0.3])
@pytest.mark.slow
def test_index_matches_brute_force(rule, theta_min, indexed, monkeypatch):
    if indexed:
        exhaustive_index(monkeypatch)
    rng = np.random.default_rng([len(rule), int(theta_min * 10)])
    dim = 24
    centres = rng.normal(size=(6, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    capacity = 40 * (2 * 16 * 4 + dim * 4)  # about 40 small entries: evictions all the time
    cache, reference = LatentCache(capacity, theta_min, rule), BruteForceCache(capacity, theta_min, rule)
    made = {}  # label -> embedding, to know who is who
    hits = stored = refused = 0
    for op in range(1500):
        steps = STEPS[rng.integers(2)]
        shape = SHAPES[rng.integers(2)]
        reusable = round(0.3 * steps)
        embedding = random_embedding(rng, centres)
        if rng.random() < 0.55:
            step = int(rng.integers(1, reusable + 1))
            label = f"e{op}"
            value = float(op)
            state = LatentState(torch.full(shape, value), GenerationRequest(label, steps=steps), steps - step, "S", {})
            got = cache.insert(embedding, state, step, label)
            assert got == reference.insert(embedding, state, step, label), op
            stored += got
            refused += not got
            made[label] = value
        else:
            max_step = int(rng.integers(0, reusable + 1))
            peeked = cache.peek(embedding, steps, shape, max_step, reusable)  # moves nothing (checked at the end)
            got = cache.lookup(embedding, steps, shape, max_step, reusable)
            assert peeked == (0 if got is None else got.step), op
            want = reference.lookup(embedding, steps, shape, max_step, reusable)
            assert (got is None) == (want is None), op
            if got is not None:
                hits += 1
                entry, sim = want
                assert got.step == entry["step"] and got.similarity == pytest.approx(sim, abs=1e-5)
                assert got.state.request.prompt == entry["label"] and got.state.split == steps - got.step
                assert float(got.state.latent[0, 0, 0, 0]) == made[entry["label"]]  # that entry's latent
                assert tuple(got.state.latent.shape) == shape
        assert cache.bytes_used == reference.bytes and len(cache) == len(reference.entries)
    assert cache.evictions == reference.evictions > 100
    kept = [(e.prompt, e.step, e.uses, e.last_used, e.nbytes) for e in cache.entries()]
    want = [(e["label"], e["step"], e["uses"], e["last_used"], e["nbytes"]) for e in reference.entries]
    assert kept == want
    assert hits > 100 and refused > 10 and stored > 300, (hits, refused, stored)  # every path exercised
    if indexed:
        cache.wait_index(30)  # built in the background; the search was exact until taken
        groups = [g for g in cache._groups.values() if g.index]
        assert groups  # built (where a group reached 4 live rows), and kept in step with the rows:
        assert [g.index.ntotal for g in groups] == [g.live_rows for g in groups]


def test_growing_past_a_block_and_reusing_freed_rows(monkeypatch):
    import edgediff.service.latent_cache as module

    monkeypatch.setattr(module, "BLOCK", 8)  # blocks of 8 rows: many blocks, many free-list reuses
    rng = np.random.default_rng(3)
    dim, shape = 16, (1, 1, 2, 2)
    capacity = 30 * (16 + dim * 4)
    cache, reference = LatentCache(capacity, 0.8, "lru"), BruteForceCache(capacity, 0.8, "lru")
    vectors = rng.normal(size=(60, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    for op in range(600):
        v = vectors[rng.integers(60)]
        if rng.random() < 0.6:
            step = int(rng.integers(1, 7))
            state = LatentState(torch.full(shape, float(op)), GenerationRequest(f"e{op}", steps=20), 20 - step, "S", {})
            assert cache.insert(v, state, step, f"e{op}") == reference.insert(v, state, step, f"e{op}")
        else:
            got, want = cache.lookup(v, 20, shape, 6, 6), reference.lookup(v, 20, shape, 6, 6)
            assert (got is None) == (want is None)
            if got is not None:
                assert got.state.request.prompt == want[0]["label"]
    assert [e.prompt for e in cache.entries()] == [e["label"] for e in reference.entries]
    (group,) = cache._groups.values()
    assert group.n_rows <= 60 and len(group.emb_blocks) > 1  # freed rows were reused


def test_dimension_mismatch_is_an_error():
    cache = LatentCache(10**6)
    state = LatentState(torch.zeros(1, 1, 2, 2), GenerationRequest("p", steps=20), 14, "S", {})
    assert cache.insert(np.ones(4, np.float32) / 2, state, 6, "p")
    with pytest.raises(ValueError, match="embedding has 3 dimensions, the cache holds 4"):
        cache.insert(np.ones(3, np.float32), state, 5, "p")


def test_approximate_index_finds_near_duplicates_and_hits_only_by_the_rule(monkeypatch):
    """Above INDEX_ROWS the candidates come from the IVF index probing 8 of 64 lists: a stored
    prompt with a little noise (similarity >= 0.98) is always found, at the step exact search
    finds; any hit is one the rule allows (its exact similarity >= theta(step)), never deeper
    than exact search's; the index holds exactly the live rows through evictions."""
    faiss = pytest.importorskip("faiss")
    import edgediff.service.latent_cache as module

    faiss.omp_set_num_threads(1)
    monkeypatch.setattr(module, "INDEX_ROWS", 512)
    monkeypatch.setattr(module, "INDEX_LISTS", 64)
    monkeypatch.setattr(module, "INDEX_PROBES", 8)
    rng = np.random.default_rng(16)
    dim, shape, n = 32, (1, 1, 2, 2), 1500
    capacity = 1200 * (16 + dim * 4)  # evictions once 1200 entries are stored
    stored = rng.normal(size=(n, dim)).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)

    def exact_candidates(g, query, digest):  # every row, whatever the size
        sims = g.similarities(query)
        rows = np.flatnonzero(sims >= 0.8 - 1e-6)
        return rows, sims[rows]

    cache, exact = LatentCache(capacity, 0.8, "lru"), LatentCache(capacity, 0.8, "lru")
    monkeypatch.setattr(exact, "_candidates", exact_candidates)
    for i, v in enumerate(stored):
        step = 1 + i % 6
        state = LatentState(torch.full(shape, float(i)), GenerationRequest(f"e{i}", steps=20), 20 - step, "S", {})
        assert cache.insert(v, state, step, f"e{i}") == exact.insert(v, state, step, f"e{i}")
    cache.wait_index(30)
    (group,) = cache._groups.values()
    assert group.index and group.index.ntotal == group.live_rows >= 512 and cache.evictions > 200
    kept = {e.prompt for e in cache.entries()}
    assert kept == {e.prompt for e in exact.entries()}
    near_found = agree = 0
    for i in rng.choice([int(p[1:]) for p in kept], size=200, replace=False):
        noisy = stored[i] + rng.normal(0, 0.02, dim).astype(np.float32)  # similarity ~0.99
        noisy /= np.linalg.norm(noisy)
        got, want = cache.peek(noisy, 20, shape, 6, 6), exact.peek(noisy, 20, shape, 6, 6)
        assert got == want
        near_found += want > 0
    for _ in range(300):  # paraphrase-like queries, similarity 0.75..0.95 to a stored one
        i = int(rng.integers(n))
        c = rng.uniform(0.75, 0.95)
        r = rng.normal(size=dim).astype(np.float32)
        r -= (r @ stored[i]) * stored[i]
        q = (c * stored[i] + np.sqrt(1 - c * c) * r / np.linalg.norm(r)).astype(np.float32)
        got, want = cache.lookup(q, 20, shape, 6, 6), exact.lookup(q, 20, shape, 6, 6)
        if got is not None:
            assert got.similarity >= theta(got.step, 6, 0.8) - 1e-6
            entry = stored[int(got.state.request.prompt[1:])]
            assert float(np.dot(q, entry)) == pytest.approx(got.similarity, abs=1e-5)
            assert want is not None and got.step <= want.step
        agree += (got is None) == (want is None) and (got is None or got.step == want.step)
    assert near_found > 150 and agree >= 285, agree  # measured 170 and 298; the bench gives the 100k figures


def test_lookup_reuses_the_peek_until_the_rows_change(monkeypatch):
    """A window peeks, then its granted requests look up with nothing stored in between: the
    lookup takes the peek's similarities; a new row (or a freed one) makes it search afresh."""
    import edgediff.service.latent_cache as module

    searches = []
    search = module._Group.candidates
    monkeypatch.setattr(module._Group, "candidates", lambda g, q, floor: searches.append(1) or search(g, q, floor))
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(3, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    cache, shape = LatentCache(10**6), (1, 1, 2, 2)

    def store(i, step):
        state = LatentState(torch.zeros(shape), GenerationRequest(f"p{i}", steps=20), 20 - step, "S", {})
        return cache.insert(rows[i], state, step, f"p{i}")

    assert store(0, 1)
    searches.clear()
    assert cache.peek(rows[0], 20, shape, 6, 6) == 1 and len(searches) == 1
    assert cache.lookup(rows[0], 20, shape, 6, 6).step == 1 and len(searches) == 1  # the peek's
    assert store(0, 2) and len(searches) == 1  # another step of a stored embedding: same row
    assert cache.lookup(rows[0], 20, shape, 6, 6).step == 2 and len(searches) == 1
    assert store(1, 1) and len(searches) == 2  # a new row: the kept peeks are stale
    assert cache.lookup(rows[0], 20, shape, 6, 6).step == 2 and len(searches) == 3


def test_without_faiss_the_search_stays_exact(monkeypatch, caplog):
    import sys

    import edgediff.service.latent_cache as module

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    monkeypatch.setattr(module, "INDEX_ROWS", 4)
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(10, 8)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    cache, shape = LatentCache(10**6), (1, 1, 2, 2)
    with caplog.at_level("WARNING", logger=module.__name__):
        for i, v in enumerate(rows):
            state = LatentState(torch.zeros(shape), GenerationRequest(f"p{i}", steps=20), 19, "S", {})
            assert cache.insert(v, state, 1, f"p{i}")
        for i, v in enumerate(rows):
            assert cache.lookup(v, 20, shape, 6, 6).state.request.prompt == f"p{i}"
    (group,) = cache._groups.values()
    assert group.index is False
    assert sum("edgediff[index]" in r.message for r in caplog.records) == 1  # said once


def test_the_index_is_built_apart_and_takes_the_rows_changed_meanwhile(monkeypatch):
    """The index trains on a thread of its own: inserts and lookups go on (exact search) while
    it is held back, and the rows made and freed meanwhile (evictions) are in it once taken."""
    pytest.importorskip("faiss")
    import edgediff.service.latent_cache as module

    exhaustive_index(monkeypatch)
    gate = threading.Event()
    train = module._IndexBuild._run
    monkeypatch.setattr(module._IndexBuild, "_run", lambda build, *a: gate.wait(30) and train(build, *a))
    rng = np.random.default_rng(11)
    dim, shape = 16, (1, 1, 2, 2)
    rows = rng.normal(size=(40, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    cache = LatentCache(12 * (16 + dim * 4), 0.8, "lru")  # 12 entries: the later inserts evict
    for i, v in enumerate(rows):
        state = LatentState(torch.full(shape, float(i)), GenerationRequest(f"p{i}", steps=20), 19, "S", {})
        assert cache.insert(v, state, 1, f"p{i}")
        assert cache.lookup(v, 20, shape, 6, 6).state.request.prompt == f"p{i}"  # exact meanwhile
    (group,) = cache._groups.values()
    build = group._build
    assert group.index is None and build is not None
    assert cache.evictions == len(rows) - 12  # rows freed and made again meanwhile
    gate.set()
    cache.wait_index(30)
    assert build.touched & set(build.rows.tolist()) and build.touched - set(
        build.rows.tolist()
    )  # in the snapshot and not
    assert group.index and group._build is None and group.index.ntotal == group.live_rows == 12
    for i in range(len(rows) - 12, len(rows)):  # the live rows, found through the index
        assert cache.lookup(rows[i], 20, shape, 6, 6).state.request.prompt == f"p{i}"
    for i in range(len(rows) - 12):  # evicted ones are gone from it
        assert cache.lookup(rows[i], 20, shape, 6, 6) is None
